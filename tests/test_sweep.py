"""``yolo-act-swap sweep``: planning, the table, and real tiny sweeps on the demo data (killed, resumed, failing, Ray).

The training tests run real ``python -m yolo_act_swap train`` subprocesses on the built-in demo data at 64 px, one or
two epochs, a tenth of the training images, so each run takes seconds. One sweep (silu, relu, and a run that diverges
to NaN) is shared by several tests: it is killed with SIGKILL once silu is recorded and relu has saved its first
epoch, resumed with ``--resume``, then started again with the original command.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from yolo_act_swap.cli.sweep import _planned_sweep, _split_overrides, build_parser, settings_from_args
from yolo_act_swap.errors import UnknownActivation
from yolo_act_swap.io import checkpoint_complete, read_results_csv
from yolo_act_swap.sweep import (
    DEMO_RECIPE,
    Sweep,
    SweepError,
    SweepFolder,
    build_table,
    nan_problem,
    resolve_acts,
    resolve_seeds,
    run_command,
    table_rows,
    with_seeds,
    write_tables,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAIL_ACT = "glu"  # a valid name up front that no Conv block can take (it halves the channels): the run fails
# (NaN runs cannot be made from a spec any more: keyword values are bounded; nan_problem has its own test)
FAIL_LABEL = "glu"
TINY = ["--cfg", "yolov8n.yaml", "--img-size", "64", "--batch-size", "8", "--workers", "0", "--latency-reps", "5",
        "fraction=0.1", "plots=False"]  # demo data, a tenth of its training images
SETTINGS = {"cfg": "yolov8n.yaml", "data": None, "epochs": 1, "batch_size": 8, "img_size": 64, "overrides": []}


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def _commands(log: Path) -> int:
    """How many training commands a run's log records (each starts with a ``$ `` line)."""
    return sum(line.startswith("$ ") for line in log.read_text(errors="replace").splitlines())


def _procs_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next((ln for ln in (d / "status").read_text().splitlines() if ln.startswith("State:")), "")
            except OSError:
                continue
            if text in cmdline and "zombie" not in state:
                pids.append(int(d.name))
    return pids


# ------------------------------------------------------------------------------------------------ no training
def test_resolve_acts_names_inline_and_spec_folder(tmp_path):
    runs = resolve_acts(["silu,swish", "hardtanh:min_val=-2,max_val=2,relu"])
    assert [r.label for r in runs] == ["silu", "swish", "hardtanh_min_val=-2_max_val=2", "relu"]
    assert [r.baseline for r in runs] == [True, True, False, False]  # swish is an alias of silu
    assert runs[2].act == "hardtanh:min_val=-2,max_val=2"  # the second keyword stays with its act

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "all-relu.yaml").write_text("act: relu\n")
    (specs / "head-mish.yaml").write_text("act: silu\nrules:\n  - layers: 15-22\n    act: mish\n")
    (specs / "notes.txt").write_text("not a spec")
    runs = resolve_acts([str(specs), "silu"])
    assert [r.label for r in runs] == ["all-relu", "head-mish", "silu"]
    assert all(len(r.spec_sha256) == 64 for r in runs[:2]) and runs[2].spec is None


def test_resolve_acts_errors(tmp_path):
    with pytest.raises(UnknownActivation, match="frelu"):
        resolve_acts(["silu,frlu"])
    with pytest.raises(SweepError, match="twice"):
        resolve_acts(["relu,silu,relu"])
    with pytest.raises(SweepError, match="not found"):
        resolve_acts([str(tmp_path / "missing.yaml")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match="no .yaml"):
        resolve_acts([str(tmp_path / "empty")])


def test_passthrough_overrides_are_checked():
    assert _split_overrides(["lr0=0.005", "plots=False"]) == ["lr0=0.005", "plots=False"]
    with pytest.raises(SweepError, match="project"):
        _split_overrides(["project=elsewhere"])
    with pytest.raises(SweepError, match="key=value"):
        _split_overrides(["stray"])


def test_settings_defaults_demo_data_and_resume(tmp_path):
    def settings(argv, planned=None):
        args, rest = build_parser().parse_known_args(argv)
        return settings_from_args(args, rest, planned)

    demo = settings(["--epochs", "2", "lr0=0.01"])
    assert demo["data"] is None and demo["cfg"] == "yolov8n.yaml" and demo["epochs"] == 2
    assert demo["overrides"] == [*DEMO_RECIPE, "lr0=0.01"]  # the user's key=value comes last and wins
    data = tmp_path / "d.yaml"
    data.write_text("path: .\n")
    real = settings(["--data", str(data)])
    assert real["data"] == str(data.resolve()) and real["cfg"] is None and real["img_size"] == 640
    assert real["overrides"] == []
    resumed = settings([], planned=real)  # --resume with nothing else: the plan's settings
    assert resumed == real
    assert settings(["--epochs", "7"], planned=real)["epochs"] == 7  # then the plan check reports the change


def test_sweep_from_trained_weights_settings_and_command(tmp_path):
    """--weights/--transition: every run fine-tunes from the checkpoint (its own config); plans without them keep
    their settings (and hash)."""
    from yolo_act_swap.sweep.runner import train_command

    def settings(argv, planned=None):
        args, rest = build_parser().parse_known_args(argv)
        return settings_from_args(args, rest, planned)

    assert "weights" not in settings([]) and "transition" not in settings([])
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"x")
    s = settings(["--weights", str(ckpt), "--transition", "2", "--epochs", "3"])
    assert s["weights"] == str(ckpt.resolve()) and s["transition"] == "2" and s["cfg"] is None
    assert settings([], planned=s) == s
    run = resolve_acts(["relu"])[0]
    cmd = train_command(run, s, SweepFolder(tmp_path / "sw"), "cpu", 0)
    assert cmd[cmd.index("--weights") + 1] == s["weights"] and cmd[cmd.index("--transition") + 1] == "2"
    assert "--cfg" not in cmd and cmd[cmd.index("--act") + 1] == "relu"
    for argv, match in ((["--transition", "2"], "--weights"), (["--weights", str(tmp_path / "no.pt")], "not found"),
                        (["--weights", str(ckpt), "--transition", "9", "--epochs", "3"], "longer than a run"),
                        (["--weights", str(ckpt), "--transition", "x"], "--transition")):
        with pytest.raises(SweepError, match=match):
            settings(argv)


def test_seeds_are_a_count_or_a_list():
    assert resolve_seeds(None, None, None, demo=True) == [0, 1]  # the demo: two seeds
    assert resolve_seeds(None, None, None, demo=False) == [0]
    assert resolve_seeds(None, None, [3, 4], demo=True) == [3, 4]  # an existing plan's seeds
    assert resolve_seeds(None, 7, [3, 4], demo=True) == [7]  # --seed alone: that one seed
    assert resolve_seeds("3", None, None, demo=True) == [0, 1, 2]
    assert resolve_seeds("3", 10, None, demo=True) == [10, 11, 12]  # --seed is the first of a count
    assert resolve_seeds("5,1,2", None, None, demo=True) == [5, 1, 2]
    assert resolve_seeds("4,", None, None, demo=True) == [4]
    for bad in ("0", "x", "1,1", "1,-2", "a,b"):
        with pytest.raises(SweepError, match="--seeds"):
            resolve_seeds(bad, None, None, demo=True)
    with pytest.raises(SweepError, match="--seed 3"):
        resolve_seeds("0,1", 3, None, demo=True)
    runs = with_seeds(resolve_acts(["silu,relu"]), [0, 1])
    assert [(r.run_id, r.seed) for r in runs] == [("silu-seed0", 0), ("relu-seed0", 0), ("silu-seed1", 1),
                                                   ("relu-seed1", 1)]


def test_a_version_1_plan_still_resumes_and_can_gain_seeds(tmp_path):
    """A plan written before seeds were runs: one seed in its settings, runs named by their labels."""
    root = tmp_path / "old"
    folder = SweepFolder(root)
    old_settings = {"cfg": "yolov8n.yaml", "data": None, "epochs": 6, "batch_size": 8, "img_size": 128, "seed": 0,
                    "overrides": list(DEMO_RECIPE)}
    folder.write_json(folder.plan_path, {
        "version": 1, "hash": "whatever-v1-wrote", "settings": old_settings, "train_module": "yolo_act_swap",
        "runs": [{"label": a, "act": a, "spec": None, "spec_sha256": None, "baseline": a == "silu"}
                 for a in ("silu", "relu", "frelu")], "command": ["yolo-act-swap", "sweep"], "created": "2024"})
    folder.write_json(folder.record_path("silu"), {"label": "silu", "status": "finished",
                                                   "metrics": {"mAP50-95": 0.12, "mAP50": 0.24}})

    def planned(argv):
        args, rest = build_parser().parse_known_args([*argv, "--project", str(tmp_path), "--name", "old"])
        sweep = _planned_sweep(args, rest, argv)
        sweep.folder._lock_file.close()  # release the folder for the next call
        return sweep

    sweep = planned([])  # the old default command, after the demo defaults changed: the plan's settings win
    assert [r.run_id for r in sweep.runs] == ["silu", "relu", "frelu"] and {r.seed for r in sweep.runs} == {0}
    assert sweep.settings["epochs"] == 6 and "seed" not in sweep.settings
    assert [r.run_id for r in sweep.pending()] == ["relu", "frelu"]  # silu's record is found under its old name
    assert "--seed 0" in " ".join(sweep.command(sweep.runs[1], "cpu"))
    assert json.loads(folder.plan_path.read_text())["version"] == 1  # nothing new: the plan file is untouched
    sweep = planned(["--resume"])
    assert [r.run_id for r in sweep.runs] == ["silu", "relu", "frelu"]
    sweep = planned(["--resume", "--seeds", "2"])  # seeds 0 and 1: seed 0 is planned already, seed 1 is added
    assert [r.run_id for r in sweep.runs] == ["silu", "relu", "frelu", "silu-seed1", "relu-seed1", "frelu-seed1"]
    plan = json.loads(folder.plan_path.read_text())
    assert plan["version"] == 2 and plan["seeds"] == [0, 1] and "seed" not in plan["settings"]
    assert [r.run_id for r in planned([]).runs] == [r.run_id for r in sweep.runs]  # and that plan resumes as is
    with pytest.raises(SweepError, match="--baseline mish"):
        planned(["--baseline", "mish"])
    assert planned(["--baseline", "relu"]).baseline == "relu"


def test_prepare_decides_skip_resume_or_restart(tmp_path):
    folder = SweepFolder(tmp_path / "s")
    runs = resolve_acts(["silu,relu,mish,gelu,elu"])
    sweep = Sweep(folder, runs, dict(SETTINGS), ["cpu"])
    done, killed, early, failed, torn = (folder.run_dir(r.label) for r in runs)
    for d in (done, killed, early, failed, torn):
        (d / "weights").mkdir(parents=True)
    folder.write_json(done / "act_swap_result.json", {"status": "finished"})  # trained; record not yet written
    torch.save({"epoch": 3, "model": torch.nn.Linear(2, 2), "optimizer": {"state": {}, "param_groups": []},
                "train_args": {"epochs": 6}}, killed / "weights" / "last.pt")  # killed after epoch 4 of 6
    blob = (killed / "weights" / "last.pt").read_bytes()
    (torn / "weights" / "last.pt").write_bytes(blob[: len(blob) // 2])  # killed while ultralytics wrote last.pt
    folder.write_json(folder.record_path("gelu"), {"status": "failed"})  # --retry-failed
    assert sweep.prepare(runs[0]) == (None, {"status": "finished"})
    assert sweep.prepare(runs[1]) == (str(killed / "weights" / "last.pt"), None)
    assert sweep.prepare(runs[2]) == (None, None) and not early.exists()  # no epoch saved: start clean
    assert sweep.prepare(runs[3]) == (None, None) and not failed.exists()
    assert sweep.prepare(runs[4]) == (None, None) and not torn.exists()
    assert [r.label for r in sweep.pending()] == ["silu", "relu", "mish", "elu"]
    assert [r.label for r in Sweep(folder, runs, dict(SETTINGS), ["cpu"], retry_failed=True).pending()] == \
        ["silu", "relu", "mish", "gelu", "elu"]


def test_plan_is_written_first_and_guards_the_folder(tmp_path):
    folder = SweepFolder(tmp_path / "s")
    runs = resolve_acts(["silu,relu"])
    planned = folder.plan(SETTINGS, runs, ["--acts", "silu,relu"])
    plan = json.loads(folder.plan_path.read_text())
    assert [r["label"] for r in plan["runs"]] == ["silu", "relu"] and plan["settings"] == SETTINGS
    assert [r.label for r in planned] == ["silu", "relu"]

    again = folder.plan(dict(SETTINGS), resolve_acts(["relu"]), [])  # same settings, fewer acts: the plan stays
    assert [r.label for r in again] == ["silu", "relu"]
    more = folder.plan(dict(SETTINGS), resolve_acts(["mish"]), [])  # same settings, a new act: appended
    assert [r.label for r in more] == ["silu", "relu", "mish"]
    assert len(json.loads(folder.plan_path.read_text())["runs"]) == 3

    with pytest.raises(SweepError, match=r"epochs: 1 -> 3.*--name"):
        folder.plan({**SETTINGS, "epochs": 3}, runs, [])
    spec = tmp_path / "a.yaml"
    spec.write_text("act: relu\n")
    folder.plan(SETTINGS, resolve_acts([str(spec)]), [])
    spec.write_text("act: mish\n")
    with pytest.raises(SweepError, match="spec file changed"):
        folder.plan(SETTINGS, resolve_acts([str(spec)]), [])


def test_table_sorted_by_map_with_delta_vs_silu(tmp_path):
    folder = SweepFolder(tmp_path / "s")
    runs = resolve_acts(["silu,relu,mish,gelu"])
    recs = {
        "silu": {"status": "finished", "metrics": {"mAP50-95": 0.30, "mAP50": 0.50}, "params": 3000000},
        "relu": {"status": "finished", "metrics": {"mAP50-95": 0.35, "mAP50": 0.55}, "params": 3000000},
        "mish": {"status": "failed", "error": "exit 1: RuntimeError: boom", "metrics": {}},
    }
    for label, rec in recs.items():
        folder.write_json(folder.record_path(label), {"label": label, **rec})
    table = build_table(runs, folder, {"ms": {"silu": 4.0, "relu": 3.5, "mish": 9.9}})
    rows = table.rows
    assert [r["act"] for r in rows] == ["relu", "silu", "mish", "gelu"]  # finished by mAP, failed, then pending
    assert rows[0]["delta"] == pytest.approx(0.05) and rows[1]["delta"] == "baseline"
    assert rows[2]["latency_ms"] is None and rows[2]["error"].startswith("exit 1")  # no latency for a failed run
    assert rows[3]["status"] == "pending"
    md = write_tables(table, folder, SETTINGS, None)
    assert "GFLOPs@64" in md and "| relu" in md and "+0.0500" in md and "| 3,000,000 |" in md
    with open(folder.root / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["act"] for r in table] == ["relu", "silu", "mish", "gelu"]
    assert float(table[0]["delta_vs_silu"]) == pytest.approx(0.05) and table[0]["params"] == "3000000"


def test_results_csv_reader_and_nan_detection(tmp_path):
    p = tmp_path / "results.csv"
    head = "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/mAP50(B),metrics/mAP50-95(B)\n"
    # epoch 2 appears twice, as after a resume from an older last.pt: the later row wins
    p.write_text(head + "1,1.0,1.2,3.1,1.1,0.1,0.05\n2,2.0,1.1,2.9,1.0,0.2,0.10\n2,2.1,1.0,2.8,1.0,0.3,0.15\n"
                 "3,3.0,nan,nan,1.0,0.0,0.0\n")
    rows = read_results_csv(p)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and rows[1]["metrics/mAP50-95(B)"] == 0.15
    assert nan_problem({"metrics": {"mAP50": 0.1, "mAP50-95": 0.05}}, rows) == \
        "NaN/Inf loss (train box, cls) at epoch 3"
    assert nan_problem({"metrics": {"mAP50": 0.1, "mAP50-95": 0.05}}, rows[:2]) is None
    assert "mAP50-95" in nan_problem({"metrics": {"mAP50": 0.1, "mAP50-95": None}}, rows[:2])


def test_run_command_measures_peak_rss_and_cleans_progress_frames(tmp_path):
    child = ("import sys\n"
             "buf = bytearray(300 * 2**20)\n"  # 300 MiB touched
             "sys.stdout.write('\\r\\x1b[K  1/3 loss 0.5\\r\\x1b[K  3/3 loss 0.4\\n')\n"
             "print('ValueError: something went wrong', flush=True)\n"
             "sys.exit(3)\n")
    out = run_command(["python", "-c", child], tmp_path / "log.txt")
    assert out["returncode"] == 3
    assert out["max_rss_mb"] > 300
    assert out["tail"] == ["  3/3 loss 0.4", "ValueError: something went wrong"]
    assert "ValueError" in (tmp_path / "log.txt").read_text()


def test_a_run_stopped_from_outside_stays_resumable_not_failed(tmp_path):
    folder = SweepFolder(tmp_path / "s")
    runs = resolve_acts(["silu,relu"])
    sweep = Sweep(folder, runs, dict(SETTINGS), ["cpu"])
    stopped = run_command(["python", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"],
                          tmp_path / "a.log")
    assert stopped["returncode"] == -signal.SIGTERM
    assert sweep.record(runs[0], stopped, "cpu") is None and folder.record("silu") is None  # no row: resumable
    crashed = run_command(["python", "-c", "raise SystemExit('yolo-act-swap: error: bad things')"], tmp_path / "b.log")
    rec = sweep.record(runs[1], crashed, "cpu")
    assert rec["status"] == "failed" and rec["error"] == "exit 1: yolo-act-swap: error: bad things"
    assert folder.record("relu") == rec
    rows = {r["act"]: r for r in table_rows(runs, folder)}
    assert rows["silu"]["status"] == "pending" and rows["relu"]["status"] == "failed"


def test_cli_reports_a_bad_act_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "yolo_act_swap", "sweep", "--acts", "silu,frlu", "--project",
                        str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "frlu" in lines[0] and "frelu" in lines[0]
    assert not (tmp_path / "sweep").exists() or not (tmp_path / "sweep" / "plan.json").exists()


# ------------------------------------------------------------------------------------- real tiny sweeps (slow)
@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    """silu, relu and a NaN run, 2 epochs each: SIGKILL once silu is recorded and relu has saved its first epoch,
    then ``--resume``, then the original command once more."""
    root = tmp_path_factory.mktemp("sweep")
    folder = root / "s"
    cmd = [sys.executable, "-m", "yolo_act_swap.sweep", "--acts", f"silu,relu,{FAIL_ACT}", "--seeds", "1",
           "--project", str(root), "--name", "s", "--epochs", "2", "--device", "cpu", *TINY]
    with open(root / "first.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 400
        while not checkpoint_complete(folder / "runs" / "relu-seed0" / "weights" / "last.pt"):  # resume needs a whole one
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the sweep ended before relu's first epoch:\n{(root / 'first.log').read_text()[-3000:]}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    silu_dir = folder / "runs" / "silu-seed0"
    before = {
        "record": (folder / "records" / "silu-seed0.json").read_text(),
        "result_mtime": (silu_dir / "act_swap_result.json").stat().st_mtime_ns,
        "best_mtime": (silu_dir / "weights" / "best.pt").stat().st_mtime_ns,
        "records": sorted(p.name for p in (folder / "records").iterdir()),
        "relu_done": (folder / "runs" / "relu-seed0" / "act_swap_result.json").exists(),
    }
    orphans = _procs_mentioning(str(folder / "runs"))
    t = time.time()
    while orphans and time.time() - t < 20:
        time.sleep(0.2)
        orphans = _procs_mentioning(str(folder / "runs"))
    resumed = subprocess.run([sys.executable, "-m", "yolo_act_swap", "sweep", "--resume", str(folder),
                              "--device", "cpu", "--workers", "0", "--latency-reps", "5"],
                             capture_output=True, text=True, timeout=600)
    md_after_resume = (folder / "results.md").read_text() if (folder / "results.md").exists() else ""
    logs_after_resume = {p.name: _commands(p) for p in (folder / "logs").iterdir()}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return SimpleNamespace(folder=folder, before=before, orphans=orphans, resumed=resumed, again=again,
                           md_after_resume=md_after_resume, logs_after_resume=logs_after_resume)


@pytest.mark.slow
def test_sweep_killed_during_the_final_validation_collects_the_run(tmp_path):
    """SIGKILL while a run validates its best.pt (its last epoch saved, its result not yet written): the next start
    validates that best.pt and records the run, without training it again."""
    folder = tmp_path / "s"
    cmd = [sys.executable, "-m", "yolo_act_swap.sweep", "--acts", "relu", "--seeds", "1", "--project", str(tmp_path),
           "--name", "s", "--epochs", "1", "--device", "cpu", *TINY]
    run_dir, log = folder / "runs" / "relu-seed0", folder / "logs" / "relu-seed0.log"
    with open(tmp_path / "first.log", "wb") as out:
        env = dict(os.environ, YOLO_VERBOSE="true")  # ultralytics logs "Validating .../best.pt..."
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 400
        while not (log.exists() and "Validating " in log.read_text(errors="replace")):
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"no final validation seen:\n{(tmp_path / 'first.log').read_text()[-3000:]}")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    t = time.time()
    while _procs_mentioning(str(run_dir)) and time.time() - t < 20:  # the training gets SIGTERM with its parent
        time.sleep(0.2)
    assert not (run_dir / "act_swap_result.json").exists(), "killed too late: the result was already written"
    assert not (folder / "records" / "relu-seed0.json").exists()
    epochs = read_results_csv(run_dir / "results.csv")
    resumed = subprocess.run([sys.executable, "-m", "yolo_act_swap", "sweep", "--resume", str(folder), "--device", "cpu",
                              "--workers", "0", "--latency-reps", "5"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "relu-seed0: training is over but its result is missing; validating its best.pt" in resumed.stdout
    assert _commands(log) == 1, "the run was trained again"
    assert read_results_csv(run_dir / "results.csv") == epochs
    rec = json.loads((folder / "records" / "relu-seed0.json").read_text())
    assert rec["status"] == "finished" and rec["error"] is None and rec["epochs_done"] == 1
    assert set(rec["metrics"]) == {"precision", "recall", "mAP50", "mAP50-95"} and rec["params"]
    result = json.loads((run_dir / "act_swap_result.json").read_text())
    assert result["collected"] and result["act_swap"] == {"act": "relu"}


@pytest.mark.slow
def test_killed_sweep_resumes_without_repeating_finished_runs(killed_sweep):
    k = killed_sweep
    assert k.before["records"] == ["silu-seed0.json"]  # killed right after the first run was recorded
    assert k.orphans == [], "the training subprocess outlived the killed sweep"
    assert k.resumed.returncode == 0, k.resumed.stdout[-3000:] + k.resumed.stderr[-3000:]
    assert "1 already recorded, 2 to train" in k.resumed.stdout
    silu_dir = k.folder / "runs" / "silu-seed0"
    assert (k.folder / "records" / "silu-seed0.json").read_text() == k.before["record"]  # the row was not redone
    assert (silu_dir / "act_swap_result.json").stat().st_mtime_ns == k.before["result_mtime"]
    assert (silu_dir / "weights" / "best.pt").stat().st_mtime_ns == k.before["best_mtime"]
    assert _commands(k.folder / "logs" / "silu-seed0.log") == 1  # trained once
    assert not k.before["relu_done"]  # relu was killed mid-training ...
    relu_log = (k.folder / "logs" / "relu-seed0.log").read_text(errors="replace")
    resumes = [ln for ln in relu_log.splitlines() if ln.startswith("$ ")]
    assert len(resumes) == 2 and "--resume" in resumes[1] and "weights/last.pt" in resumes[1]  # ... and resumed
    epochs = [int(r["epoch"]) for r in read_results_csv(k.folder / "runs" / "relu-seed0" / "results.csv")]
    assert epochs == [1, 2]
    with open(k.folder / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["act"] for r in rows) == sorted(["silu", FAIL_LABEL, "relu"])  # every run exactly once


@pytest.mark.slow
def test_rerun_of_a_complete_sweep_gives_the_same_table(killed_sweep):
    k = killed_sweep
    assert k.again.returncode == 0, k.again.stderr[-3000:]
    assert "3 already recorded, 0 to train" in k.again.stdout
    assert (k.folder / "results.md").read_text() == k.md_after_resume  # same rows, same numbers, same latency
    assert k.md_after_resume.strip() in k.again.stdout  # and the table is printed
    assert {p.name: _commands(p) for p in (k.folder / "logs").iterdir()} == k.logs_after_resume  # nothing re-ran


@pytest.mark.slow
def test_failing_run_is_recorded_and_the_others_finish(killed_sweep):
    folder = killed_sweep.folder
    bad = json.loads((folder / "records" / f"{FAIL_LABEL}-seed0.json").read_text())
    assert bad["status"] == "failed"
    assert "glu" in bad["error"].lower() and "exit 2" in bad["error"], bad["error"]
    with open(folder / "results.csv", newline="") as f:
        rows = {r["act"]: r for r in csv.DictReader(f)}
    assert rows[FAIL_LABEL]["status"] == "failed" and rows[FAIL_LABEL]["error"] == bad["error"]
    for label in ("silu", "relu"):
        row, rec = rows[label], json.loads((folder / "records" / f"{label}-seed0.json").read_text())
        assert row["status"] == "finished" and rec["status"] == "finished"
        assert float(row["mAP50-95"]) == pytest.approx(rec["metrics"]["mAP50-95"], abs=1e-6)
        assert int(row["params"]) > 1_000_000 and float(row["GFLOPs"]) > 0
        assert float(row["latency_ms"]) > 0 and float(row["epoch_time_s"]) > 0 and float(row["peak_mem_mb"]) > 100
    assert float(rows["silu"]["delta_vs_silu"]) == 0.0
    md = (folder / "results.md").read_text()
    assert md.count("| silu ") == 1 and "baseline" in md
    assert "**Warning:** one seed per activation: no verdict is possible" in md  # --seeds 1 says so
    assert rows["relu"]["verdict"].startswith("no verdict") and rows["relu"]["n"] == "1"  # one seed (or all 0)


@pytest.mark.slow
def test_sweep_plots_are_valid_pngs(killed_sweep):
    for name in ("frontier.png", "map.png", "curves.png"):
        w, h = _png_size(killed_sweep.folder / name)
        assert 400 <= w <= 4000 and 300 <= h <= 3000, (name, w, h)


@pytest.mark.slow
def test_ray_backend_runs_each_training_as_a_task(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    from yolo_act_swap.cli import sweep

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rc = sweep.main(["--backend", "ray", "--acts", "silu", "--seeds", "0,1", "--project", str(tmp_path), "--name", "r",
                         "--epochs", "1", "--device", "cpu", *TINY, "--no-plots"])
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert rc == 0 and out.count("submitted to Ray") == 2
    folder = tmp_path / "r"
    for run_id in ("silu-seed0", "silu-seed1"):  # one Ray task per (activation, seed)
        rec = json.loads((folder / "records" / f"{run_id}.json").read_text())
        assert rec["status"] == "finished", rec["error"]
        assert rec["runner"]["backend"] == "ray" and rec["runner"]["pid"] != os.getpid()
        assert Path(rec["best"]).exists() and rec["seed"] == int(run_id[-1])
    with open(folder / "results.csv", newline="") as f:
        assert [(r["act"], r["n"]) for r in csv.DictReader(f)] == [("silu", "2")]


@pytest.mark.slow
def test_one_run_per_device_in_parallel(tmp_path):
    from yolo_act_swap.cli import sweep

    rc = sweep.main(["--device", "cpu,cpu", "--acts", "silu,relu", "--seeds", "1", "--project", str(tmp_path),
                     "--name", "p", "--epochs", "1", *TINY, "--no-plots"])
    assert rc == 0
    recs = [json.loads((tmp_path / "p" / "records" / f"{a}-seed0.json").read_text()) for a in ("silu", "relu")]
    assert all(r["status"] == "finished" for r in recs), [r["error"] for r in recs]
    a, b = recs
    assert a["started_at"] < b["ended_at"] and b["started_at"] < a["ended_at"]  # the two trainings overlapped
    assert a["runner"]["pid"] == b["runner"]["pid"] == os.getpid()  # both children of this sweep process


# ------------------------------------------------------------- two activations x two seeds: statistics and resume
@pytest.fixture(scope="module")
def two_seed_sweep(tmp_path_factory):
    """silu and relu, seeds 0 and 1 (four runs of one epoch, trained seed by seed): SIGKILL once both seed-0 runs
    are recorded, i.e. between the seeds of silu, then the same command again; then silu's seed 0 trained once more
    by hand with the command its log recorded (the determinism check)."""
    root = tmp_path_factory.mktemp("seeds")
    folder = root / "s"
    cmd = [sys.executable, "-m", "yolo_act_swap", "sweep", "--acts", "silu,relu", "--seeds", "2", "--project",
           str(root), "--name", "s", "--epochs", "1", "--device", "cpu", *TINY]
    with open(root / "first.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 400
        while not (folder / "records" / "relu-seed0.json").exists():
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the sweep ended before relu-seed0:\n{(root / 'first.log').read_text()[-3000:]}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {p.name: p.read_text() for p in (folder / "records").iterdir()}
    t = time.time()
    while _procs_mentioning(str(folder / "runs")) and time.time() - t < 20:
        time.sleep(0.2)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    logged = next(ln for ln in (folder / "logs" / "silu-seed0.log").read_text().splitlines() if ln.startswith("$ "))
    argv = logged[2:].split()
    argv[argv.index("--name") + 1] = "silu-seed0-again"
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    return SimpleNamespace(folder=folder, before=before, again=again, rerun=rerun)


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_killed_between_seeds_nothing_repeated_or_lost(two_seed_sweep):
    k = two_seed_sweep
    assert sorted(k.before) == ["relu-seed0.json", "silu-seed0.json"]  # killed between silu's seeds
    assert k.again.returncode == 0, k.again.stdout[-3000:] + k.again.stderr[-3000:]
    assert "4 runs (2 activations x 2 seeds), 2 already recorded, 2 to train" in k.again.stdout
    for name, text in k.before.items():
        assert (k.folder / "records" / name).read_text() == text  # recorded runs were not redone
        assert _commands(k.folder / "logs" / name.replace(".json", ".log")) == 1
    runs = _csv_rows(k.folder / "runs.csv")
    assert sorted((r["act"], r["seed"], r["status"]) for r in runs) == [
        ("relu", "0", "finished"), ("relu", "1", "finished"), ("silu", "0", "finished"), ("silu", "1", "finished")]
    assert sorted(p.name for p in (k.folder / "records").iterdir()) == [
        "relu-seed0.json", "relu-seed1.json", "silu-seed0.json", "silu-seed1.json"]


@pytest.mark.slow
def test_two_seed_table_has_means_intervals_p_values_and_verdicts(two_seed_sweep):
    k = two_seed_sweep
    rows = {r["act"]: r for r in _csv_rows(k.folder / "results.csv")}
    assert sorted(rows) == ["relu", "silu"] and all(r["n"] == "2" for r in rows.values())
    recs = {(a, s): json.loads((k.folder / "records" / f"{a}-seed{s}.json").read_text())["metrics"]["mAP50-95"]
            for a in ("silu", "relu") for s in (0, 1)}
    for a in ("silu", "relu"):
        assert float(rows[a]["mAP50-95"]) == pytest.approx((recs[a, 0] + recs[a, 1]) / 2, abs=1e-6)
        assert rows[a]["mAP50-95_ci_low"] != "" and rows[a]["mAP50-95_std"] != ""
    assert rows["silu"]["verdict"] == "baseline"
    md = (k.folder / "results.md").read_text()
    assert "seeds 0,1" in md and "paired t-test" in md and "| relu" in md
    line = next(ln for ln in k.again.stdout.splitlines() if ln.startswith("relu vs silu: "))
    if all(v == 0 for v in recs.values()):  # one epoch at 64 px may learn nothing: then it must say so
        assert "**Warning:** every mAP50-95 is 0" in md and "warning: every mAP50-95 is 0" in k.again.stdout
        assert rows["relu"]["verdict"] == "no verdict: every mAP is 0" and line.endswith("no verdict: every mAP is 0")
    else:
        diffs = [recs["relu", s] - recs["silu", s] for s in (0, 1)]
        assert float(rows["relu"]["delta_vs_silu"]) == pytest.approx(sum(diffs) / 2, abs=1e-6)
        if diffs[0] != diffs[1]:
            assert 0 <= float(rows["relu"]["p_value"]) <= 1 and rows["relu"]["delta_ci_low"] != ""
            assert rows["relu"]["verdict"] in ("better", "worse", "no significant difference at n=2")
            assert "p=" in line and "n=2" in line
    for name in ("frontier.png", "map.png", "curves.png"):
        w, h = _png_size(k.folder / name)
        assert 400 <= w <= 4000 and 300 <= h <= 3000, (name, w, h)


@pytest.mark.slow
def test_same_activation_and_seed_give_the_same_result_on_cpu(two_seed_sweep):
    """Ultralytics' deterministic=True (its default) on CPU: training silu with seed 0 again reproduces every loss
    and metric of the sweep's run; the other seed does not (the seed reaches the training)."""
    k = two_seed_sweep
    assert k.rerun.returncode == 0, k.rerun.stdout[-3000:] + k.rerun.stderr[-3000:]
    runs = k.folder / "runs"

    def numbers(name):
        return [{c: v for c, v in r.items() if c != "time"} for r in read_results_csv(runs / name / "results.csv")]

    first, again, other = numbers("silu-seed0"), numbers("silu-seed0-again"), numbers("silu-seed1")
    assert first and again == first
    m1 = json.loads((runs / "silu-seed0" / "act_swap_result.json").read_text())["metrics"]
    m2 = json.loads((runs / "silu-seed0-again" / "act_swap_result.json").read_text())["metrics"]
    assert m1 == m2
    assert other != first
