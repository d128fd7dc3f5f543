"""Runs the pending trainings of a planned sweep (one per device locally, or as Ray tasks) and records each one."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from ..errors import ActSwapError, SweepError
from ..io import checkpoint_complete
from ..tables import is_finite
from .harvest import cpu_name, harvest, interrupted, measure_latency
from .plan import SweepFolder, SweepRun
from .runner import child_env, is_gpu, ray_task, run_command, train_command
from .tables import build_table, write_tables

NO_RUN = {"returncode": 0, "max_rss_mb": None, "tail": []}  # the outcome of a run that had finished already


class Sweep:
    """Runs the pending trainings of a planned sweep and keeps its table current.

    Args:
        folder (SweepFolder): the locked sweep folder.
        runs (list[SweepRun]): every run of the plan.
        settings (dict): the planned settings.
        devices (list[str]): one entry per parallel slot.
        workers (int, optional): dataloader workers per run.
        verbose (bool): pass ``--verbose`` to training.
        retry_failed (bool): train failed runs again instead of keeping their records.
        baseline (str, optional): the reference activation's label in the tables (None: the plain silu run).
    """

    def __init__(self, folder: SweepFolder, runs: list[SweepRun], settings: dict, devices: list[str],
                 workers: int | None = None, verbose: bool = False, retry_failed: bool = False,
                 baseline: str | None = None):
        self.folder, self.runs, self.settings = folder, runs, settings
        self.devices, self.workers, self.verbose = devices, workers, verbose
        self.retry_failed, self.baseline = retry_failed, baseline
        self.procs: dict = {}
        self.stopping = threading.Event()  # set when the sweep itself is being stopped
        self.bar = None

    # ------------------------------------------------------------------------------------------------ one run
    def pending(self) -> list[SweepRun]:
        """Runs without a record (a failed record too, with ``--retry-failed``)."""
        todo = []
        for r in self.runs:
            rec = self.folder.record(r.run_id)
            if rec is None or (self.retry_failed and rec.get("status") == "failed"):
                todo.append(r)
        return todo

    def prepare(self, run: SweepRun) -> tuple[str | None, dict | None]:
        """How to (re)start a run: ``(last.pt to resume from or None, an already finished result or None)``."""
        run_dir = self.folder.run_dir(run.run_id)
        rec = self.folder.record(run.run_id)
        if rec is not None and rec.get("status") == "failed":  # --retry-failed: start over
            shutil.rmtree(run_dir, ignore_errors=True)
            return None, None
        result = self.folder.read_json(run_dir / "act_swap_result.json")
        if result and result.get("status") == "finished":
            return None, result  # trained to the end; only the record was missing
        last = run_dir / "weights" / "last.pt"
        if last.exists() and checkpoint_complete(last):
            collected = self.collect(run, last)
            return (None, collected) if collected else (str(last), None)
        if last.exists():
            self.write(f"{run.run_id}: {last} was cut short (killed while saving); starting the run again")
        if run_dir.exists():
            shutil.rmtree(run_dir)  # no usable epoch saved: start over cleanly (no stale results.csv rows)
        return None, None

    def collect(self, run: SweepRun, last: Path) -> dict | None:
        """A run whose training is over but whose result is missing (the sweep was killed during its final
        "Validating best.pt"): validate its best.pt and return the result, or None when it is to be resumed."""
        from ..engine.run import collect, finished_training
        from ..safe_load import load_checkpoint

        try:
            if not finished_training(load_checkpoint(last)):
                return None
        except ActSwapError as e:
            self.write(f"{run.run_id}: {e}")
            return None
        self.write(f"{run.run_id}: training is over but its result is missing; validating its best.pt")
        try:
            return collect(self.folder.run_dir(run.run_id), self.devices[0])
        except ActSwapError as e:
            self.write(f"{run.run_id}: cannot collect it ({e}); training it again")
            return None

    def command(self, run: SweepRun, device: str, resume: str | None = None) -> list[str]:
        """The training command of ``run`` on ``device``."""
        return train_command(run, self.settings, self.folder, device, self.workers, resume, self.verbose)

    def execute(self, run: SweepRun, device: str, echo=None, runner=None) -> dict:
        """Train (or resume, or just collect) one run and return its outcome for ``harvest``."""
        resume, finished = self.prepare(run)
        if finished is not None:
            return dict(NO_RUN)
        log = self.folder.log_path(run.run_id)
        runner = runner or (lambda cmd: run_command(cmd, log, env=child_env(), echo=echo, procs=self.procs))
        outcome = runner(self.command(run, device, resume))
        text = "\n".join(outcome.get("tail") or [])
        if resume and outcome.get("returncode") and "nothing to resume" in text:
            # killed between the final save and the result file: the run is complete but its result is not; train
            # it again from scratch rather than record a failure
            shutil.rmtree(self.folder.run_dir(run.run_id), ignore_errors=True)
            outcome = runner(self.command(run, device))
        return outcome

    def record(self, run: SweepRun, outcome: dict, device: str) -> dict | None:
        """Harvest and write a run's record atomically, then regenerate the tables.

        A run stopped by SIGINT/SIGTERM/SIGHUP (Ctrl-C, a scheduler's preemption, the sweep stopping) gets no record:
        it stays resumable and the next start of the sweep continues it from its ``last.pt``.
        """
        if self.stopping.is_set() or interrupted(outcome):
            self.write(f"{run.run_id}: interrupted; run the sweep again to resume it")
            return None
        rec = harvest(run, self.folder, outcome, self.settings["img_size"], is_gpu(device))
        rec["device"] = device
        rec["runner"] = outcome.get("runner") or {"backend": "local", "pid": os.getpid()}
        self.folder.write_json(self.folder.record_path(run.run_id), rec)
        with self.folder.table_lock:
            write_tables(build_table(self.runs, self.folder, None, self.baseline), self.folder, self.settings, None)
        m = rec["metrics"].get("mAP50-95")
        done = sum(self.folder.record(r.run_id) is not None for r in self.runs)
        if rec["status"] != "finished":
            msg = f"FAILED ({rec['error']})"
        else:
            msg = f"finished, mAP50-95 {m:.4f}" if is_finite(m) else "finished"
        self.write(f"[{done}/{len(self.runs)}] {run.run_id}: {msg}")
        return rec

    def write(self, msg: str) -> None:
        """One line to stdout, above the progress bar."""
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

    # ------------------------------------------------------------------------------------------------- local
    def run_local(self, todo: list[SweepRun]) -> None:
        """One run per device at a time; with several devices, parallel worker threads pull runs from a queue."""
        self.bar = self._bar(len(self.runs) - len(todo), "sweep")
        try:
            if len(self.devices) == 1:
                self._run_serial(todo, self.devices[0])
            else:
                self._run_parallel(todo)
        except BaseException:
            self.stop_children()
            raise
        finally:
            self.bar.close()

    def _run_serial(self, todo: list[SweepRun], device: str) -> None:
        for run in todo:
            self.bar.set_description(f"sweep [{run.run_id}]")
            outcome = self.execute(run, device, echo=self.write)
            if self.record(run, outcome, device) is not None:
                self.bar.update(1)

    def _run_parallel(self, todo: list[SweepRun]) -> None:
        jobs: queue.Queue = queue.Queue()
        for run in todo:
            jobs.put(run)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=self._worker, args=(d, jobs, errors), daemon=True) for d in self.devices]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        if errors:
            raise errors[0]

    def _worker(self, device: str, jobs: queue.Queue, errors: list) -> None:
        """A worker thread: train runs from ``jobs`` on ``device`` until none is left or another worker failed."""
        while not errors:
            try:
                run = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                self.write(f"{run.run_id}: started on device {device}, log {self.folder.log_path(run.run_id)}")
                outcome = self.execute(run, device, echo=lambda s, lb=run.run_id: self.write(f"[{lb}] {s}"))
                if self.record(run, outcome, device) is not None:
                    self.bar.update(1)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                errors.append(e)
                return

    # --------------------------------------------------------------------------------------------------- ray
    def run_ray(self, todo: list[SweepRun]) -> None:
        """Each run is a Ray task asking for one GPU (or one CPU) that runs the same subprocess command."""
        try:
            import ray
        except ImportError:
            raise SweepError("--backend ray needs Ray: pip install 'yolo-act-swap[ray]'") from None
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)  # RAY_ADDRESS=... joins an existing cluster
        gpu = is_gpu(self.devices[0])
        refs = self._submit(ray.remote(ray_task), todo, gpu)
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

    def _submit(self, task, todo: list[SweepRun], gpu: bool) -> dict:
        """Submit one Ray task per run that still needs training; returns task ref -> run."""
        refs = {}
        for run in todo:
            resume, finished = self.prepare(run)
            if finished is not None:
                self.record(run, dict(NO_RUN), self.devices[0])
                continue
            opts = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
            log = str(self.folder.log_path(run.run_id))
            ref = task.options(**opts, name=f"yas-sweep-{run.run_id}").remote(
                self.command(run, "0" if gpu else "cpu", resume), log, child_env())
            refs[ref] = run
            self.write(f"{run.run_id}: submitted to Ray, log {log}")
        return refs

    # ----------------------------------------------------------------------------------------------- latency
    def latency(self, reps: int) -> dict | None:
        """Measure (or reuse) the side-by-side latency of every activation; stored in ``latency.json``.

        One model per activation: its first finished seed (the seeds share the architecture, so they share the
        latency), keyed by the activation's label.
        """
        path = self.folder.root / "latency.json"
        weights = {}
        for r in self.runs:
            rec = self.folder.record(r.run_id)
            if r.label in weights or not rec or rec.get("status") != "finished":
                continue
            if rec.get("best") and Path(rec["best"]).exists():
                weights[r.label] = rec["best"]
        if not weights:
            return None
        device, imgsz = self.devices[0], self.settings["img_size"]
        old = self.folder.read_json(path)
        same = {"device": device, "imgsz": imgsz, "reps": reps}
        if old and sorted(old.get("ms", {})) == sorted(weights) and all(old.get(k) == v for k, v in same.items()):
            return old  # same runs, same device: keep the measurement (a re-run prints the same table)
        import torch

        if is_gpu(device) and not torch.cuda.is_available():
            self.write("latency: no GPU in this process, measuring on cpu")
            device = "cpu"
        self.write(f"latency: {len(weights)} fused models, batch 1, imgsz {imgsz}, {device}, {reps} interleaved rounds")
        ms = measure_latency(weights, device, imgsz, reps=reps)
        name = torch.cuda.get_device_name(int(device)) if is_gpu(device) and device.isdigit() else cpu_name()
        lat = {"device": device, "device_name": name, "imgsz": imgsz, "reps": reps,
               "torch": torch.__version__, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "ms": ms}
        self.folder.write_json(path, lat)
        return lat
