"""The worker pool of the channel-aware activations' block-wise kernels (``functional.run_blocks`` re-exports it).

``run_blocks`` shares a pass's blocks out to single-threaded worker threads (and the calling thread), with one join
per pass, or runs them one after the other on one thread when the pass is too small for the pool to pay; ``Blocks``
is the list of blocks that carries the pass's size; ``one_thread`` runs small tensors' ops without OpenMP regions;
``pool_workers`` says when the pool is used.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = [
    "POOL_MIN_ELEMENTS",
    "Blocks",
    "one_thread",
    "one_thread_graph",
    "one_thread_if_small",
    "pool_workers",
    "run_blocks",
    "small_pass",
]


# Why a worker pool: run block by block with torch's own intra-op threads, every elementwise op of every block is a
# parallel region that waits for its slowest thread. On a loaded machine (dataloader workers, other jobs) one thread of
# the team is often descheduled, and each of the hundreds of small regions then costs a scheduler time slice: DY-ReLU-B
# went from 0.15x to 3x the reference. Here each block runs single-threaded on one of ``torch.get_num_threads()``
# worker threads that take blocks from a shared queue, so a busy core simply does fewer blocks: the whole pass has one
# join instead of one per op. torch's ops release the GIL, so the workers run in parallel.
#
# Why not always: a worker takes the GIL for the Python between two ops of its block, so every op boundary is a GIL
# hand-over between the threads (CPython makes the releasing thread wait until the other one has taken it). With
# blocks of a small pass, that costs as much as the work, and beside other processes (a waiting thread descheduled)
# far more: at [8, 256, 20, 20] (819,200 elements), 2 threads, DY-ReLU-B's eval took 2.7 ms on the pool against 1.4 ms
# on one thread, and 8.2 ms against 1.6 ms beside two CPU burners; its training step 7.7 against 4.6 ms, and 18.9
# against 8.9 ms. A pass under ``POOL_MIN_ELEMENTS`` therefore runs its blocks in order on the calling thread alone,
# and the ACON and DY-ReLU modules run the whole forward and backward of such a tensor on one thread
# (``one_thread_if_small``): mixing single-threaded passes with OpenMP regions between them was worse beside burners
# than either (Meta-ACON-C's training step 24 ms against 16 ms on the pool and 9.7 ms all on one thread).
POOL_MIN_ELEMENTS = 1 << 21  # elements of a pass (8 MiB of float32) below which the pool does not pay
_POOL_LOCK = threading.Lock()
_POOL: dict = {}  # (pid, workers) -> executor; rebuilt after a fork (the child has none of the parent's threads)
_IN_WORKER = threading.local()
_REDUCED = threading.local()  # depth of one_thread contexts that lowered this thread's count
_PER_THREAD_SETTINGS = "OpenMP" in torch.__config__.parallel_info()  # set_num_threads(1) then binds one thread only


def _after_fork_in_child() -> None:  # the child has none of the parent's pool threads, and maybe a held lock
    global _POOL_LOCK
    _POOL_LOCK = threading.Lock()
    _POOL.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _worker_init() -> None:
    torch.get_num_threads()  # torch's lazy per-thread init first (it would later reset the count to the default)
    torch.set_num_threads(1)
    _IN_WORKER.active = True


def _pool(workers: int) -> ThreadPoolExecutor:
    key = (os.getpid(), workers)
    with _POOL_LOCK:
        if key not in _POOL:
            threads = torch.get_num_threads()
            pool = ThreadPoolExecutor(workers, thread_name_prefix="yas-act", initializer=_worker_init)
            # start every worker now, then restore this thread's count: torch.set_num_threads also stores the
            # process-wide default that threads created later start with, and a worker's 1 must not become it
            barrier = threading.Barrier(workers)
            for f in [pool.submit(barrier.wait) for _ in range(workers)]:
                f.result()
            torch.set_num_threads(threads)
            _POOL[key] = pool
        return _POOL[key]


def small_pass(device: torch.device, elements: int | None) -> bool:
    """Whether a pass of ``elements`` elements on ``device`` is too small for the pool: it then runs on one thread."""
    return device.type == "cpu" and elements is not None and elements < POOL_MIN_ELEMENTS


class Blocks(list):
    """A pass's blocks (what ``functional.chunk_slices`` returns), with ``elements``, the size of the whole pass."""

    def __init__(self, blocks=(), elements: int | None = None):
        super().__init__(blocks)
        self.elements = elements


def _threads_can_spread() -> bool:
    """Whether threads this thread starts may run on more than one CPU.

    With ``OMP_PROC_BIND`` set (``close``, ``spread``, ``true``: common on HPC nodes), the OpenMP runtime binds the
    calling thread to its first place, one core, and every thread started after that inherits the mask: the pool's
    workers would all share that core and a pass would run serially. Without the pool, torch's own (bound) OpenMP
    threads do the work. Also false for a process pinned to one CPU, where the pool cannot help either.
    """
    try:
        return len(os.sched_getaffinity(0)) > 1
    except (AttributeError, OSError):  # no affinity API (macOS, Windows): nothing narrows new threads there
        return True


def pool_workers(device: torch.device, blocks: int, elements: int | None = None) -> int:
    """How many pool workers ``run_blocks`` uses for ``blocks`` blocks of a pass of ``elements`` elements on ``device``
    (0: run them in this thread; below ``POOL_MIN_ELEMENTS`` elements, on one thread)."""
    if device.type != "cpu" or blocks < 2 or not _PER_THREAD_SETTINGS or getattr(_IN_WORKER, "active", False):
        return 0
    if small_pass(device, elements) or not _threads_can_spread():
        return 0
    workers = min(torch.get_num_threads(), blocks)
    return workers if workers > 1 else 0


@contextlib.contextmanager
def one_thread(device: torch.device | None = None):
    """Run the block's ops on this thread alone, then restore the thread count: for small tensors, where an OpenMP
    region costs more than the work whenever another process holds a core.

    With ``device``: only where the pool would be used (CPU, more than one thread). Without: whenever torch has more
    than one thread (verification's tiny real forwards: yolov7 + frelu took 20.6 s at 2 threads beside other jobs,
    2.6 s on one).
    """
    threads = torch.get_num_threads()
    if (not pool_workers(device, 2)) if device is not None else threads == 1:
        yield
        return
    torch.set_num_threads(1)
    _REDUCED.depth = getattr(_REDUCED, "depth", 0) + 1
    try:
        yield
    finally:
        _REDUCED.depth -= 1
        torch.set_num_threads(threads)


def one_thread_if_small(x: torch.Tensor):
    """``one_thread()`` for a CPU tensor of under ``POOL_MIN_ELEMENTS`` elements (its work too small for the pool and
    for OpenMP regions beside other processes), else a context that changes nothing."""
    return one_thread() if small_pass(x.device, x.numel()) else contextlib.nullcontext()


class _OneThreadGraph(torch.autograd.Function):
    """``fn(x)`` recorded as its own small graph on one thread, and its backward run on one thread as well."""

    @staticmethod
    def forward(ctx, fn, x, *params):
        leaf = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad(), one_thread():
            out = fn(leaf)
        ctx.inner = (leaf, out, params)
        return out.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        leaf, out, params = ctx.inner
        del ctx.inner
        need = ctx.needs_input_grad[1:]
        wanted = [t for t, n in zip((leaf, *params), need) if n]
        with one_thread():
            grads = iter(torch.autograd.grad(out, wanted, g, allow_unused=True) if wanted and out.requires_grad else ())
        return (None, *(next(grads, None) if n else None for n in need))


def one_thread_graph(fn, x: torch.Tensor, params) -> torch.Tensor:
    """``fn(x)`` for a small hyper-function (a few matrix products and BatchNorms on pooled (N, C) features) whose
    forward and backward both run on one thread; ``params`` are the parameters ``fn`` uses (their gradients flow as
    usual). Only where torch has (or, inside ``one_thread``, had) more than one CPU thread; else just ``fn(x)``.

    Why: autograd runs the backward of such ops, matrix products above all, with all of torch's threads, and a BLAS
    call on a (8, 256) matrix then waits for a descheduled thread whenever other processes hold the cores: 3.5 ms per
    product beside two CPU burners, against microseconds on one thread.
    """
    threaded = torch.get_num_threads() > 1 or getattr(_REDUCED, "depth", 0) > 0  # the backward runs outside one_thread
    if x.device.type != "cpu" or not threaded or not torch.is_grad_enabled():
        return fn(x)
    return _OneThreadGraph.apply(fn, x, *[p for p in params if p is not None])


def run_blocks(fn, blocks, device: torch.device) -> list:
    """``[fn(block) for block in blocks]``, on CPU shared out to single-threaded pool workers (one join for the lot);
    a small pass (``Blocks.elements`` under ``POOL_MIN_ELEMENTS``) runs its blocks in order on this thread alone.

    The calling thread takes blocks too (single-threaded while it does), so a pass never waits for a worker that the
    scheduler has not run yet: a worker that has not started by the time the blocks are gone is cancelled, and the
    join waits only for blocks a worker is already computing.

    ``fn`` must write only to its own block's slices of shared outputs; whatever must be summed over blocks it returns,
    and the caller adds the returned values up in block order (deterministic). Runs without gradient recording and with
    autocast off (the pool's threads start with the defaults of a new thread, so both are set here explicitly).
    """
    elements = getattr(blocks, "elements", None)
    workers = pool_workers(device, len(blocks), elements)
    if not workers:
        small = len(blocks) > 1 and small_pass(device, elements)
        with torch.autocast(device.type, enabled=False), one_thread() if small else contextlib.nullcontext():
            return [fn(b) for b in blocks]
    results = [None] * len(blocks)
    order = itertools.count()  # next() on it is atomic under the GIL: each block is taken exactly once

    def drain():
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            for i in iter(lambda: next(order), None):
                if i >= len(blocks):
                    return
                results[i] = fn(blocks[i])

    futures = [_pool(workers - 1).submit(drain) for _ in range(workers - 1)]
    threads = torch.get_num_threads()
    _IN_WORKER.active = True
    torch.set_num_threads(1)  # with OpenMP this binds the calling thread only (see _PER_THREAD_SETTINGS)
    try:
        drain()
    finally:
        torch.set_num_threads(threads)
        _IN_WORKER.active = False
        for f in futures:  # cancel the workers that never started; wait for those that have
            if not f.cancel():
                f.result()
    return results
