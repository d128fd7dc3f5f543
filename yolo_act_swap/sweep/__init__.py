"""``yolo-act-swap sweep``: train one model per activation under identical settings and compare them.

Every run is one training in a subprocess (``python -m yolo_act_swap train ...``), so a crash, a NaN or an
out-of-memory kill costs one row, not the sweep. The steps, one module each:

- ``plan``: the runs (``--acts`` -> :class:`SweepRun`), the settings and the sweep folder with ``plan.json``;
- ``runner``: one run's command and the subprocess (or Ray task) that executes it;
- ``harvest``: a finished or failed run's record (status, error line, NaN checks, size, memory) and the latency;
- ``stats``: mean, std and t interval per activation over its seeds; paired t-test to the baseline, Holm-corrected;
- ``tables``: ``results.csv`` / ``results.md`` (one row per activation) and ``runs.csv`` from the records;
- ``scheduler``: :class:`Sweep`, which trains the pending runs locally (one per device) or on Ray and records them.

The sweep folder::

    {project}/{name}/
        plan.json              settings, their hash and the runs (written first, atomically)
        records/{run}.json     one result record per finished or failed run (atomic); a run is {label}-seed{seed}
        runs/{run}/            the ultralytics run folder (weights/, results.csv, act_swap_result.json)
        logs/{run}.log         the run's console output
        specs/{label}.yaml     a frozen copy of each spec file
        latency.json           fused batch-1 latency of the finished runs, measured side by side in one process
        results.csv/.md, runs.csv, *.png  the comparison, regenerated from the records

Killed at any point and started again with the same command (or ``--resume``), a sweep skips recorded runs, resumes
interrupted ones from their ``last.pt`` and never loses or duplicates a row. The command line is ``cli/sweep.py``.
"""

from ..errors import SweepError
from .acts import resolve_acts, split_acts
from .harvest import error_line, harvest, interrupted, measure_latency, model_stats, nan_problem
from .plan import (
    DATA_DEFAULTS,
    DATA_SEEDS,
    DEFAULT_ACTS,
    DEMO_DEFAULTS,
    DEMO_RECIPE,
    DEMO_SEEDS,
    SweepFolder,
    SweepRun,
    activations_of,
    make_settings,
    planned_runs,
    resolve_seeds,
    seeds_of,
    settings_hash,
    upgrade_plan,
    with_seeds,
)
from .runner import child_env, resolve_devices, run_command, train_command
from .scheduler import Sweep
from .stats import Comparison, Paired, Spread, compare, holm, paired, require_scipy, spread
from .tables import TABLE_COLUMNS, SweepTable, build_table, default_baseline, summary_lines, table_rows, write_tables

__all__ = [
    "DATA_DEFAULTS", "DATA_SEEDS", "DEFAULT_ACTS", "DEMO_DEFAULTS", "DEMO_RECIPE", "DEMO_SEEDS", "TABLE_COLUMNS",
    "Comparison", "Paired", "Spread", "Sweep", "SweepError", "SweepFolder", "SweepRun", "SweepTable",
    "activations_of", "build_table", "child_env", "compare", "default_baseline", "error_line", "harvest", "holm",
    "interrupted", "make_settings", "measure_latency", "model_stats", "nan_problem", "paired", "planned_runs",
    "require_scipy", "resolve_acts", "resolve_devices", "resolve_seeds", "run_command", "seeds_of", "settings_hash",
    "split_acts", "spread", "summary_lines", "table_rows", "train_command", "upgrade_plan", "with_seeds",
    "write_tables",
]
