"""The sweep's tables, regenerated from the records (atomically): ``results.csv`` / ``results.md`` with one row per
activation (mean over its seeds, intervals, the paired difference to the baseline, p-values and a verdict, sorted by
mean mAP50-95), ``runs.csv`` with one row per (activation, seed) run, and the one-line console summaries."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from ..io import atomic_write_text
from ..tables import is_finite, markdown_table
from .plan import SweepFolder, SweepRun, seeds_of
from .stats import ALPHA, CONFIDENCE, METRICS, VERDICT_METRIC, Comparison, compare

TABLE_COLUMNS = [  # (csv key, csv header): results.csv; "{base}" is the baseline's label
    ("act", "act"), ("status", "status"), ("n", "n"), ("n_planned", "n_planned"),
    ("mAP50-95", "mAP50-95"), ("mAP50-95_std", "mAP50-95_std"),
    ("mAP50-95_ci_low", "mAP50-95_ci_low"), ("mAP50-95_ci_high", "mAP50-95_ci_high"),
    ("mAP50", "mAP50"), ("mAP50_std", "mAP50_std"), ("mAP50_ci_low", "mAP50_ci_low"), ("mAP50_ci_high", "mAP50_ci_high"),
    ("delta", "delta_vs_{base}"), ("delta_ci_low", "delta_ci_low"), ("delta_ci_high", "delta_ci_high"),
    ("p_value", "p_value"), ("p_holm", "p_holm"), ("verdict", "verdict"),
    ("params", "params"), ("GFLOPs", "GFLOPs"), ("latency_ms", "latency_ms"), ("epoch_time_s", "epoch_time_s"),
    ("peak_mem_mb", "peak_mem_mb"), ("error", "error"),
]
DEPLOY_COLUMNS = [  # with --deploy (sweep/deploy.py measures them on each activation's first finished seed)
    ("onnx_ms", "ONNX Runtime ms"),
    ("openvino_ms", "OpenVINO ms"),
    ("int8_mAP50-95", "INT8 mAP50-95"),
    ("int8_drop", "INT8 drop"),
]
DEPLOY_FORMATS = {"onnx_ms": "{:.2f}", "openvino_ms": "{:.2f}", "int8_mAP50-95": "{:.4f}", "int8_drop": "{:+.4f}"}
RUN_COLUMNS = ["run_id", "act", "seed", "status", "mAP50-95", "mAP50", "epochs_done", "epoch_time_s", "peak_mem_mb",
               "error"]
MD_COLUMNS = ["act", "status", "seeds", "mAP50-95 ± sd", "95% CI", "mAP50 ± sd", "mAP50 95% CI", "Δ vs {base}",
              "Δ 95% CI", "p", "p Holm", "verdict", "params", "GFLOPs@{imgsz}", "latency ms", "epoch time s",
              "peak mem MB", "error"]
MD_RIGHT = (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16)
STATUS_ORDER = {"finished": 0, "some failed": 1, "failed": 2}  # then interrupted and pending activations


@dataclass
class SweepTable:
    """The sweep's comparison: one row per activation, one per run, and the warnings about degenerate results."""

    rows: list[dict]
    runs: list[dict]
    notes: list[str] = field(default_factory=list)
    baseline: str | None = None
    seeds: list[int] = field(default_factory=list)
    compared: int = 0  # activations tested against the baseline (the Holm family)
    deploy: bool = False  # the rows carry DEPLOY_COLUMNS


def _run_row(run: SweepRun, folder: SweepFolder) -> tuple[dict, dict]:
    """A run's row of ``runs.csv`` and its record (an open run gets a stand-in record with its status)."""
    rec = folder.record(run.run_id)
    if rec is None:
        rec = {"status": "interrupted" if folder.run_dir(run.run_id).exists() else "pending"}
    finished = rec.get("status") == "finished"
    m = rec.get("metrics") or {}
    row = {"run_id": run.run_id, "act": run.label, "seed": run.seed, "status": rec.get("status"),
           "mAP50-95": m.get("mAP50-95") if finished else None, "mAP50": m.get("mAP50") if finished else None,
           "epochs_done": rec.get("epochs_done"), "epoch_time_s": rec.get("epoch_time_s"),
           "peak_mem_mb": rec.get("peak_mem_mb"), "error": rec.get("error") or ""}
    return row, rec


def _status(statuses: list[str]) -> str:
    """One activation's status from its runs'."""
    if all(s == "finished" for s in statuses):
        return "finished"
    if all(s in ("finished", "failed") for s in statuses):
        return "failed" if "finished" not in statuses else "some failed"
    return "interrupted" if "interrupted" in statuses else "pending"


def _mean(values: list) -> float | None:
    vals = [v for v in values if is_finite(v)]
    return sum(vals) / len(vals) if vals else None


def _act_row(label: str, runs: list[tuple[dict, dict]], comp: Comparison, latency: dict) -> dict:
    """One activation's row: its runs' records summed up and its statistics."""
    done = [(row, rec) for row, rec in runs if row["status"] == "finished"]
    first = done[0][1] if done else (runs[0][1] if runs else {})
    row = {"act": label, "status": _status([r["status"] for r, _ in runs]), "n": len(done), "n_planned": len(runs),
           "values": [r[VERDICT_METRIC] for r, _ in done], "params": first.get("params"),
           "GFLOPs": first.get("GFLOPs"), "latency_ms": latency.get(label) if done else None,
           "epoch_time_s": _mean([r["epoch_time_s"] for r, _ in done]),
           "peak_mem_mb": max((r["peak_mem_mb"] for r, _ in done if is_finite(r["peak_mem_mb"])), default=None),
           "error": "; ".join((f"seed {r['seed']}: " if len(runs) > 1 else "") + r["error"]
                              for r, _ in runs if r["error"])}
    for k in METRICS:
        s = comp.spreads[k]
        row.update({k: s.mean, f"{k}_std": s.std, f"{k}_ci_low": s.ci_low, f"{k}_ci_high": s.ci_high})
    d = comp.delta
    row.update({"delta": "baseline" if comp.verdict == "baseline" else (d.diff if d else None),
                "delta_ci_low": d.ci_low if d else None, "delta_ci_high": d.ci_high if d else None,
                "n_pairs": d.n if d else None, "p_value": d.p if d else None, "p_holm": comp.p_holm,
                "verdict": comp.verdict})
    return row


def default_baseline(runs: list[SweepRun]) -> str | None:
    """The label of the plain silu activation, if the sweep has one."""
    return next((r.label for r in runs if r.baseline), None)


def build_table(runs: list[SweepRun], folder: SweepFolder, latency: dict | None = None,
                baseline: str | None = None, deploy: dict | None = None) -> SweepTable:
    """The comparison of every planned run (recorded or not), against ``baseline`` (default: the silu run).

    ``deploy`` (``deploy.json`` from ``sweep/deploy.py``) adds the ``DEPLOY_COLUMNS`` to every activation's row.
    """
    latency = (latency or {}).get("ms", {})
    baseline = baseline or default_baseline(runs)
    per_act: dict[str, list[tuple[dict, dict]]] = {}
    for r in runs:
        per_act.setdefault(r.label, []).append(_run_row(r, folder))
    values = {label: {row["seed"]: {k: row[k] for k in METRICS} for row, _ in rr if row["status"] == "finished"}
              for label, rr in per_act.items()}
    comps, notes = compare(values, baseline if baseline in values else None, seeds=max(len(seeds_of(runs)), 1))
    rows = [_act_row(label, rr, comps[label], latency) for label, rr in per_act.items()]
    if deploy is not None:
        _add_deploy(rows, deploy.get("runs", {}))
    rows.sort(key=lambda row: (STATUS_ORDER.get(row["status"], 3),
                               -(row["mAP50-95"] if is_finite(row["mAP50-95"]) else -1)))
    compared = sum(c.p_holm is not None for c in comps.values())
    return SweepTable(rows, [row for rr in per_act.values() for row, _ in rr], notes,
                      baseline if baseline in values else None, seeds_of(runs), compared, deploy is not None)


def _add_deploy(rows: list[dict], measured: dict) -> None:
    """Each activation's deployment figures (blank for activations without a finished run); a failure joins its
    row's error text."""
    for row in rows:
        d = measured.get(row["act"], {}) if row["n"] else {}
        row.update({k: d.get(k) for k, _ in DEPLOY_COLUMNS})
        if d.get("error"):
            row["error"] = "; ".join(x for x in (row["error"], d["error"]) if x)


def table_rows(runs: list[SweepRun], folder: SweepFolder, latency: dict | None = None,
               baseline: str | None = None) -> list[dict]:
    """The activation rows of :func:`build_table`, sorted by mean mAP50-95."""
    return build_table(runs, folder, latency, baseline).rows


# ------------------------------------------------------------------------------------------------------ text
def _num(v, fmt: str = "{:.4f}") -> str:
    return fmt.format(v) if is_finite(v) else ""


def _interval(lo, hi, fmt: str = "{:.4f}") -> str:
    return f"{fmt.format(lo)}..{fmt.format(hi)}" if is_finite(lo) and is_finite(hi) else ""


def _p(p, name: str = "") -> str:
    """A p-value cell (``0.004``, ``<0.001``), or with ``name`` a console fragment (``p=0.004``, ``p<0.001``)."""
    if not is_finite(p):
        return ""
    return (f"{name}<0.001" if name else "<0.001") if p < 0.001 else f"{name}{'=' if name else ''}{p:.3f}"


def _md_cells(row: dict, deploy: bool = False) -> list[str]:
    """A row of ``results.md`` (with the deployment cells before the error when ``deploy``)."""
    def mean_sd(k):
        return _num(row[k]) + (f" ± {row[f'{k}_std']:.4f}" if is_finite(row[f"{k}_std"]) else "")

    delta = row["delta"]
    return [row["act"], str(row["status"]), f"{row['n']}/{row['n_planned']}", mean_sd("mAP50-95"),
            _interval(row["mAP50-95_ci_low"], row["mAP50-95_ci_high"]), mean_sd("mAP50"),
            _interval(row["mAP50_ci_low"], row["mAP50_ci_high"]),
            "baseline" if delta == "baseline" else _num(delta, "{:+.4f}"),
            _interval(row["delta_ci_low"], row["delta_ci_high"], "{:+.4f}"), _p(row["p_value"]), _p(row["p_holm"]),
            row["verdict"], f"{int(row['params']):,}" if is_finite(row["params"]) else "",
            _num(row["GFLOPs"], "{:.3g}"), _num(row["latency_ms"], "{:.2f}"), _num(row["epoch_time_s"], "{:.1f}"),
            _num(row["peak_mem_mb"], "{:.0f}"),
            *(_num(row.get(k), DEPLOY_FORMATS[k]) for k, _ in (DEPLOY_COLUMNS if deploy else ())), row["error"]]


def _csv_value(v):
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else v


def _csv(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows([[_csv_value(v) for v in r] for r in rows])
    return out.getvalue()


def _notes(table: SweepTable, settings: dict, latency: dict | None, deploy: dict | None = None) -> list[str]:
    """The lines above the table: what was trained, how the statistics are made, and the warnings."""
    data = settings.get("data") or "built-in demo"
    seeds = ",".join(map(str, table.seeds)) or str(settings.get("seed", 0))
    note = (f"Sweep: cfg {settings.get('cfg') or '(train default)'}, data {data}, {settings.get('epochs')} epochs, "
            f"batch {settings.get('batch_size')}, imgsz {settings.get('img_size')}, seeds {seeds}")
    if settings.get("weights"):
        note += f"; from {settings['weights']}" + (f", --transition {settings['transition']}"
                                                    if settings.get("transition") else ", abrupt swap")
    if latency:
        note += f"; latency: batch 1, fused, median of {latency.get('reps')} on {latency.get('device_name')}"
    if deploy:
        note += (f"; ONNX Runtime / OpenVINO: batch 1, FP32, median of {deploy.get('reps')} interleaved; INT8: OpenVINO "
                 "NNCF PTQ calibrated on train, drop = FP32 OpenVINO - INT8 mAP50-95 on val")
    pct = f"{CONFIDENCE:.0%}"
    how = f"Statistics: mean ± sd over seeds, {pct} t intervals"
    if table.baseline:
        how += (f"; Δ: paired over seeds vs {table.baseline}, paired t-test, verdicts Holm-corrected over "
                f"{table.compared} activation(s) at α={ALPHA:g}")
    return [note, how, *(f"**Warning:** {n}." for n in table.notes)]


def write_tables(table: SweepTable, folder: SweepFolder, settings: dict, latency: dict | None,
                 deploy: dict | None = None) -> str:  # fmt: skip
    """Write ``results.csv``, ``runs.csv`` and ``results.md`` atomically (with ``deploy``: its columns too); return
    the Markdown text."""
    base = table.baseline or "silu"
    deploy_csv = [(k, k) for k, _ in DEPLOY_COLUMNS]  # results.csv names these columns by their keys
    cols = [*TABLE_COLUMNS[:-1], *deploy_csv, TABLE_COLUMNS[-1]] if table.deploy else TABLE_COLUMNS
    header = [h.format(base=base) for _, h in cols]
    cells = [[0.0 if k == "delta" and r[k] == "baseline" else r.get(k) for k, _ in cols] for r in table.rows]
    atomic_write_text(folder.root / "results.csv", _csv(header, cells))
    atomic_write_text(folder.root / "runs.csv", _csv(RUN_COLUMNS, [[r[k] for k in RUN_COLUMNS] for r in table.runs]))
    md_cols = [*MD_COLUMNS[:-1], *(h for _, h in DEPLOY_COLUMNS), MD_COLUMNS[-1]] if table.deploy else MD_COLUMNS
    heads = [h.format(imgsz=settings.get("img_size"), base=base) for h in md_cols]
    right = (*MD_RIGHT, *range(len(MD_COLUMNS) - 1, len(md_cols) - 1))
    body = markdown_table(heads, [_md_cells(r, table.deploy) for r in table.rows], right)
    text = "\n".join([*_notes(table, settings, latency, deploy), "", *body]) + "\n"
    atomic_write_text(folder.root / "results.md", text)
    return text


def summary_lines(table: SweepTable) -> list[str]:
    """One line per activation against the baseline, e.g. ``frelu vs silu: -0.041 mAP50-95 (95% CI -0.055..-0.027,
    p=0.004, n=3): worse``; then the warnings."""
    out = []
    for row in table.rows:
        if table.baseline is None or row["delta"] == "baseline" or not is_finite(row["delta"]):
            continue
        parts = [f"{CONFIDENCE:.0%} CI {_interval(row['delta_ci_low'], row['delta_ci_high'], '{:+.3f}')}"
                 if is_finite(row["delta_ci_low"]) else None,
                 _p(row["p_value"], "p") or None,
                 f"Holm {_p(row['p_holm'], 'p')}" if is_finite(row["p_holm"]) and table.compared > 1 else None,
                 f"n={row['n_pairs']}"]
        inside = ", ".join(p for p in parts if p)
        out.append(f"{row['act']} vs {table.baseline}: {row['delta']:+.3f} {VERDICT_METRIC} ({inside}): "
                   f"{row['verdict']}")
    return out + [f"warning: {n}" for n in table.notes]
