"""What every benchmark in this folder shares: controlled settings, interleaved timing, runs with their spread, and
CPU burners for a measurement under contention.

- **Allocator.** glibc's default malloc thresholds hand large tensors back to the OS and page-fault them in again on
  the next allocation (a fresh depthwise conv: 17-19 ms instead of 2.2-2.6 ms), so single rounds swing 2x.
  ``ensure_allocator()`` re-executes the script once with ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``
  raised (unless they are set already, or ``--no-reexec``), and ``settings_line()`` reports what was in effect.
- **Threads.** ``pin_threads(n)`` fixes torch's intra-op threads (and one inter-op thread); ``--pin`` also binds the
  process to the first n CPUs.
- **Timing.** ``interleave(cases, ...)`` runs every case once per repetition, in turn, after warm-up, so that a change
  of load hits all of them alike; it repeats that for several runs and keeps each run's median per case. With
  ``min_time`` (``--min-time S``), a case shorter than S runs several calls back to back in each repetition. Ratios are
  taken within a run (``ratio_runs``), and ``spread()`` prints the median of the runs with their range.
- **Contention.** ``Burners(n)`` starts n processes that spin on a CPU each, beside the measurement (what dataloader
  workers or other jobs do to a training process).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from typing import Callable

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
_REEXEC_MARK = "_YAS_BENCH_REEXEC"


def ensure_allocator(argv: list[str] | None = None) -> None:
    """Re-execute this process once with glibc's malloc thresholds raised (see the module docstring).

    Does nothing when both variables are set already, on non-Linux systems, when ``--no-reexec`` is in ``argv``, or
    after the one re-execution. Call it before importing torch: an OpenMP runtime that started in this process would
    see its own registration (same pid) after the exec and run single-threaded.
    """
    argv = sys.argv[1:] if argv is None else argv
    if "--no-reexec" in argv or os.environ.get(_REEXEC_MARK) or not sys.platform.startswith("linux"):
        return
    if all(k in os.environ for k in MALLOC_ENV):
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("__KMP_REGISTERED_LIB")}  # same pid after exec
    env.update({k: os.environ.get(k, v) for k, v in MALLOC_ENV.items()}, **{_REEXEC_MARK: "1"})
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]] if hasattr(sys, "orig_argv") else
              [sys.executable, *sys.argv], env)


def add_arguments(p, stat: bool = False) -> None:
    """The harness's command-line flags: --runs, --threads, --pin, --contention, --clock, --min-time, --no-reexec (and, for a
    benchmark that passes it on to ``interleave``, ``stat=True``: --stat)."""
    p.add_argument("--runs", type=int, default=3, help="independent runs (each: warm-up + interleaved repetitions); "
                   "tables show the median of the runs' medians and their range")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--pin", action="store_true", help="also bind the process to the first --threads CPUs")
    p.add_argument("--contention", type=int, default=0, metavar="N",
                   help="run N CPU-burner processes beside the measurement")
    p.add_argument("--clock", default="wall", choices=["auto", "wall", "cpu"],
                   help="wall: elapsed time; cpu: process CPU time (steadier on a shared machine, but meaningful only "
                   "with one thread); auto: cpu with one torch thread, else wall")
    if stat:
        p.add_argument("--stat", default="median", choices=["median", "min"],
                       help="per run and candidate, the median of the repetitions, or their minimum (other processes' "
                       "time slices only ever add time: min is the least disturbed repetition, for wall clock on a busy "
                       "machine)")
    p.add_argument("--min-time", type=float, default=0.0, metavar="S",
                   help="a case faster than S seconds runs back to back until one repetition lasts about S (time per "
                   "call reported; default 0: one call per repetition). Steadier ratios for short calls, but the calls "
                   "after the first find their data in cache: x.clone() then measures cache, not memory, bandwidth")
    p.add_argument("--no-reexec", action="store_true",
                   help="keep the allocator settings as they are (no re-execution with raised malloc thresholds)")


def pin_threads(threads: int | None, pin: bool = False) -> int:
    """Fix torch's intra-op threads (one inter-op thread); with ``pin`` bind the process to that many CPUs."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already started
            pass
    n = torch.get_num_threads()
    if pin and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:n]
        os.sched_setaffinity(0, cpus)
    return n


def clock_name(clock: str) -> str:
    """The clock ``interleave`` uses for ``clock`` (``auto``: CPU time with one torch thread, else wall time)."""
    if clock != "auto":
        return clock
    import torch

    return "cpu" if torch.get_num_threads() == 1 else "wall"


def _burn(parent: int) -> None:  # pragma: no cover - runs in a child process
    """Spin until the benchmark that started us is gone: daemon children are not stopped when their parent is
    killed (SIGKILL, a timeout), and orphaned burners would load the machine for every later measurement."""
    x = 0
    while os.getppid() == parent:
        for i in range(100_000):
            x += i


class Burners:
    """``with Burners(n):`` n processes that each keep a CPU busy (pure Python loops), stopped on exit."""

    def __init__(self, n: int):
        self.n, self.procs = int(n), []

    def __enter__(self) -> "Burners":
        ctx = mp.get_context("spawn")
        self.procs = [ctx.Process(target=_burn, args=(os.getpid(),), daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        if self.procs:
            time.sleep(0.5)  # let them get going
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(5)
        self.procs = []


def load() -> str:
    """The 1/5/15-minute load averages, e.g. ``3.1/2.8/2.0``."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def settings_line(threads: int, contention: int = 0) -> str:
    """One line: CPU, torch, threads, allocator settings, burners, load averages (say what the numbers ran under)."""
    import torch

    malloc = ", ".join(f"{k}={os.environ[k]}" for k in MALLOC_ENV if k in os.environ) or "glibc malloc defaults"
    aff = f", affinity {sorted(os.sched_getaffinity(0))}" if hasattr(os, "sched_getaffinity") else ""
    return (f"{cpu_name()}, {os.cpu_count()} logical CPUs{aff}, torch {torch.__version__}, {threads} threads, "
            f"{malloc}, {contention} burner processes, load average {load()}")


def interleave(cases: dict[str, Callable[[], None]], reps: int, warmup: int, runs: int = 3, clock: str = "wall",
               sync: Callable[[], None] | None = None, stat: str = "median",
               min_time: float = 0.0) -> dict[str, list[float]]:
    """Per case, the median (or ``stat="min"``: the least) seconds per call of each run: ``runs`` x (warm-up, then
    ``reps`` interleaved repetitions).

    Every repetition runs every case in turn, so that a change of load hits them alike. A case whose call takes less
    than ``min_time`` seconds runs ``loops`` calls back to back in each repetition (``loops`` fixed once, from the
    first run's last warm-up call, and the same in every run): a 0.4 ms call timed alone swings with the clock's and
    the scheduler's granularity and with whichever case ran before it, and then ratios between cases do too. Each
    repetition's first call still follows the other cases, as in a network; the loops after it see the same cache.
    """
    tick = time.process_time if clock_name(clock) == "cpu" else time.perf_counter
    sync = sync or (lambda: None)
    out: dict[str, list[float]] = {k: [] for k in cases}
    loops: dict[str, int] = {}
    for _ in range(runs):
        for k, fn in cases.items():
            for _ in range(warmup):
                sync()
                t = tick()
                fn()
                sync()
            if k not in loops:
                loops[k] = calls_for(min_time, tick() - t) if warmup else 1
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(reps):
            for k, fn in cases.items():
                n = loops[k]
                sync()
                t = tick()
                for _ in range(n):
                    fn()
                sync()
                times[k].append((tick() - t) / n)
        for k, v in times.items():
            out[k].append(min(v) if stat == "min" else statistics.median(v))
    return out


def calls_for(min_time: float, seconds: float, limit: int = 1000) -> int:
    """How many back-to-back calls of ``seconds`` each fill ``min_time`` (at least 1, at most ``limit``)."""
    if min_time <= 0 or seconds >= min_time:
        return 1
    return min(limit, math.ceil(min_time / max(seconds, 1e-9)))


def ratio_runs(runs: dict[str, list[float]], num: str, den: str) -> list[float]:
    """``num / den`` within each run (both measured side by side)."""
    return [a / b for a, b in zip(runs[num], runs[den])]


def spread(values: list[float], fmt: str = ".2f") -> str:
    """``median [min-max]`` of a few runs (one value: just it)."""
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def worst_spread(columns: list[list[float]]) -> str:
    """``+-X %``: the widest run-to-run spread (``rel_range``) over several ratio columns (each: one value per run)."""
    worst = max((rel_range(v) for v in columns if v), default=0.0)
    return f"+-{100 * worst:.0f} %"


def rel_range(values: list[float]) -> float:
    """Half the range of the runs relative to their median (0.05: the runs agree within +-5 %)."""
    if len(values) < 2:
        return 0.0
    med = statistics.median(values)
    return (max(values) - min(values)) / 2 / med if med else 0.0
