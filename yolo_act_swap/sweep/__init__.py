"""``yolo-act-swap sweep``: train one model per activation under identical settings and compare them.

Every run is one training in a subprocess (``python -m yolo_act_swap train ...``), so a crash, a NaN or an
out-of-memory kill costs one row, not the sweep. The steps, one module each:

- ``plan``: the runs (``--acts`` -> :class:`SweepRun`), the settings and the sweep folder with ``plan.json``;
- ``runner``: one run's command and the subprocess (or Ray task) that executes it;
- ``harvest``: a finished or failed run's record (status, error line, NaN checks, size, memory) and the latency;
- ``tables``: ``results.csv`` / ``results.md`` from the records;
- ``scheduler``: :class:`Sweep`, which trains the pending runs locally (one per device) or on Ray and records them.

The sweep folder::

    {project}/{name}/
        plan.json              settings, their hash and the runs (written first, atomically)
        records/{label}.json   one result record per finished or failed run (atomic)
        runs/{label}/          the ultralytics run folder (weights/, results.csv, act_swap_result.json)
        logs/{label}.log       the run's console output
        specs/{label}.yaml     a frozen copy of each spec file
        latency.json           fused batch-1 latency of the finished runs, measured side by side in one process
        results.csv/.md, *.png the comparison, regenerated from the records

Killed at any point and started again with the same command (or ``--resume``), a sweep skips recorded runs, resumes
interrupted ones from their ``last.pt`` and never loses or duplicates a row. The command line is ``cli/sweep.py``.
"""

from ..errors import SweepError
from .harvest import error_line, harvest, interrupted, measure_latency, model_stats, nan_problem
from .plan import (
    DATA_DEFAULTS,
    DEFAULT_ACTS,
    DEMO_DEFAULTS,
    DEMO_RECIPE,
    SweepFolder,
    SweepRun,
    make_settings,
    planned_runs,
    resolve_acts,
    settings_hash,
    split_acts,
)
from .runner import child_env, resolve_devices, run_command, train_command
from .scheduler import Sweep
from .tables import TABLE_COLUMNS, table_rows, write_tables

__all__ = [
    "DATA_DEFAULTS", "DEFAULT_ACTS", "DEMO_DEFAULTS", "DEMO_RECIPE", "TABLE_COLUMNS", "Sweep", "SweepError",
    "SweepFolder", "SweepRun", "child_env", "error_line", "harvest", "interrupted", "make_settings",
    "measure_latency", "model_stats", "nan_problem", "planned_runs", "resolve_acts", "resolve_devices",
    "run_command", "settings_hash", "split_acts", "table_rows", "train_command", "write_tables",
]
