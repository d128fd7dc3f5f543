"""The worker pool of the channel-aware activations' block-wise kernels (``functional.run_blocks`` re-exports it).

``run_blocks`` shares a pass's blocks out to single-threaded worker threads (and the calling thread), with one join
per pass; ``one_thread`` runs small tensors' ops without OpenMP regions; ``pool_workers`` says when the pool is used.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["one_thread", "pool_workers", "run_blocks"]


# Why a worker pool: run block by block with torch's own intra-op threads, every elementwise op of every block is a
# parallel region that waits for its slowest thread. On a loaded machine (dataloader workers, other jobs) one thread of
# the team is often descheduled, and each of the hundreds of small regions then costs a scheduler time slice: DY-ReLU-B
# went from 0.15x to 3x the reference. Here each block runs single-threaded on one of ``torch.get_num_threads()``
# worker threads that take blocks from a shared queue, so a busy core simply does fewer blocks: the whole pass has one
# join instead of one per op. torch's ops release the GIL, so the workers run in parallel.
_POOL_LOCK = threading.Lock()
_POOL: dict = {}  # (pid, workers) -> executor; rebuilt after a fork (the child has none of the parent's threads)
_IN_WORKER = threading.local()
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


def pool_workers(device: torch.device, blocks: int) -> int:
    """How many pool workers ``run_blocks`` uses for ``blocks`` blocks on ``device`` (0: run them in this thread)."""
    if device.type != "cpu" or blocks < 2 or not _PER_THREAD_SETTINGS or getattr(_IN_WORKER, "active", False):
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
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_blocks(fn, blocks, device: torch.device) -> list:
    """``[fn(block) for block in blocks]``, on CPU shared out to single-threaded pool workers (one join for the lot).

    The calling thread takes blocks too (single-threaded while it does), so a pass never waits for a worker that the
    scheduler has not run yet: a worker that has not started by the time the blocks are gone is cancelled, and the
    join waits only for blocks a worker is already computing.

    ``fn`` must write only to its own block's slices of shared outputs; whatever must be summed over blocks it returns,
    and the caller adds the returned values up in block order (deterministic). Runs without gradient recording and with
    autocast off (the pool's threads start with the defaults of a new thread, so both are set here explicitly).
    """
    workers = pool_workers(device, len(blocks))
    if not workers:
        with torch.autocast(device.type, enabled=False):
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
