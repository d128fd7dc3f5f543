"""What a sweep trains: its runs (one per ``--acts`` item), its settings, and the sweep folder with ``plan.json``.

The plan is written first and atomically; a re-run is checked against it (same settings, same specs), so that a
sweep resumed or started again never mixes runs trained under different settings.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..blend import parse_transition
from ..data import is_demo
from ..errors import ActSwapError, SweepError
from ..io import atomic_write_text

TRAIN_MODULE = "yolo_act_swap"  # every run is ``python -m yolo_act_swap train ...``
PLAN_VERSION = 2  # 2: one run per (activation, seed), the seed in the run; 1: one run per activation, one seed
DEFAULT_ACTS = "silu,relu,frelu"
# no --data: the built-in demo, about a CPU minute per run (two seeds of three activations: six), with a recipe that
# learns visibly in 6 epochs (5 epochs or 96 px learn too little for a comparison: mAP50-95 0.07, or 0 to 0.02)
DEMO_DEFAULTS = {"cfg": "yolov8n.yaml", "epochs": 6, "batch_size": 8, "img_size": 128}
DEMO_RECIPE = ["optimizer=AdamW", "lr0=0.003", "warmup_epochs=1"]  # the user's key=value arguments come after (and win)
DATA_DEFAULTS = {"cfg": None, "epochs": 100, "batch_size": 16, "img_size": 640}  # cfg None: the train default
DEMO_SEEDS, DATA_SEEDS = 2, 1  # seeds per activation when --seeds is not given (and no plan says otherwise)


@dataclass
class SweepRun:
    """One training of the sweep: one activation (or spec) with one seed.

    Attributes:
        label (str): the activation's folder-safe name (the table's ``act`` column), shared by its seeds.
        act (str, optional): the ``--act`` form passed to training (``leaky_relu:negative_slope=0.1``).
        spec (str, optional): a spec file (frozen into the sweep folder) passed as ``--spec``.
        spec_sha256 (str, optional): content hash of the spec file.
        baseline (bool): a plain ``silu`` run, the default reference of the ``Δ vs silu`` column.
        seed (int, optional): the training seed (None: not yet expanded over seeds).
        run_id (str): the run's unique name (its folder, record and log): ``{label}-seed{seed}``; a version-1 plan's
            runs keep their label as run id.
    """

    label: str
    act: str | None = None
    spec: str | None = None
    spec_sha256: str | None = None
    baseline: bool = False
    seed: int | None = None
    run_id: str = ""

    def __post_init__(self):
        if not self.run_id:
            self.run_id = self.label if self.seed is None else f"{self.label}-seed{self.seed}"

    def identity(self) -> dict:
        """What must not change between a sweep and its resume."""
        return {"act": self.act, "spec_sha256": self.spec_sha256}

    def key(self) -> tuple[str, int | None]:
        """The (activation, seed) pair: one run per pair."""
        return self.label, self.seed



def resolve_seeds(seeds: str | None, seed: int | None, planned: list[int] | None, demo: bool) -> list[int]:
    """The seeds of every activation: ``--seeds N`` (a count, from ``--seed``, default 0) or ``--seeds 0,1,2``.

    Args:
        seeds (str, optional): the ``--seeds`` value: a count (``3``) or a comma list (``0,1,2`` or ``7,``).
        seed (int, optional): ``--seed``: the first seed of a count, or alone the one seed.
        planned (list[int], optional): the seeds of an existing plan, used when neither flag is given.
        demo (bool): the built-in demo (its default is two seeds, real data one).

    Returns:
        (list[int]): distinct seeds, in order.
    """
    if seeds is None:
        if seed is not None:
            return [seed]
        return list(planned) if planned else list(range(DEMO_SEEDS if demo else DATA_SEEDS))
    text = str(seeds).strip()
    if "," not in text:
        if not text.isdigit() or int(text) < 1:
            raise SweepError(f"--seeds {seeds!r}: give a count (--seeds 3) or a list of seeds (--seeds 0,1,2)")
        first = seed or 0
        return list(range(first, first + int(text)))
    if seed is not None:
        raise SweepError(f"--seeds {seeds} with --seed {seed}: give an explicit list, or --seed and a count")
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SweepError(f"--seeds {seeds!r}: seeds are integers, e.g. --seeds 0,1,2") from None
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise SweepError(f"--seeds {seeds!r}: give distinct non-negative integers, e.g. --seeds 0,1,2")
    return out


def with_seeds(acts: list[SweepRun], seeds: list[int]) -> list[SweepRun]:
    """One run per (activation, seed), seed by seed: every activation gets a seed before any gets the next one, so a
    sweep cut short still holds paired results."""
    return [replace(a, seed=s, run_id="") for s in seeds for a in acts]


def activations_of(runs: list[SweepRun]) -> list[SweepRun]:
    """The distinct activations of a list of runs, in order, as seedless templates for :func:`with_seeds`."""
    out: dict[str, SweepRun] = {}
    for r in runs:
        out.setdefault(r.label, replace(r, seed=None, run_id=""))
    return list(out.values())


def seeds_of(runs: list[SweepRun]) -> list[int]:
    """The distinct seeds of a list of runs, in order of first appearance."""
    return list(dict.fromkeys(r.seed for r in runs if r.seed is not None))


# ---------------------------------------------------------------------------------------------------- settings
def abs_if_exists(value: str | None) -> str | None:
    """An existing path made absolute (runs train in their own folders); anything else unchanged."""
    return str(Path(value).expanduser().resolve()) if value and Path(value).expanduser().exists() else value


def make_settings(planned: dict | None = None, data: str | None = None, overrides: list[str] | None = None,
                  **given) -> dict:
    """The sweep settings: ``given`` values (None: not given), else the plan's (when resuming), else the defaults.

    Args:
        planned (dict, optional): the settings of ``plan.json`` when resuming.
        data (str, optional): dataset; None (or the demo alias) is the built-in demo.
        overrides (list[str], optional): ``key=value`` training arguments; None keeps the plan's.
        **given: ``cfg``, ``epochs``, ``batch_size``, ``img_size``, ``weights`` (fine-tune every run from this
            checkpoint), ``transition`` (``--transition`` of every run) (None: not given). The seeds are not
            settings: they are part of the runs, so that a sweep can gain seeds as it gains activations.
    """
    if data is None:
        data = (planned or {}).get("data")
    else:
        data = None if is_demo(data) else abs_if_exists(data)
    defaults = DEMO_DEFAULTS if data is None else DATA_DEFAULTS
    base = planned if planned is not None else defaults
    if planned is not None and not overrides:
        overrides = list(planned.get("overrides", []))
    else:
        overrides = (DEMO_RECIPE if data is None else []) + list(overrides or [])
    cfg = given.get("cfg")
    out = {"cfg": abs_if_exists(cfg) if cfg is not None else base.get("cfg"), "data": data}
    for key in ("epochs", "batch_size", "img_size"):
        out[key] = given[key] if given.get(key) is not None else base.get(key)
    out["overrides"] = overrides
    _transfer_settings(out, planned, given)
    return out


def _transfer_settings(out: dict, planned: dict | None, given: dict) -> None:
    """``weights`` and ``transition`` (a sweep from a trained model), kept in the settings only when set, so that
    sweeps planned without them keep their settings hash."""
    weights = given.get("weights") or (planned or {}).get("weights")
    transition = given.get("transition") or (planned or {}).get("transition")
    if transition is not None and not weights:
        raise SweepError("--transition moves a trained model to each activation: pass --weights TRAINED.pt")
    if not weights:
        return
    if not Path(weights).expanduser().is_file():
        raise SweepError(f"--weights {weights}: file not found; pass a trained checkpoint (best.pt)")
    out["weights"] = abs_if_exists(weights)
    if given.get("cfg") is None and planned is None:
        out["cfg"] = None  # the weights' own config: the runs move from the activations they were trained with
    if transition is not None:
        try:
            schedule = parse_transition(transition)
        except ActSwapError as e:
            raise SweepError(str(e)) from None
        if schedule.get("epochs", 0) > out["epochs"]:
            raise SweepError(f"--transition {transition} is longer than a run (--epochs {out['epochs']})")
        out["transition"] = str(transition)


def settings_hash(settings: dict) -> str:
    """Short hash of everything that makes the runs of a sweep comparable."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------------ folder
class SweepFolder:
    """The files of one sweep; every write is atomic.

    Args:
        root (Path): the sweep folder (``{project}/{name}``).
    """

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.plan_path = self.root / "plan.json"
        self._lock_file = None
        self.table_lock = threading.Lock()  # one writer of results.csv/.md at a time

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

    def read_plan(self) -> dict | None:
        """``plan.json`` (a version-1 plan upgraded in memory), or None when there is none; an unreadable one is an
        error (it must not be overwritten)."""
        if not self.plan_path.exists():
            return None
        plan = self.read_json(self.plan_path)
        if plan is None:
            raise SweepError(f"{self.plan_path} is unreadable; delete it to plan the sweep again")
        return upgrade_plan(plan)

    def lock(self) -> None:
        """Hold an exclusive lock on the folder for this process's lifetime (released by the OS even on SIGKILL)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, one sweep per folder is on the user
            return
        f = open(self.root / ".lock", "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise SweepError(f"sweep folder {self.root} is in use by another running sweep; wait for it to end "
                             f"or pass a different --name") from None
        self._lock_file = f

    def plan(self, settings: dict, runs: list[SweepRun], argv: list[str]) -> list[SweepRun]:
        """Write ``plan.json`` for a new sweep, or check a re-run against it and add any new (activation, seed) runs.

        Returns:
            (list[SweepRun]): every run of the sweep, the planned ones first.
        """
        old = self.read_plan()
        all_runs = list(runs)
        if old is not None:
            planned = self._check(old, settings, runs)
            known = {r.key() for r in planned}
            all_runs = planned + [r for r in runs if r.key() not in known]
            if len(all_runs) == len(planned):
                return planned
        ids = [r.run_id for r in all_runs]
        clash = next((i for i in ids if ids.count(i) > 1), None)
        if clash is not None:
            raise SweepError(f"two runs of {self.root} would both be named {clash!r}; rename a spec file or pass a "
                             f"new --name")
        plan = {
            "version": PLAN_VERSION,
            "hash": settings_hash(settings),
            "settings": settings,
            "seeds": sorted(set(seeds_of(all_runs))),
            "runs": [asdict(r) for r in all_runs],
            "train_module": TRAIN_MODULE,
            "command": ["yolo-act-swap", "sweep", *argv],
            "created": (old or {}).get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
        }
        self.write_json(self.plan_path, plan)
        return all_runs

    def _check(self, old: dict, settings: dict, runs: list[SweepRun]) -> list[SweepRun]:
        """The planned runs, after checking that ``settings`` and every known run match the plan."""
        if old.get("hash") != settings_hash(settings):
            was = old.get("settings", {})
            diff = "; ".join(f"{k}: {was.get(k)!r} -> {settings.get(k)!r}" for k in sorted(settings)
                             if was.get(k) != settings.get(k))
            raise SweepError(f"sweep folder {self.root} was planned with other settings ({diff}); rerun with the "
                             f"same settings to resume, or pass a new --name")
        planned = planned_runs(old)
        by_label = {r.label: r for r in planned}
        for r in runs:
            p = by_label.get(r.label)
            if p is not None and p.identity() != r.identity():
                what = "spec file changed" if r.spec else f"was {p.act!r}"
                raise SweepError(f"run {r.label!r} of {self.root} differs from its plan ({what}); restore it or "
                                 f"pass a new --name")
        return planned

    def freeze_spec(self, run: SweepRun) -> str:
        """Copy a run's spec file into the sweep folder once, so that resumes train with the same spec."""
        dst = self.root / "specs" / f"{run.label}.yaml"
        if not dst.exists():
            atomic_write_text(dst, Path(run.spec).read_text(encoding="utf-8"))
        return str(dst)


def upgrade_plan(plan: dict) -> dict:
    """A plan in the current version's form. Version 1 had one seed in its settings and one run per activation, each
    named by its label: the seed moves into every run (whose run id stays the label, so its folder is found again)."""
    if plan.get("version", 1) >= 2:
        return plan
    settings = dict(plan.get("settings") or {})
    seed = settings.pop("seed", 0)
    runs = [asdict(SweepRun(**r)) | {"seed": seed} for r in plan.get("runs", [])]
    return {**plan, "version": PLAN_VERSION, "hash": settings_hash(settings), "settings": settings, "seeds": [seed],
            "runs": runs}


def planned_runs(plan: dict) -> list[SweepRun]:
    """The runs recorded in a ``plan.json`` (of any version)."""
    return [SweepRun(**r) for r in upgrade_plan(plan).get("runs", [])]
