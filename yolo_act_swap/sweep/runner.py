"""How one run executes: its ``python -m yolo_act_swap train`` command, the subprocess that runs it (output teed to
its log, peak memory measured, killed with the sweep), and the same subprocess as a Ray task."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from .plan import TRAIN_MODULE, SweepFolder, SweepRun

ENV_PREFIXES = ("YOLO_", "YAS_", "ULTRALYTICS_", "OMP_", "MKL_", "MPLBACKEND", "CUBLAS_")
TAIL_LINES = 200
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LIBC = None


def is_gpu(device: str) -> bool:
    """True for a CUDA device (``0``, ``cuda:1``), False for ``cpu`` and ``mps``."""
    return device not in ("cpu", "mps")


def resolve_devices(device: str | None) -> list[str]:
    """``0,1,2`` -> ['0', '1', '2']; None -> the first GPU if there is one, else cpu."""
    if device is None or str(device).strip() == "":
        import torch

        return ["0"] if torch.cuda.is_available() else ["cpu"]
    devs = [d.strip() for d in str(device).replace("cuda:", "").split(",") if d.strip()]
    return devs or ["cpu"]


def train_command(run: SweepRun, settings: dict, folder: SweepFolder, device: str | None, workers: int | None,
                  resume: str | None = None, verbose: bool = False) -> list[str]:
    """The ``python -m yolo_act_swap train`` argument list for one run (``python`` is argv[0], replaced by the runner).

    Args:
        run (SweepRun): the run.
        settings (dict): the sweep settings (cfg, data, epochs, batch_size, img_size, seed, overrides).
        folder (SweepFolder): where the run folder lives.
        device (str, optional): one device for this run (``cpu``, ``0``, ...).
        workers (int, optional): dataloader workers.
        resume (str, optional): a ``last.pt`` to resume from.
        verbose (bool): pass ``--verbose`` to training.
    """
    cmd = ["python", "-m", TRAIN_MODULE, "train"]
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


def child_env() -> dict:
    """The environment entries a run needs wherever it executes (a Ray worker merges them into its own)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ------------------------------------------------------------------------------------------------- subprocess
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


def _tee(proc: subprocess.Popen, log, tail: deque, echo) -> None:
    """Copy the process's output to ``log`` as it comes; keep its last clean lines in ``tail``, echo each line."""
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


def _reap(proc: subprocess.Popen) -> float | None:
    """Wait for the process; return its peak resident memory in MB where the OS reports it."""
    if not hasattr(os, "wait4"):  # pragma: no cover - Windows
        proc.wait()
        return None
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _stop(proc: subprocess.Popen) -> None:
    """Terminate a process that is still running (interrupted while reading its output) and wait for it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with contextlib.suppress(Exception):
            proc.wait(timeout=30)


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
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    tail: deque = deque(maxlen=TAIL_LINES)
    linux = sys.platform.startswith("linux")
    if linux:
        with contextlib.suppress(OSError):
            _libc()
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()  # on disk before the run starts, even if this process is killed a moment later
        started = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, preexec_fn=_die_with_parent if linux else None)
        if procs is not None:
            procs[proc.pid] = proc
        try:
            _tee(proc, log, tail, echo)
            rss = _reap(proc)
        finally:
            _stop(proc)
            if procs is not None:
                procs.pop(proc.pid, None)
            proc.stdout.close()
    return {"returncode": proc.returncode, "max_rss_mb": rss, "tail": list(tail), "started": started,
            "ended": time.time()}


def ray_task(cmd: list[str], log_path: str, env: dict) -> dict:
    """A Ray task: the same subprocess as a local run (``python`` is the Ray worker's interpreter)."""
    import ray

    out = run_command(cmd, log_path, env=env)
    out["runner"] = {"backend": "ray", "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    return out
