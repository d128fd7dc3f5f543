"""``yolo-act-swap sweep``: train one model per activation under identical settings and compare them.

    yolo-act-swap sweep                                             # demo: silu,relu,frelu on the synthetic data, CPU
    yolo-act-swap sweep --cfg yolov7-tiny.yaml --acts silu,relu,frelu,acon_c --data coco.yaml --epochs 50 --device 0,1

Every run is one training in a subprocess (``python -m yolo_act_swap.train ...``), so a crash, a NaN or an
out-of-memory kill costs one row, not the sweep. The sweep folder::

    {project}/{name}/
        plan.json              settings, their hash and the runs (written first, atomically)
        records/{label}.json   one result record per finished or failed run (atomic)
        runs/{label}/          the ultralytics run folder (weights/, results.csv, act_swap_result.json)
        logs/{label}.log       the run's console output
        specs/{label}.yaml     a frozen copy of each spec file
        latency.json           fused batch-1 latency of the finished runs, measured side by side in one process
        results.csv/.md, *.png the comparison, regenerated from the records

Killed at any point and started again with the same command (or ``--resume``), a sweep skips recorded runs, resumes
interrupted ones from their ``last.pt`` and never loses or duplicates a row.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ActSwapError
from .io import atomic_write_text, configs_dir

TRAIN_MODULE = "yolo_act_swap.train"  # every run is ``python -m TRAIN_MODULE ...``
PLAN_VERSION = 1
DEFAULT_ACTS = "silu,relu,frelu"
# no --data: the built-in demo, about a CPU minute per activation, with a recipe that learns visibly in 6 epochs
DEMO_DEFAULTS = {"cfg": "yolov8n.yaml", "epochs": 6, "batch_size": 8, "img_size": 128}
DEMO_RECIPE = ["optimizer=AdamW", "lr0=0.003", "warmup_epochs=1"]  # your key=value arguments come after (and win)
DATA_DEFAULTS = {"cfg": None, "epochs": 100, "batch_size": 16, "img_size": 640}  # cfg None: the train default
RESERVED_OVERRIDES = {"project", "name", "exist_ok", "resume", "device", "save_dir", "model", "data", "epochs",
                      "batch", "imgsz", "seed", "workers"}  # set by the sweep (or by its own flags) for every run
ENV_PREFIXES = ("YOLO_", "YAS_", "ULTRALYTICS_", "OMP_", "MKL_", "MPLBACKEND", "CUBLAS_")
TABLE_COLUMNS = [  # (csv key, markdown header)
    ("act", "act"),
    ("status", "status"),
    ("mAP50-95", "mAP50-95"),
    ("mAP50", "mAP50"),
    ("delta_vs_silu", "Δ vs silu"),
    ("params", "params"),
    ("GFLOPs", "GFLOPs@{imgsz}"),
    ("latency_ms", "latency ms"),
    ("epoch_time_s", "epoch time s"),
    ("peak_mem_mb", "peak mem MB"),
    ("error", "error"),
]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class SweepError(ActSwapError):
    """A sweep cannot start or continue as asked (settings clash with the folder, bad ``--acts`` item, ...)."""


# ----------------------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One training of the sweep.

    Attributes:
        label (str): unique, folder-safe name (the table's ``act`` column).
        act (str, optional): the ``--act`` form passed to training (``leaky_relu:negative_slope=0.1``).
        spec (str, optional): a spec file (frozen into the sweep folder) passed as ``--spec``.
        spec_sha256 (str, optional): content hash of the spec file.
        baseline (bool): a plain ``silu`` run, the reference of the ``Δ vs silu`` column.
    """

    label: str
    act: str | None = None
    spec: str | None = None
    spec_sha256: str | None = None
    baseline: bool = False

    def identity(self) -> dict:
        """What must not change between a sweep and its resume."""
        return {"act": self.act, "spec_sha256": self.spec_sha256}


def _label(text: str) -> str:
    """Folder-safe label: ``leaky_relu:negative_slope=0.1`` -> ``leaky_relu_negative_slope=0.1``."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text.replace(":", "_").replace(",", "_")).strip("._") or "act"


def _split_acts(items: list[str]) -> list[str]:
    """Split comma lists outside brackets; ``acon_c:init=silu,reduction=8`` keeps its second keyword."""
    tokens: list[str] = []
    for item in items:
        pieces, depth, cur = [], 0, ""
        for ch in str(item):
            depth += (ch in "[{(") - (ch in "]})")
            if ch == "," and depth == 0:
                pieces.append(cur)
                cur = ""
            else:
                cur += ch
        for piece in (*pieces, cur):
            piece = piece.strip()
            if not piece:
                continue
            if tokens and "=" in piece and ":" not in piece and "/" not in piece and ":" in tokens[-1]:
                tokens[-1] += "," + piece  # a further keyword of the previous inline spec
            else:
                tokens.append(piece)
    return tokens


def _spec_file(token: str) -> Path | None:
    """The spec file or folder a ``--acts`` token names (a path, or a built-in ``configs/acts`` name), else None."""
    from .activations import all_names, normalize_name
    from .spec import resolve_spec_file

    p = Path(token).expanduser()
    if p.is_dir():
        return p.resolve()
    if ":" in token or normalize_name(token) in all_names():
        return None  # an activation (inline form or registered name)
    found = resolve_spec_file(token)
    if found is not None:
        return Path(found).resolve()
    if token.endswith((".yaml", ".yml")) or "/" in token or os.sep in token:
        raise SweepError(f"--acts: spec file {token!r} not found (looked here and in {configs_dir() / 'acts'})")
    return None  # validated as an activation name next (unknown names get suggestions)


def _validate_act(token: str) -> bool:
    """Validate an inline ``--act`` form up front; return True when it is plain silu (the baseline)."""
    from .spec import load_spec

    act = load_spec(act=token).act
    return bool(act is not None and act.name == "silu" and not act.kwargs)


def _validate_spec_file(path: Path) -> None:
    from .spec import load_spec

    load_spec(str(path))


def resolve_acts(items: list[str]) -> list[Run]:
    """Turn ``--acts`` items (names, inline specs, spec files, folders of spec files) into validated runs.

    Args:
        items (list[str]): the ``--acts`` values; each may be a comma list.

    Returns:
        (list[Run]): one run per activation, in the order given.
    """
    runs: list[Run] = []
    for token in _split_acts(items):
        path = _spec_file(token)
        if path is None:
            baseline = _validate_act(token)
            runs.append(Run(label=_label(token), act=token, baseline=baseline))
            continue
        files = sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
        if not files:
            raise SweepError(f"--acts: folder {path} holds no .yaml spec files")
        for f in files:
            _validate_spec_file(f)
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            runs.append(Run(label=_label(f.stem), spec=str(f), spec_sha256=digest))
    if not runs:
        raise SweepError("--acts is empty: give activation names, inline specs or spec files, e.g. --acts silu,relu")
    seen: set[str] = set()
    for r in runs:
        if r.label in seen:
            raise SweepError(f"--acts lists {r.label!r} twice; every run needs its own activation or spec")
        seen.add(r.label)
    return runs


# ----------------------------------------------------------------------------------------------------------- plan
def _abs_if_exists(value: str | None) -> str | None:
    return str(Path(value).expanduser().resolve()) if value and Path(value).expanduser().exists() else value


def settings_hash(settings: dict) -> str:
    """Short hash of everything that makes the runs of a sweep comparable."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class SweepFolder:
    """The files of one sweep; every write is atomic.

    Args:
        root (Path): the sweep folder (``{project}/{name}``).
    """

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.plan_path = self.root / "plan.json"
        self._lock_file = None
        self._table_lock = threading.Lock()

    def run_dir(self, label: str) -> Path:
        return self.root / "runs" / label

    def record_path(self, label: str) -> Path:
        return self.root / "records" / f"{label}.json"

    def log_path(self, label: str) -> Path:
        return self.root / "logs" / f"{label}.log"

    def read_json(self, path: Path) -> dict | None:
        """A JSON file's content, or None when missing or unreadable."""
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def write_json(self, path: Path, obj) -> Path:
        return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")

    def record(self, label: str) -> dict | None:
        return self.read_json(self.record_path(label))

    def lock(self) -> None:
        """Hold an exclusive lock on the folder for this process's lifetime (released by the OS even on SIGKILL)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, one sweep per folder is on the user
            return
        f = open(self.root / ".lock", "a+")  # noqa: SIM115 - kept open on purpose
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise SweepError(f"sweep folder {self.root} is in use by another running sweep; wait for it to end "
                             f"or pass a different --name") from None
        self._lock_file = f

    def plan(self, settings: dict, runs: list[Run], argv: list[str]) -> list[Run]:
        """Write ``plan.json`` for a new sweep, or check a re-run against it and add any new runs.

        Returns:
            (list[Run]): every run of the sweep, the planned ones first.
        """
        new_hash = settings_hash(settings)
        old = self.read_json(self.plan_path) if self.plan_path.exists() else None
        if self.plan_path.exists() and old is None:
            raise SweepError(f"{self.plan_path} is unreadable; delete it to plan the sweep again")
        all_runs = list(runs)
        if old is not None:
            if old.get("hash") != new_hash:
                was = old.get("settings", {})
                diff = "; ".join(f"{k}: {was.get(k)!r} -> {settings.get(k)!r}" for k in sorted(settings)
                                 if was.get(k) != settings.get(k))
                raise SweepError(f"sweep folder {self.root} was planned with other settings ({diff}); rerun with the "
                                 f"same settings to resume, or pass a new --name")
            planned = [Run(**r) for r in old.get("runs", [])]
            by_label = {r.label: r for r in planned}
            for r in runs:
                p = by_label.get(r.label)
                if p is not None and p.identity() != r.identity():
                    what = "spec file changed" if r.spec else f"was {p.act!r}"
                    raise SweepError(f"run {r.label!r} of {self.root} differs from its plan ({what}); restore it or "
                                     f"pass a new --name")
            all_runs = planned + [r for r in runs if r.label not in by_label]
            if len(all_runs) == len(planned):
                return planned
        plan = {
            "version": PLAN_VERSION,
            "hash": new_hash,
            "settings": settings,
            "runs": [asdict(r) for r in all_runs],
            "train_module": TRAIN_MODULE,
            "command": ["yolo-act-swap", "sweep", *argv],
            "created": (old or {}).get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
        }
        self.write_json(self.plan_path, plan)
        return all_runs

    def freeze_spec(self, run: Run) -> str:
        """Copy a run's spec file into the sweep folder once, so that resumes train with the same spec."""
        dst = self.root / "specs" / f"{run.label}.yaml"
        if not dst.exists():
            atomic_write_text(dst, Path(run.spec).read_text(encoding="utf-8"))
        return str(dst)


# ------------------------------------------------------------------------------------------------------ commands
def train_command(run: Run, settings: dict, folder: SweepFolder, device: str | None, workers: int | None,
                  resume: str | None = None, verbose: bool = False) -> list[str]:
    """The ``python -m yolo_act_swap.train`` argument list for one run (``python`` is argv[0], replaced by the runner).

    Args:
        run (Run): the run.
        settings (dict): the sweep settings (cfg, data, epochs, batch_size, img_size, seed, overrides).
        folder (SweepFolder): where the run folder lives.
        device (str, optional): one device for this run (``cpu``, ``0``, ...).
        workers (int, optional): dataloader workers.
        resume (str, optional): a ``last.pt`` to resume from.
        verbose (bool): pass ``--verbose`` to training.
    """
    cmd = ["python", "-m", TRAIN_MODULE]
    if resume:
        cmd += ["--resume", resume]
    else:
        if settings.get("cfg"):
            cmd += ["--cfg", settings["cfg"]]
        if settings.get("data"):
            cmd += ["--data", settings["data"]]
        if run.act:
            cmd += ["--act", run.act]
        if run.spec:
            cmd += ["--spec", folder.freeze_spec(run)]
        cmd += ["--epochs", str(settings["epochs"]), "--batch-size", str(settings["batch_size"]),
                "--img-size", str(settings["img_size"]), "--seed", str(settings["seed"])]
    run_dir = folder.run_dir(run.label)
    cmd += ["--project", str(run_dir.parent), "--name", run.label, "--exist-ok"]
    if device is not None:
        cmd += ["--device", str(device)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if verbose:
        cmd.append("--verbose")
    if not resume:
        cmd += list(settings.get("overrides", []))
    return cmd


def _child_env() -> dict:
    """The environment entries a run needs wherever it executes (a Ray worker merges them into its own)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


_LIBC = None


def _libc():
    """The C library, loaded in the parent (a forked child must not import anything)."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the training gets SIGTERM when the sweep process dies, even by SIGKILL (no orphaned runs)."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _clean_line(raw: bytes) -> str:
    """Console bytes to one plain line: the last carriage-return frame of a progress bar, without ANSI codes."""
    text = raw.decode("utf-8", errors="replace")
    frames = [f for f in text.split("\r") if _ANSI.sub("", f).strip()]
    return _ANSI.sub("", frames[-1] if frames else "").rstrip()


def run_command(cmd: list[str], log_path: str | os.PathLike, env: dict | None = None, echo=None,
                procs: dict | None = None) -> dict:
    """Run one training subprocess, tee its output to ``log_path`` and measure its peak memory.

    Args:
        cmd (list[str]): the command; ``python`` as argv[0] means this interpreter.
        log_path (str | Path): log file (appended to).
        env (dict, optional): entries added to this process's environment.
        echo (Callable, optional): called with each complete output line.
        procs (dict, optional): the live process is kept here under its pid while it runs (to stop it).

    Returns:
        (dict): ``returncode``, ``max_rss_mb`` (the process's max resident set size, or None), ``tail`` (last lines),
            ``started`` and ``ended`` (epoch seconds).
    """
    cmd = [sys.executable if i == 0 and c == "python" else c for i, c in enumerate(cmd)]
    full_env = {**os.environ, **(env or {})}
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    tail: deque = deque(maxlen=200)
    linux = sys.platform.startswith("linux")
    if linux:
        with contextlib.suppress(OSError):
            _libc()
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()  # on disk before the run starts, even if this process is killed a moment later
        started = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
                                preexec_fn=_die_with_parent if linux else None)
        if procs is not None:
            procs[proc.pid] = proc
        try:
            buf = b""
            while True:
                chunk = proc.stdout.read1(1 << 16)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                *lines, buf = (buf + chunk).split(b"\n")
                for raw in lines:
                    line = _clean_line(raw)
                    if line:
                        tail.append(line)
                        if echo is not None:
                            echo(line)
            if _clean_line(buf):
                tail.append(_clean_line(buf))
            rss = None
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                rss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
            else:  # pragma: no cover - Windows
                proc.wait()
        finally:
            if proc.returncode is None:  # interrupted while reading: stop the training before leaving
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(Exception):
                    proc.wait(timeout=30)
            if procs is not None:
                procs.pop(proc.pid, None)
            proc.stdout.close()
    return {"returncode": proc.returncode, "max_rss_mb": rss, "tail": list(tail), "started": started,
            "ended": time.time()}


def _ray_task(cmd: list[str], log_path: str, env: dict) -> dict:
    """A Ray task: the same subprocess as a local run (``python`` is the Ray worker's interpreter)."""
    import ray

    out = run_command(cmd, log_path, env=env)
    out["runner"] = {"backend": "ray", "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    return out


def checkpoint_complete(path: str | os.PathLike) -> bool:
    """True when a ``torch.save`` zip archive is whole (ultralytics writes ``last.pt`` in place, not atomically)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def interrupted(outcome: dict) -> bool:
    """True when a run was stopped from outside (SIGINT, SIGTERM, SIGHUP, or exit code 130 after Ctrl-C)."""
    rc = outcome.get("returncode")
    return rc in (130, -signal.SIGINT, -signal.SIGTERM, -signal.SIGHUP) and not outcome.get("error")


def error_line(tail: list[str]) -> str:
    """The most telling line of a failed run's output (the exception or our one-line error)."""
    for line in reversed(tail):
        s = line.strip()
        if re.search(r"(Error|Exception|error:|Killed|NaN)", s) and not s.startswith(("File ", "raise ", "^")):
            return s[:300]
    return next((s.strip()[:300] for s in reversed(tail) if s.strip()), "no output")


# ------------------------------------------------------------------------------------------------------- harvest
def read_results_csv(path: str | os.PathLike) -> list[dict]:
    """Ultralytics' per-epoch ``results.csv`` as a list of dicts of floats (one per epoch; a resumed epoch once)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows: dict[int, dict] = {}
    for row in csv.DictReader(io.StringIO(text)):
        try:
            vals = {k.strip(): float(v) for k, v in row.items() if k and v not in (None, "")}
        except ValueError:
            continue
        if "epoch" in vals:
            rows[int(vals["epoch"])] = vals  # a resume may repeat an epoch: the later row wins
    return [rows[k] for k in sorted(rows)]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def nan_problem(result: dict | None, epochs: list[dict]) -> str | None:
    """A NaN/Inf in the training losses or the final metrics, described in one line; None when all is finite."""
    for row in epochs:  # a NaN validation loss means the model's outputs are NaN, even when mAP reads 0
        bad: dict[str, list[str]] = {}
        for k, v in row.items():
            if k.startswith(("train/", "val/")) and not math.isfinite(v):
                split, name = k.split("/", 1)
                bad.setdefault(split, []).append(name.replace("_loss", ""))
        if bad:
            what = "; ".join(f"{split} {', '.join(names)}" for split, names in bad.items())
            return f"NaN/Inf loss ({what}) at epoch {int(row['epoch'])}"
    metrics = (result or {}).get("metrics") or {}
    bad = [k for k in ("mAP50", "mAP50-95") if not _finite(metrics.get(k))]  # train.py writes a NaN as null
    return f"NaN or missing final metrics ({', '.join(bad)})" if bad else None


def model_stats(weights: str | os.PathLike, imgsz: int) -> dict:
    """Parameter count and GFLOPs at ``imgsz`` of a checkpoint's (unfused) model, computed with ultralytics."""
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils.torch_utils import get_flops

    model, _ = load_checkpoint(weights, device="cpu")
    params = sum(p.numel() for p in model.parameters())
    return {"params": int(params), "GFLOPs": round(float(get_flops(model, imgsz)), 3)}


def harvest(run: Run, folder: SweepFolder, outcome: dict, imgsz: int, gpu: bool) -> dict:
    """Build a run's result record from its exit status, output, ``act_swap_result.json`` and ``results.csv``."""
    run_dir = folder.run_dir(run.label)
    result = folder.read_json(run_dir / "act_swap_result.json")
    epochs = read_results_csv(run_dir / "results.csv")
    rc = outcome.get("returncode")
    tail = outcome.get("tail") or []
    error = None
    if outcome.get("error"):
        error = outcome["error"]
    elif rc is not None and rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        error = f"killed by {name}" + (" (out of memory?)" if -rc == signal.SIGKILL else "")
    elif rc:
        error = f"exit {rc}: {error_line(tail)}"
    elif not result or result.get("status") != "finished":
        error = f"no finished act_swap_result.json in {run_dir}: {error_line(tail)}"
    else:
        error = nan_problem(result, epochs)
    metrics = (result or {}).get("metrics") or {}
    rss = outcome.get("max_rss_mb")
    peak, source = ((result or {}).get("peak_mem_mb"), "result json") if gpu or rss is None else (rss, "max RSS")
    record = {
        "label": run.label,
        "act": run.act,
        "spec": run.spec,
        "status": "failed" if error else "finished",
        "error": error,
        "returncode": rc,
        "run_dir": str(run_dir),
        "best": (result or {}).get("best"),
        "last": (result or {}).get("last"),
        "metrics": metrics,
        "epochs_done": len(epochs),
        "epoch_time_s": (result or {}).get("epoch_time_s"),
        "train_time_s": (result or {}).get("train_time_s"),
        "peak_mem_mb": peak,
        "peak_mem_source": source,
        "params": None,
        "GFLOPs": None,
        "started_at": outcome.get("started"),
        "ended_at": outcome.get("ended"),
        "recorded_at": time.time(),
    }
    best = record["best"] if record["best"] and Path(record["best"]).exists() else None
    if best:
        try:
            record.update(model_stats(best, imgsz))
        except Exception as e:  # noqa: BLE001 - a stats failure must not lose the run's row
            record["stats_error"] = f"{type(e).__name__}: {e}"
    return record


# ------------------------------------------------------------------------------------------------------- latency
def measure_latency(weights: dict[str, str], device: str, imgsz: int, warmup: int = 10, reps: int = 50) -> dict:
    """Batch-1 latency of fused models, measured side by side: same process, same input, interleaved rounds.

    Args:
        weights (dict[str, str]): label -> checkpoint path.
        device (str): ``cpu``, ``0``, ``cuda:1``, ...
        imgsz (int): square input size.
        warmup (int): untimed forwards per model first.
        reps (int): timed rounds; each round runs every model once, in turn.

    Returns:
        (dict): label -> median milliseconds.
    """
    import torch
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils.torch_utils import select_device

    from .activations.registry import fuse_activations

    dev = select_device(device, verbose=False)
    models = {}
    for label, path in weights.items():
        model, _ = load_checkpoint(path, device=dev)
        fuse_activations(model)
        models[label] = model.fuse(verbose=False).eval() if hasattr(model, "fuse") else model.eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, imgsz, imgsz, generator=gen).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():
            for _ in range(warmup):
                m(x)
        sync()
        for _ in range(reps):
            for label, m in models.items():
                t = time.perf_counter()
                m(x)
                sync()
                times[label].append((time.perf_counter() - t) * 1000)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


# --------------------------------------------------------------------------------------------------------- table
def table_rows(runs: list[Run], folder: SweepFolder, latency: dict | None = None) -> list[dict]:
    """One row per planned run (recorded or not), sorted by mAP50-95, with the delta against the silu baseline."""
    latency = (latency or {}).get("ms", {})
    rows = []
    for r in runs:
        rec = folder.record(r.label)
        if rec is None:
            status = "interrupted" if folder.run_dir(r.label).exists() else "pending"
            rec = {"status": status}
        m = rec.get("metrics") or {}
        rows.append({
            "act": r.label,
            "status": rec.get("status"),
            "mAP50-95": m.get("mAP50-95") if rec.get("status") == "finished" else None,
            "mAP50": m.get("mAP50") if rec.get("status") == "finished" else None,
            "delta_vs_silu": None,
            "params": rec.get("params"),
            "GFLOPs": rec.get("GFLOPs"),
            "latency_ms": latency.get(r.label) if rec.get("status") == "finished" else None,
            "epoch_time_s": rec.get("epoch_time_s"),
            "peak_mem_mb": rec.get("peak_mem_mb"),
            "error": rec.get("error") or "",
            "_baseline": r.baseline,
        })
    base = next((row for row in rows if row["_baseline"] and _finite(row["mAP50-95"])), None)
    for row in rows:
        if base is not None and _finite(row["mAP50-95"]):
            row["delta_vs_silu"] = row["mAP50-95"] - base["mAP50-95"]
    if base is not None:
        base["delta_vs_silu"] = "baseline"
    order = {"finished": 0, "failed": 1}
    rows.sort(key=lambda row: (order.get(row["status"], 2), -(row["mAP50-95"] if _finite(row["mAP50-95"]) else -1)))
    for row in rows:
        row.pop("_baseline")
    return rows


def _fmt(key: str, v) -> str:
    if v is None or v == "":
        return ""
    if key in ("mAP50-95", "mAP50"):
        return f"{v:.4f}"
    if key == "delta_vs_silu":
        return "baseline" if v == "baseline" else f"{v:+.4f}"
    if key == "params":
        return f"{int(v):,}"
    if key == "GFLOPs":
        return f"{v:.3g}"
    if key == "latency_ms":
        return f"{v:.2f}"
    if key == "epoch_time_s":
        return f"{v:.1f}"
    if key == "peak_mem_mb":
        return f"{v:.0f}"
    return str(v).replace("|", "/")


def _csv_value(v):
    if v is None:
        return ""
    if v == "baseline":
        return 0.0
    return f"{v:.6g}" if isinstance(v, float) else v


def write_tables(rows: list[dict], folder: SweepFolder, settings: dict, latency: dict | None) -> str:
    """Write ``results.csv`` and ``results.md`` atomically; return the Markdown text."""
    imgsz = settings.get("img_size")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([k for k, _ in TABLE_COLUMNS])
    for row in rows:
        w.writerow([_csv_value(row[k]) for k, _ in TABLE_COLUMNS])
    atomic_write_text(folder.root / "results.csv", out.getvalue())
    heads = [h.format(imgsz=imgsz) for _, h in TABLE_COLUMNS]
    cells = [[_fmt(k, row[k]) for k, _ in TABLE_COLUMNS] for row in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    right = {2, 3, 4, 5, 6, 7, 8, 9}
    def line(vals):
        return "| " + " | ".join(v.rjust(widths[i]) if i in right else v.ljust(widths[i])
                                 for i, v in enumerate(vals)) + " |"
    sep = "|" + "|".join(("-" * (widths[i] + 1) + ":") if i in right else ("-" * (widths[i] + 2))
                         for i in range(len(heads))) + "|"
    data = settings.get("data") or "built-in demo"
    note = (f"cfg {settings.get('cfg') or '(train default)'}, data {data}, {settings.get('epochs')} epochs, "
            f"batch {settings.get('batch_size')}, imgsz {imgsz}, seed {settings.get('seed')}")
    if latency:
        note += f"; latency: batch 1, fused, median of {latency.get('reps')} on {latency.get('device_name')}"
    text = "\n".join([f"Sweep: {note}", "", line(heads), sep, *(line(c) for c in cells)]) + "\n"
    atomic_write_text(folder.root / "results.md", text)
    return text


# ---------------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The ``yolo-act-swap sweep`` argument parser."""
    p = argparse.ArgumentParser(
        prog="yolo-act-swap sweep",
        description="Train one model per activation with identical data, seed, schedule and image size, then compare "
        "them in a table (CSV/Markdown) and plots. Extra key=value arguments go to every training run.",
    )
    p.add_argument("--cfg", default=None, help="model YAML (demo: yolov8n.yaml, else the train command's default)")
    p.add_argument("--acts", nargs="+", default=None,
                   help=f"comma list of activation names, inline specs (leaky_relu:negative_slope=0.1), spec files or "
                        f"folders of spec YAMLs (default: {DEFAULT_ACTS})")
    p.add_argument("--data", default=None, help="dataset YAML or COCO JSON (default: the built-in synthetic demo)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (demo 6, else 100)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size per run (demo 8, else 16)")
    p.add_argument("--img-size", type=int, default=None, help="train/val image size (demo 128, else 640)")
    p.add_argument("--device", default=None, help="cpu, 0, or 0,1,2,3 for one run per device in parallel")
    p.add_argument("--workers", type=int, default=None, help="dataloader workers per run")
    p.add_argument("--project", default="runs/sweep", help="parent folder of sweeps (runs/sweep)")
    p.add_argument("--name", default="sweep", help="sweep folder name (sweep)")
    p.add_argument("--seed", type=int, default=None, help="training seed of every run (0)")
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="continue the sweep at --project/--name (or at the given folder) with its planned settings")
    p.add_argument("--retry-failed", action="store_true", help="train failed runs again instead of keeping their rows")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local subprocesses, or Ray tasks of one GPU (or CPU) each (pip install 'yolo-act-swap[ray]')")
    p.add_argument("--latency-reps", type=int, default=50, help="timed rounds of the latency measurement (50)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--verbose", "-v", action="store_true", help="tracebacks on errors, --verbose to every run")
    return p


def _split_overrides(rest: list[str]) -> list[str]:
    overrides = []
    for item in rest:
        key, sep, _ = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SweepError(f"unexpected argument {item!r}: sweep flags are listed by --help, ultralytics train "
                             f"settings go as key=value")
        if key in RESERVED_OVERRIDES:
            raise SweepError(f"{item!r}: the sweep sets {key!r} for every run; use its flag (see --help) instead")
        overrides.append(item)
    return overrides


def _devices(device: str | None) -> list[str]:
    """``0,1,2`` -> ['0', '1', '2']; None -> the first GPU if there is one, else cpu."""
    if device is None or str(device).strip() == "":
        import torch

        return ["0"] if torch.cuda.is_available() else ["cpu"]
    devs = [d.strip() for d in str(device).replace("cuda:", "").split(",") if d.strip()]
    return devs or ["cpu"]


def _is_gpu(device: str) -> bool:
    return device not in ("cpu", "mps")


def _sweep_root(args) -> Path:
    if isinstance(args.resume, str):
        p = Path(args.resume).expanduser()
        p = p.parent if p.name == "plan.json" else p
        if not (p / "plan.json").exists():
            raise SweepError(f"--resume {args.resume}: no plan.json there; pass a sweep folder, e.g. runs/sweep/sweep")
        return p.resolve()
    return (Path(args.project).expanduser() / args.name).resolve()


def settings_from_args(args, rest: list[str], planned: dict | None) -> dict:
    """The sweep settings: explicit flags, else the plan's (when resuming), else the defaults (demo or real data)."""
    if args.data is None:
        data = (planned or {}).get("data")
    else:
        data = None if str(args.data) in ("demo", "demo.yaml") else _abs_if_exists(args.data)
    defaults = DEMO_DEFAULTS if data is None else DATA_DEFAULTS
    base = planned if planned is not None else {**defaults, "seed": 0}

    def pick(key, value):
        return value if value is not None else base.get(key)

    if planned is not None and not rest:
        overrides = list(planned.get("overrides", []))
    else:
        overrides = (DEMO_RECIPE if data is None else []) + _split_overrides(rest)
    return {
        "cfg": _abs_if_exists(args.cfg) if args.cfg is not None else base.get("cfg"),
        "data": data,
        "epochs": pick("epochs", args.epochs),
        "batch_size": pick("batch_size", args.batch_size),
        "img_size": pick("img_size", args.img_size),
        "seed": pick("seed", args.seed),
        "overrides": overrides,
    }


class Sweep:
    """Runs the pending trainings of a planned sweep and keeps its table current.

    Args:
        folder (SweepFolder): the locked sweep folder.
        runs (list[Run]): every run of the plan.
        settings (dict): the planned settings.
        devices (list[str]): one entry per parallel slot.
        workers (int, optional): dataloader workers per run.
        verbose (bool): pass ``--verbose`` to training.
    """

    def __init__(self, folder, runs, settings, devices, workers=None, verbose=False, retry_failed=False):
        self.folder, self.runs, self.settings = folder, runs, settings
        self.devices, self.workers, self.verbose = devices, workers, verbose
        self.retry_failed = retry_failed
        self.procs: dict = {}
        self.stopping = threading.Event()  # set when the sweep itself is being stopped
        self.bar = None

    def pending(self) -> list[Run]:
        """Runs without a record (a failed record too, with ``--retry-failed``)."""
        todo = []
        for r in self.runs:
            rec = self.folder.record(r.label)
            if rec is None or (self.retry_failed and rec.get("status") == "failed"):
                todo.append(r)
        return todo

    def prepare(self, run: Run) -> tuple[str | None, dict | None]:
        """How to (re)start a run: ``(last.pt to resume from or None, an already finished result or None)``."""
        run_dir = self.folder.run_dir(run.label)
        rec = self.folder.record(run.label)
        if rec is not None and rec.get("status") == "failed":  # --retry-failed: start over
            shutil.rmtree(run_dir, ignore_errors=True)
            return None, None
        result = self.folder.read_json(run_dir / "act_swap_result.json")
        if result and result.get("status") == "finished":
            return None, result  # trained to the end; only the record was missing
        last = run_dir / "weights" / "last.pt"
        if last.exists() and checkpoint_complete(last):
            return str(last), None
        if last.exists():
            self.write(f"{run.label}: {last} was cut short (killed while saving); starting the run again")
        if run_dir.exists():
            shutil.rmtree(run_dir)  # no usable epoch saved: start over cleanly (no stale results.csv rows)
        return None, None

    def execute(self, run: Run, device: str, echo=None, runner=None) -> dict:
        """Train (or resume, or just collect) one run and return its outcome for ``harvest``."""
        resume, finished = self.prepare(run)
        if finished is not None:
            return {"returncode": 0, "max_rss_mb": None, "tail": []}
        log = self.folder.log_path(run.label)
        runner = runner or (lambda cmd: run_command(cmd, log, env=_child_env(), echo=echo, procs=self.procs))
        outcome = runner(train_command(run, self.settings, self.folder, device, self.workers, resume, self.verbose))
        text = "\n".join(outcome.get("tail") or [])
        if resume and outcome.get("returncode") and "nothing to resume" in text:
            # killed between the final save and the result file: the run is complete but its result is not; train
            # it again from scratch rather than record a failure
            shutil.rmtree(self.folder.run_dir(run.label), ignore_errors=True)
            outcome = runner(train_command(run, self.settings, self.folder, device, self.workers, None, self.verbose))
        return outcome

    def record(self, run: Run, outcome: dict, device: str) -> dict | None:
        """Harvest and write a run's record atomically, then regenerate the tables.

        A run stopped by SIGINT/SIGTERM/SIGHUP (Ctrl-C, a scheduler's preemption, the sweep stopping) gets no record:
        it stays resumable and the next start of the sweep continues it from its ``last.pt``.
        """
        if self.stopping.is_set() or interrupted(outcome):
            self.write(f"{run.label}: interrupted; run the sweep again to resume it")
            return None
        rec = harvest(run, self.folder, outcome, self.settings["img_size"], _is_gpu(device))
        rec["device"] = device
        rec["runner"] = outcome.get("runner") or {"backend": "local", "pid": os.getpid()}
        self.folder.write_json(self.folder.record_path(run.label), rec)
        with self.folder._table_lock:
            write_tables(table_rows(self.runs, self.folder), self.folder, self.settings, None)
        m = rec["metrics"].get("mAP50-95")
        done = sum(self.folder.record(r.label) is not None for r in self.runs)
        msg = (f"finished, mAP50-95 {m:.4f}" if _finite(m) else "finished") if rec["status"] == "finished" \
            else f"FAILED ({rec['error']})"
        self.write(f"[{done}/{len(self.runs)}] {run.label}: {msg}")
        return rec

    def write(self, msg: str) -> None:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stdout)
        sys.stdout.flush()

    def stop_children(self) -> None:
        """Terminate every running training (their resumable state stays on disk)."""
        self.stopping.set()
        for proc in list(self.procs.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in list(self.procs.values()):
            with contextlib.suppress(Exception):
                proc.wait(timeout=30)

    def _bar(self, done: int, desc: str):
        """The progress bar over runs, on stderr (run output goes to stdout beneath it); off when not a terminal."""
        from tqdm import tqdm

        return tqdm(total=len(self.runs), initial=done, desc=desc, unit="run", dynamic_ncols=True,
                    disable=not sys.stderr.isatty())

    def run_local(self, todo: list[Run]) -> None:
        """One run per device at a time; with several devices, parallel worker threads pull runs from a queue."""
        self.bar = self._bar(len(self.runs) - len(todo), "sweep")
        try:
            if len(self.devices) == 1:
                for run in todo:
                    self.bar.set_description(f"sweep [{run.label}]")
                    outcome = self.execute(run, self.devices[0], echo=self.write)
                    if self.record(run, outcome, self.devices[0]) is not None:
                        self.bar.update(1)
                return
            jobs: queue.Queue = queue.Queue()
            for run in todo:
                jobs.put(run)
            errors: list[BaseException] = []

            def worker(device):
                while not errors:
                    try:
                        run = jobs.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        self.write(f"{run.label}: started on device {device}, log {self.folder.log_path(run.label)}")
                        outcome = self.execute(run, device, echo=lambda s, lb=run.label: self.write(f"[{lb}] {s}"))
                        if self.record(run, outcome, device) is not None:
                            self.bar.update(1)
                    except BaseException as e:  # noqa: BLE001 - handed to the main thread
                        errors.append(e)
                        return

            threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in self.devices]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
            if errors:
                raise errors[0]
        except BaseException:
            self.stop_children()
            raise
        finally:
            self.bar.close()

    def run_ray(self, todo: list[Run]) -> None:
        """Each run is a Ray task asking for one GPU (or one CPU) that runs the same subprocess command."""
        try:
            import ray
        except ImportError:
            raise SweepError("--backend ray needs Ray: pip install 'yolo-act-swap[ray]'") from None
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)  # RAY_ADDRESS=... joins an existing cluster
        gpu = _is_gpu(self.devices[0])
        task = ray.remote(_ray_task)
        refs = {}
        for run in todo:
            resume, finished = self.prepare(run)
            if finished is not None:
                self.record(run, {"returncode": 0, "max_rss_mb": None, "tail": []}, self.devices[0])
                continue
            cmd = train_command(run, self.settings, self.folder, "0" if gpu else "cpu", self.workers, resume,
                                self.verbose)
            opts = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
            ref = task.options(**opts, name=f"yas-sweep-{run.label}").remote(
                cmd, str(self.folder.log_path(run.label)), _child_env())
            refs[ref] = run
            self.write(f"{run.label}: submitted to Ray, log {self.folder.log_path(run.label)}")
        self.bar = self._bar(len(self.runs) - len(refs), "sweep (ray)")
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                run = refs.pop(done[0])
                try:
                    outcome = ray.get(done[0])
                except Exception as e:  # noqa: BLE001 - a lost worker or node fails this run, not the sweep
                    outcome = {"returncode": None, "tail": [], "error": f"Ray task failed: {type(e).__name__}: {e}"}
                if self.record(run, outcome, "ray-gpu" if gpu else "cpu") is not None:
                    self.bar.update(1)
        except BaseException:
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        finally:
            self.bar.close()

    def latency(self, reps: int) -> dict | None:
        """Measure (or reuse) the side-by-side latency of every finished run; stored in ``latency.json``."""
        path = self.folder.root / "latency.json"
        weights = {}
        for r in self.runs:
            rec = self.folder.record(r.label)
            if rec and rec.get("status") == "finished" and rec.get("best") and Path(rec["best"]).exists():
                weights[r.label] = rec["best"]
        if not weights:
            return None
        device = self.devices[0]
        old = self.folder.read_json(path)
        same = {"device": device, "imgsz": self.settings["img_size"], "reps": reps}
        if old and sorted(old.get("ms", {})) == sorted(weights) and all(old.get(k) == v for k, v in same.items()):
            return old  # same runs, same device: keep the measurement (a re-run prints the same table)
        import torch

        if _is_gpu(device) and not torch.cuda.is_available():
            self.write("latency: no GPU in this process, measuring on cpu")
            device = "cpu"
        self.write(f"latency: {len(weights)} fused models, batch 1, imgsz {self.settings['img_size']}, {device}, "
                   f"{reps} interleaved rounds")
        ms = measure_latency(weights, device, self.settings["img_size"], reps=reps)
        name = torch.cuda.get_device_name(int(device)) if _is_gpu(device) and device.isdigit() else _cpu_name()
        lat = {"device": device, "device_name": name, "imgsz": self.settings["img_size"], "reps": reps,
               "torch": torch.__version__, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "ms": ms}
        self.folder.write_json(path, lat)
        return lat


def _cpu_name() -> str:
    import platform

    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU {line.split(':', 1)[1].strip()} ({os.cpu_count()} threads)"
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} threads)"


def main(argv: list[str] | None = None) -> int:
    """``yolo-act-swap sweep``: plan, run (or resume) and compare.

    Returns:
        (int): 0 once every run is recorded (finished or failed), 1 when some were interrupted (re-run to resume).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = build_parser().parse_known_args(argv)
    root = _sweep_root(args)
    folder = SweepFolder(root)
    plan = folder.read_json(folder.plan_path) if args.resume and folder.plan_path.exists() else None
    if args.resume and plan is None:
        raise SweepError(f"--resume: no sweep to resume at {root} (no plan.json); start it without --resume")
    settings = settings_from_args(args, rest, (plan or {}).get("settings"))
    if args.acts is None and plan is not None:
        runs = [Run(**r) for r in plan.get("runs", [])]
    else:
        runs = resolve_acts(args.acts or [DEFAULT_ACTS])
    folder.lock()
    runs = folder.plan(settings, runs, argv)
    devices = _devices(args.device)
    sweep = Sweep(folder, runs, settings, devices, args.workers, args.verbose, args.retry_failed)
    todo = sweep.pending()
    print(f"sweep {root}: {len(runs)} runs, {len(runs) - len(todo)} already recorded, "
          f"{len(todo)} to train on {','.join(devices)} ({args.backend})", flush=True)
    if todo:
        (sweep.run_ray if args.backend == "ray" else sweep.run_local)(todo)
    latency = sweep.latency(args.latency_reps)
    rows = table_rows(runs, folder, latency)
    text = write_tables(rows, folder, settings, latency)
    if not args.no_plots:
        from .plots import plot_sweep

        plot_sweep(folder.root, rows, {r.label: folder.run_dir(r.label) / "results.csv" for r in runs},
                   baseline=next((r.label for r in runs if r.baseline), None))
    print(text, end="", flush=True)
    print(f"results: {folder.root / 'results.md'} (+ results.csv, plots)", flush=True)
    open_runs = [row["act"] for row in rows if row["status"] not in ("finished", "failed")]
    if open_runs:
        print(f"{len(open_runs)} run(s) interrupted ({', '.join(open_runs)}): run the same command again, or "
              f"'yolo-act-swap sweep --resume {folder.root}', to finish them", file=sys.stderr, flush=True)
        return 1
    return 0  # failed runs are results too: their rows say why


if __name__ == "__main__":
    from .cli import run_guarded

    sys.exit(run_guarded(main, sys.argv[1:]))
