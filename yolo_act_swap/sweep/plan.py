"""What a sweep trains: its runs (one per ``--acts`` item), its settings, and the sweep folder with ``plan.json``.

The plan is written first and atomically; a re-run is checked against it (same settings, same specs), so that a
sweep resumed or started again never mixes runs trained under different settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..activations import all_names, normalize_name
from ..errors import SpecError, SweepError
from ..io import atomic_write_text, configs_dir
from ..data import is_demo
from ..spec import split_top
from ..spec import load_spec, resolve_spec_file

TRAIN_MODULE = "yolo_act_swap"  # every run is ``python -m yolo_act_swap train ...``
PLAN_VERSION = 1
DEFAULT_ACTS = "silu,relu,frelu"
# no --data: the built-in demo, about a CPU minute per activation, with a recipe that learns visibly in 6 epochs
DEMO_DEFAULTS = {"cfg": "yolov8n.yaml", "epochs": 6, "batch_size": 8, "img_size": 128}
DEMO_RECIPE = ["optimizer=AdamW", "lr0=0.003", "warmup_epochs=1"]  # the user's key=value arguments come after (and win)
DATA_DEFAULTS = {"cfg": None, "epochs": 100, "batch_size": 16, "img_size": 640}  # cfg None: the train default


@dataclass
class SweepRun:
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


# ------------------------------------------------------------------------------------------------------ --acts
def _label(text: str) -> str:
    """Folder-safe label: ``leaky_relu:negative_slope=0.1`` -> ``leaky_relu_negative_slope=0.1``."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text.replace(":", "_").replace(",", "_")).strip("._") or "act"


def split_acts(items: list[str]) -> list[str]:
    """Split comma lists outside brackets; ``acon_c:init=silu,reduction=8`` keeps its second keyword.

    Args:
        items (list[str]): ``--acts`` values, each a comma list of names, inline forms or spec files.

    Returns:
        (list[str]): one token per activation, in order.
    """
    tokens: list[str] = []
    for item in items:
        for piece in split_top(str(item), ","):
            piece = piece.strip()
            if not piece:
                continue
            if tokens and "=" in piece and ":" not in piece and "/" not in piece and ":" in tokens[-1]:
                tokens[-1] += "," + piece  # a further keyword of the previous inline spec
            else:
                tokens.append(piece)
    return tokens


@contextlib.contextmanager
def acts_flag(flag: str = "--acts"):
    """Name ``flag`` in the spec errors raised inside (``load_spec`` names the ``--act`` flag of train and patch)."""
    # TODO(spec): a where= keyword of load_spec (owner E) would make this rewording unnecessary
    try:
        yield
    except SpecError as e:
        text = str(e)
        if not text.startswith("--act:"):
            raise
        raise type(e)(flag + text[len("--act"):]) from None


def _spec_file(token: str) -> Path | None:
    """The spec file or folder a ``--acts`` token names (a path, or a built-in ``configs/acts`` name), else None."""
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


def _act_run(token: str) -> SweepRun:
    """Validate an inline ``--act`` form up front; plain silu is the baseline."""
    with acts_flag():
        act = load_spec(act=token).act
    baseline = bool(act is not None and act.name == "silu" and not act.kwargs)
    return SweepRun(label=_label(token), act=token, baseline=baseline)


def _spec_runs(path: Path) -> list[SweepRun]:
    """One run per spec file (a file, or every ``.yaml`` of a folder), each validated and hashed."""
    files = sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
    if not files:
        raise SweepError(f"--acts: folder {path} holds no .yaml spec files")
    runs = []
    for f in files:
        load_spec(str(f))
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        runs.append(SweepRun(label=_label(f.stem), spec=str(f), spec_sha256=digest))
    return runs


def resolve_acts(items: list[str]) -> list[SweepRun]:
    """Turn ``--acts`` items (names, inline specs, spec files, folders of spec files) into validated runs.

    Args:
        items (list[str]): the ``--acts`` values; each may be a comma list.

    Returns:
        (list[SweepRun]): one run per activation, in the order given.
    """
    runs: list[SweepRun] = []
    for token in split_acts(items):
        path = _spec_file(token)
        runs += [_act_run(token)] if path is None else _spec_runs(path)
    if not runs:
        raise SweepError("--acts is empty: give activation names, inline specs or spec files, e.g. --acts silu,relu")
    seen: set[str] = set()
    for r in runs:
        if r.label in seen:
            raise SweepError(f"--acts lists {r.label!r} twice; every run needs its own activation or spec")
        seen.add(r.label)
    return runs


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
        **given: ``cfg``, ``epochs``, ``batch_size``, ``img_size``, ``seed`` (None: not given).
    """
    if data is None:
        data = (planned or {}).get("data")
    else:
        data = None if is_demo(data) else abs_if_exists(data)
    defaults = DEMO_DEFAULTS if data is None else DATA_DEFAULTS
    base = planned if planned is not None else {**defaults, "seed": 0}
    if planned is not None and not overrides:
        overrides = list(planned.get("overrides", []))
    else:
        overrides = (DEMO_RECIPE if data is None else []) + list(overrides or [])
    cfg = given.get("cfg")
    out = {"cfg": abs_if_exists(cfg) if cfg is not None else base.get("cfg"), "data": data}
    for key in ("epochs", "batch_size", "img_size", "seed"):
        out[key] = given[key] if given.get(key) is not None else base.get(key)
    out["overrides"] = overrides
    return out


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
        """``plan.json``, or None when there is none; an unreadable one is an error (it must not be overwritten)."""
        if not self.plan_path.exists():
            return None
        plan = self.read_json(self.plan_path)
        if plan is None:
            raise SweepError(f"{self.plan_path} is unreadable; delete it to plan the sweep again")
        return plan

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

    def plan(self, settings: dict, runs: list[SweepRun], argv: list[str]) -> list[SweepRun]:
        """Write ``plan.json`` for a new sweep, or check a re-run against it and add any new runs.

        Returns:
            (list[SweepRun]): every run of the sweep, the planned ones first.
        """
        old = self.read_plan()
        all_runs = list(runs)
        if old is not None:
            planned = self._check(old, settings, runs)
            known = {r.label for r in planned}
            all_runs = planned + [r for r in runs if r.label not in known]
            if len(all_runs) == len(planned):
                return planned
        plan = {
            "version": PLAN_VERSION,
            "hash": settings_hash(settings),
            "settings": settings,
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


def planned_runs(plan: dict) -> list[SweepRun]:
    """The runs recorded in a ``plan.json``."""
    return [SweepRun(**r) for r in plan.get("runs", [])]
