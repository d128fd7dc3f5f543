"""The sweep's statistics against values computed by hand, on a fixed table of numbers (no training).

Hand computations (three seeds, so df = 2, t_0.975,2 = 4.302653, and the two-sided p of a t statistic T with df 2 is
``1 - |T| / sqrt(T^2 + 2)`` in closed form):

- frelu 0.30, 0.32, 0.34: mean 0.32, sd 0.02, sem 0.02/sqrt(3) = 0.011547, CI 0.32 -+ 0.049683.
- frelu - silu = -0.03, -0.04, -0.03: mean -0.033333, sd 0.0057735, sem 0.0033333, T = -10, p = 0.0098524,
  CI -0.033333 -+ 0.014342.
- relu - silu = -0.02, -0.01, -0.01: T = -4, p = 0.0571909.   mish - silu = 0.01, 0.02, 0.00: T = 1.7320508,
  p = 0.2254033.   gelu - silu = 0.05, 0.06, 0.05: T = 16, p = 0.0038825.
- Holm over four: sorted gelu, frelu, relu, mish -> 4p, 3p, 2p, 1p, made monotone:
  0.015530, 0.029557, 0.114382, 0.225403. At alpha 0.05: gelu better, frelu worse, relu and mish not significant.
"""

import csv
import math
import sys

import pytest

from yolo_act_swap.sweep import (
    SweepFolder,
    build_table,
    compare,
    holm,
    paired,
    resolve_acts,
    spread,
    summary_lines,
    with_seeds,
    write_tables,
)

T975_2 = 4.302653
SILU = [0.33, 0.36, 0.37]
TABLE = {  # activation -> mAP50-95 per seed (mAP50 is mAP50-95 + 0.2)
    "silu": SILU,
    "frelu": [0.30, 0.32, 0.34],
    "relu": [0.31, 0.35, 0.36],
    "mish": [0.34, 0.38, 0.37],
    "gelu": [s + d for s, d in zip(SILU, (0.05, 0.06, 0.05))],
}
SETTINGS = {"cfg": "yolov8n.yaml", "data": None, "epochs": 1, "batch_size": 8, "img_size": 64, "overrides": []}


def _p_df2(t: float) -> float:
    return 1 - abs(t) / math.sqrt(t * t + 2)


def _values(table: dict) -> dict:
    return {a: {s: {"mAP50-95": v, "mAP50": v + 0.2} for s, v in enumerate(vals)} for a, vals in table.items()}


def test_spread_mean_sd_and_t_interval():
    s = spread([0.30, 0.32, 0.34])
    assert s.n == 3 and s.mean == pytest.approx(0.32) and s.std == pytest.approx(0.02)
    half = T975_2 * 0.02 / math.sqrt(3)
    assert (s.ci_low, s.ci_high) == (pytest.approx(0.32 - half, abs=1e-6), pytest.approx(0.32 + half, abs=1e-6))
    one = spread([0.5, float("nan")])  # NaN left out: one value, no spread
    assert one.n == 1 and one.mean == 0.5 and one.std is None and one.ci_low is None
    flat = spread([0.2, 0.2])
    assert flat.std == 0 and flat.ci_low == flat.ci_high == pytest.approx(0.2)
    assert spread([]).n == 0 and spread([]).mean is None


def test_paired_difference_t_test_and_interval():
    d = paired(dict(enumerate(TABLE["frelu"])), dict(enumerate(SILU)))
    assert d.n == 3 and d.diff == pytest.approx(-0.1 / 3) and d.problem is None
    assert d.p == pytest.approx(_p_df2(-10.0), rel=1e-6) == pytest.approx(0.0098524, rel=1e-4)
    half = T975_2 * 0.0057735027 / math.sqrt(3)
    assert d.ci_low == pytest.approx(-0.1 / 3 - half, abs=1e-6) and d.ci_high == pytest.approx(-0.1 / 3 + half, abs=1e-6)
    assert paired(dict(enumerate(TABLE["relu"])), dict(enumerate(SILU))).p == pytest.approx(_p_df2(4.0), rel=1e-6)
    only_shared = paired({0: 0.3, 1: 0.32, 2: 0.34, 7: 0.9}, dict(enumerate(SILU)))  # seed 7 has no partner
    assert only_shared.n == 3 and only_shared.p == pytest.approx(d.p)


def test_paired_degenerate_cases_give_no_test():
    assert paired({0: 0.3}, {0: 0.2}).problem.startswith("one seed")
    assert paired({0: 0.3}, {1: 0.2}).problem == "no seed finished for both"
    same = paired({0: 0.3, 1: 0.4}, {0: 0.3, 1: 0.4})
    assert same.p is None and "identical" in same.problem
    shifted = paired({0: 0.3, 1: 0.4}, {0: 0.2, 1: 0.3})  # t would be infinite and p exactly 0
    assert shifted.p is None and shifted.diff == pytest.approx(0.1) and "zero variance" in shifted.problem


def test_holm_adjustment_by_hand():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_compare_verdicts_holm_corrected():
    comps, notes = compare(_values(TABLE), "silu")
    assert notes == []
    assert comps["silu"].verdict == "baseline" and comps["silu"].delta is None
    expect = {"gelu": (_p_df2(16.0), 4, "better"), "frelu": (_p_df2(10.0), 3, "worse"),
              "relu": (_p_df2(4.0), 2, "no significant difference at n=3"),
              "mish": (_p_df2(math.sqrt(3)), 1, "no significant difference at n=3")}
    for label, (p, _factor, verdict) in expect.items():
        c = comps[label]
        assert c.delta.p == pytest.approx(p, rel=1e-6), label
        assert c.verdict == verdict, label
    assert comps["gelu"].p_holm == pytest.approx(4 * _p_df2(16.0), rel=1e-6)
    assert comps["frelu"].p_holm == pytest.approx(3 * _p_df2(10.0), rel=1e-6)
    assert comps["relu"].p_holm == pytest.approx(2 * _p_df2(4.0), rel=1e-6)
    assert comps["mish"].p_holm == pytest.approx(_p_df2(math.sqrt(3)), rel=1e-6)  # max(0.114, 0.225)
    assert comps["frelu"].spreads["mAP50"].mean == pytest.approx(0.52)
    # without the correction relu (p 0.057) would still be n.s.; frelu alone vs silu keeps p unadjusted
    alone, _ = compare(_values({"silu": SILU, "frelu": TABLE["frelu"]}), "silu")
    assert alone["frelu"].p_holm == pytest.approx(alone["frelu"].delta.p)


def test_compare_says_plainly_when_no_verdict_is_possible():
    one, notes = compare(_values({"silu": [0.3], "frelu": [0.2]}), "silu")
    assert one["frelu"].verdict == "no verdict: one seed" and one["frelu"].delta.diff == pytest.approx(-0.1)
    assert any("one seed per activation" in n for n in notes)
    zeros, notes = compare(_values({"silu": [0, 0], "frelu": [0, 0]}), "silu")
    assert zeros["frelu"].verdict == "no verdict: every mAP is 0" and zeros["frelu"].p_holm is None
    assert any(n.startswith("every mAP50-95 is 0") for n in notes)
    flat, notes = compare(_values({"silu": [0.3, 0.3], "frelu": [0.2, 0.2]}), "silu")
    assert flat["frelu"].verdict.startswith("no verdict: the same difference")
    assert any("silu: the same mAP50-95 on every seed" in n for n in notes)
    nan, notes = compare(_values({"silu": [0.3, 0.32, 0.31], "frelu": [0.2, float("nan"), 0.25]}), "silu")
    assert nan["frelu"].delta.n == 2 and any("frelu: no finite mAP for seed(s) 1" in n for n in notes)
    none, notes = compare(_values({"relu": [0.3, 0.32], "frelu": [0.2, 0.25]}), None)
    assert all(c.verdict == "" for c in none.values()) and any("no baseline" in n for n in notes)


def _fill(folder: SweepFolder, runs, table: dict, failed: set = frozenset()) -> None:
    for r in runs:
        if (r.label, r.seed) in failed:
            folder.write_json(folder.record_path(r.run_id), {"status": "failed", "error": "exit 1: boom",
                                                             "metrics": {}})
            continue
        v = table[r.label][r.seed]
        folder.write_json(folder.record_path(r.run_id), {
            "label": r.label, "run_id": r.run_id, "seed": r.seed, "status": "finished", "epoch_time_s": 2.0 + r.seed,
            "metrics": {"mAP50-95": v, "mAP50": v + 0.2}, "params": 3011433, "GFLOPs": 0.33, "peak_mem_mb": 1000.0})


def test_table_csv_markdown_and_console_lines(tmp_path):
    folder = SweepFolder(tmp_path / "s")
    runs = with_seeds(resolve_acts(["silu,frelu,relu,mish,gelu"]), [0, 1, 2])
    assert [r.run_id for r in runs[:6]] == ["silu-seed0", "frelu-seed0", "relu-seed0", "mish-seed0", "gelu-seed0",
                                            "silu-seed1"]  # seed by seed: a sweep cut short stays paired
    _fill(folder, runs, TABLE)
    table = build_table(runs, folder, {"ms": {"silu": 5.0, "frelu": 9.0}})
    assert [r["act"] for r in table.rows] == ["gelu", "mish", "silu", "relu", "frelu"]  # by mean mAP50-95
    assert table.baseline == "silu" and table.compared == 4 and len(table.runs) == 15
    frelu = next(r for r in table.rows if r["act"] == "frelu")
    assert frelu["n"] == 3 and frelu["mAP50-95"] == pytest.approx(0.32) and frelu["epoch_time_s"] == pytest.approx(3)
    assert frelu["p_value"] == pytest.approx(_p_df2(10.0), rel=1e-6) and frelu["verdict"] == "worse"
    assert frelu["latency_ms"] == 9.0 and frelu["values"] == pytest.approx(TABLE["frelu"])
    md = write_tables(table, folder, SETTINGS, None)
    assert "seeds 0,1,2" in md and "Holm-corrected over 4" in md and "Warning" not in md
    frelu_line = next(ln for ln in md.splitlines() if ln.startswith("| frelu"))
    assert "0.3200 ± 0.0200" in frelu_line and "0.2703..0.3697" in frelu_line and "-0.0333" in frelu_line
    assert "-0.0477..-0.0190" in frelu_line and "0.010" in frelu_line and "0.030" in frelu_line
    assert "| worse" in frelu_line and "3/3" in frelu_line
    with open(folder.root / "results.csv", newline="") as f:
        rows = {r["act"]: r for r in csv.DictReader(f)}
    assert float(rows["frelu"]["delta_vs_silu"]) == pytest.approx(-0.1 / 3, rel=1e-5)
    assert float(rows["frelu"]["p_holm"]) == pytest.approx(3 * _p_df2(10.0), rel=1e-4)
    assert rows["silu"]["verdict"] == "baseline" and rows["gelu"]["verdict"] == "better"
    assert {"mAP50-95_ci_low", "mAP50_std", "params", "GFLOPs", "latency_ms", "error"} <= set(rows["silu"])
    with open(folder.root / "runs.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 15
    lines = summary_lines(table)
    assert "frelu vs silu: -0.033 mAP50-95 (95% CI -0.048..-0.019, p=0.010, Holm p=0.030, n=3): worse" in lines
    assert len(lines) == 4 and not any(ln.startswith("silu vs") for ln in lines)


def test_table_with_a_failed_seed_a_pending_one_and_another_baseline(tmp_path):
    folder = SweepFolder(tmp_path / "s")
    runs = with_seeds(resolve_acts(["silu,relu"]), [0, 1, 2])
    _fill(folder, [r for r in runs if r.run_id != "silu-seed2"], {"silu": SILU, "relu": TABLE["relu"]},
          failed={("relu", 1)})
    table = build_table(runs, folder, baseline="relu")
    rows = {r["act"]: r for r in table.rows}
    assert rows["relu"]["status"] == "some failed" and rows["relu"]["n"] == 2 and rows["relu"]["verdict"] == "baseline"
    assert rows["relu"]["error"] == "seed 1: exit 1: boom"
    assert rows["silu"]["status"] == "pending" and rows["silu"]["n"] == 2  # seed 2 not trained yet
    assert rows["silu"]["delta"] == pytest.approx(0.33 - 0.31)  # seed 0 is the only seed both finished
    assert rows["silu"]["n_pairs"] == 1 and rows["silu"]["verdict"] == "no verdict: one seed"
    md = write_tables(table, folder, SETTINGS, None)
    assert "Δ vs relu" in md and "delta_vs_relu" in (folder.root / "results.csv").read_text().splitlines()[0]


def test_one_seed_table_says_no_verdict(tmp_path):
    folder = SweepFolder(tmp_path / "s")
    runs = with_seeds(resolve_acts(["silu,frelu"]), [0])
    _fill(folder, runs, {"silu": [0.3], "frelu": [0.25]})
    table = build_table(runs, folder)
    md = write_tables(table, folder, SETTINGS, None)
    assert "**Warning:** one seed per activation: no verdict is possible" in md
    assert "no verdict: one seed" in md
    assert summary_lines(table)[0] == "frelu vs silu: -0.050 mAP50-95 (n=1): no verdict: one seed"


def test_missing_scipy_is_one_line_naming_the_extra_before_any_training(tmp_path, monkeypatch, capsys):
    from yolo_act_swap.cli import main as cli_main

    monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy -> ImportError
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    rc = cli_main(["sweep", "--project", str(tmp_path), "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pip install 'yolo-act-swap[sweep]'" in err[0]
    assert not (tmp_path / "sweep" / "plan.json").exists()
