"""What a finished (or failed) run leaves behind, turned into its record: status, the telling error line, NaN checks,
metrics, model size and cost, peak memory; and the side-by-side latency of the finished models."""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import time
from pathlib import Path

from ..io import read_results_csv
from ..tables import is_finite
from .plan import SweepFolder, SweepRun


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
    bad = [k for k in ("mAP50", "mAP50-95") if not is_finite(metrics.get(k))]  # train writes a NaN as null
    return f"NaN or missing final metrics ({', '.join(bad)})" if bad else None


def model_stats(weights: str | os.PathLike, imgsz: int) -> dict:
    """Parameter count and GFLOPs at ``imgsz`` of a checkpoint's (unfused) model, computed with ultralytics (the
    checkpoint is loaded without running code, ``safe_load``)."""
    from ultralytics.utils.torch_utils import get_flops

    from ..models import load_model

    model = load_model(weights=weights)
    params = sum(p.numel() for p in model.parameters())
    return {"params": int(params), "GFLOPs": round(float(get_flops(model, imgsz)), 3)}


def run_error(outcome: dict, result: dict | None, epochs: list[dict], run_dir: Path) -> str | None:
    """Why a run failed, in one line (Ray failure, signal, exit code, no result, NaN); None when it finished."""
    rc = outcome.get("returncode")
    tail = outcome.get("tail") or []
    if outcome.get("error"):
        return outcome["error"]
    if rc is not None and rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        return f"killed by {name}" + (" (out of memory?)" if -rc == signal.SIGKILL else "")
    if rc:
        return f"exit {rc}: {error_line(tail)}"
    if not result or result.get("status") != "finished":
        return f"no finished act_swap_result.json in {run_dir}: {error_line(tail)}"
    return nan_problem(result, epochs)


def harvest(run: SweepRun, folder: SweepFolder, outcome: dict, imgsz: int, gpu: bool) -> dict:
    """Build a run's result record from its exit status, output, ``act_swap_result.json`` and ``results.csv``."""
    run_dir = folder.run_dir(run.run_id)
    result = folder.read_json(run_dir / "act_swap_result.json") or {}
    epochs = read_results_csv(run_dir / "results.csv")
    error = run_error(outcome, result or None, epochs, run_dir)
    rss = outcome.get("max_rss_mb")
    peak, source = (result.get("peak_mem_mb"), "result json") if gpu or rss is None else (rss, "max RSS")
    record = {
        "label": run.label,
        "run_id": run.run_id,
        "seed": run.seed,
        "act": run.act,
        "spec": run.spec,
        "status": "failed" if error else "finished",
        "error": error,
        "returncode": outcome.get("returncode"),
        "run_dir": str(run_dir),
        "best": result.get("best"),
        "last": result.get("last"),
        "metrics": result.get("metrics") or {},
        "epochs_done": len(epochs),
        "epoch_time_s": result.get("epoch_time_s"),
        "train_time_s": result.get("train_time_s"),
        "peak_mem_mb": peak,
        "peak_mem_source": source,
        "params": None,
        "GFLOPs": None,
        "started_at": outcome.get("started"),
        "ended_at": outcome.get("ended"),
        "recorded_at": time.time(),
    }
    if record["best"] and Path(record["best"]).exists():
        try:
            record.update(model_stats(record["best"], imgsz))
        except Exception as e:  # noqa: BLE001 - a stats failure must not lose the run's row
            record["stats_error"] = f"{type(e).__name__}: {e}"
    return record


# ------------------------------------------------------------------------------------------------------- latency
def _load_fused(weights: dict[str, str], dev) -> dict:
    """label -> the checkpoint's model, activations and conv+BN fused, in eval mode, on ``dev``."""
    from ..activations.registry import fuse_activations
    from ..models import load_model

    models = {}
    for label, path in weights.items():
        model = load_model(weights=path).to(dev)
        fuse_activations(model)
        models[label] = model.fuse(verbose=False).eval() if hasattr(model, "fuse") else model.eval()
    return models


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
    from ultralytics.utils.torch_utils import select_device

    dev = select_device(device, verbose=False)
    models = _load_fused(weights, dev)
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


def cpu_name() -> str:
    """``CPU <model name> (<n> threads)`` for the latency note."""
    import platform

    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU {line.split(':', 1)[1].strip()} ({os.cpu_count()} threads)"
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} threads)"
