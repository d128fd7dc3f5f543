"""Real upstream code: PyPI yolov5==7.0.14 and yolov7-wky-package (YOLOv7), patched with yolo-act-swap.

The upstream trees are never imported here: tests/upstream/check_upstream.py runs once per family in a subprocess with
that family's folder on PYTHONPATH and reports JSON, and these tests assert on it. Install the trees with
``bash tests/upstream/install.sh`` (into ``$YAS_UPSTREAM_DIR``, default ``<repo>/.upstream``); without them the tests
skip, except under CI, where they fail.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.upstream, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = Path(os.environ.get("YAS_UPSTREAM_DIR") or REPO / ".upstream").resolve()
INSTALL = "bash tests/upstream/install.sh"
CHECK = REPO / "tests" / "upstream" / "check_upstream.py"
IMGSZ = 64

# Model -> activations. The stock models get all four: pointwise, depthwise-conv (frelu), per-channel parameters
# (acon_c), and a coefficient net (dy_relu_b). The two variants exist for their block type (BottleneckCSP's act over
# its BN; RepConv_OREPA's nonlinearity), so two activations that depend on the channel count are enough there.
ACTS = ("frelu", "acon_c", "dy_relu_b", "leaky_relu")
MODELS = {
    "yolov5": {"yolov5s": ACTS, "yolov5s-bottleneckcsp": ("frelu", "acon_c")},
    "yolov7": {"yolov7": ACTS, "yolov7-tiny": ACTS, "yolov7-repconv-orepa": ("frelu", "acon_c")},
}
# Model -> activation for the patched-checkpoint reload check (train.py's pretrained branch: --resume, fine-tuning).
RELOAD = {"yolov5": {"yolov5s": "acon_c"}, "yolov7": {"yolov7-tiny": "frelu"}}
VERSIONS = {"yolov5": "7.0.14", "yolov7": "2024.9.23.1"}
# Upstream block types each model must contain, so that every kind of activated block is exercised.
BLOCK_TYPES = {
    "yolov5s": {"Conv"},
    "yolov5s-bottleneckcsp": {"Conv", "BottleneckCSP"},
    "yolov7": {"Conv", "RepConv"},
    "yolov7-tiny": {"Conv"},
    "yolov7-repconv-orepa": {"Conv", "RepConv_OREPA"},
}
CASES = [(f, m, a) for f, models in MODELS.items() for m, acts in models.items() for a in acts]

# The README's three-line change: the upstream train.py lines it inserts after / before (docs/upstream.md).
TRAIN_PY = {
    "yolov5": ["yolov5/yolov5/train.py"],
    "yolov7": ["yolov7/python_scripts/train.py", "yolov7/python_scripts/train_aux.py"],
}
ANCHORS = {
    "yolov5": [
        ("patch_model before", "    amp = check_amp(model)  # check AMP"),
        ("add_activation_param_groups after", "    optimizer = smart_optimizer(model, opt.optimizer, hyp['lr0'], hyp['momentum'], hyp['weight_decay'])"),
        ("EMA made after both", "    ema = ModelEMA(model) if RANK in {-1, 0} else None"),
    ],
    "yolov7": [
        ("patch_model after", "        model = Model(opt.cfg, ch=3, nc=nc, anchors=hyp.get('anchors')).to(device)  # create"),
        ("patch_model before", "    with torch_distributed_zero_first(rank):\n        check_dataset(data_dict)  # check"),
        ("add_activation_param_groups after", "    optimizer.add_param_group({'params': pg2})  # add pg2 (biases)"),
        ("EMA made after both", "    ema = ModelEMA(model) if rank in [-1, 0] else None"),
    ],
}  # fmt: skip


def _require(family: str) -> None:
    """Skip (or, under CI, fail) when the upstream tree for ``family`` is not installed."""
    missing = [d for d in (family, "deps") if not (UPSTREAM / d / ".yas-installed").is_file()]
    if missing:
        prefix = f"YAS_UPSTREAM_DIR={UPSTREAM} " if os.environ.get("YAS_UPSTREAM_DIR") else ""
        msg = f"upstream {family} not installed in {UPSTREAM} (missing {', '.join(missing)}): run `{prefix}{INSTALL}`"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(msg)
        pytest.skip(msg)


class Checker:
    """One check_upstream.py subprocess per family, each with only its own tree on PYTHONPATH. All the families a
    test session needs start at once (they run single-threaded, so two use both cores of a CI machine); each result is
    read once, and a failure is kept so that every test of that family reports it without running again."""

    def __init__(self, families):
        self.tmp = Path(tempfile.mkdtemp(prefix="yas-upstream-"))
        self.procs, self.results = {}, {}
        for family in families:
            self.procs[family] = self._start(family)

    def _start(self, family: str) -> subprocess.Popen:
        env = dict(os.environ, YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_VERBOSE="false", MPLBACKEND="Agg")
        env["PYTHONPATH"] = os.pathsep.join(
            [str(UPSTREAM / family), str(UPSTREAM / "deps")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        models = ",".join(f"{m}:{'+'.join(acts)}" for m, acts in MODELS[family].items())
        reload = ",".join(f"{m}:{a}" for m, a in RELOAD[family].items())
        cmd = [sys.executable, str(CHECK), family, "--models", models, "--reload", reload, "--imgsz", str(IMGSZ)]
        cmd += ["--out", str(self.tmp / f"{family}.json")]
        with open(self.tmp / f"{family}.log", "w") as log:
            # cwd=tmp: no folder named models/ or utils/ in the working directory can shadow the upstream ones
            return subprocess.Popen(cmd, env=env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT)

    def result(self, family: str) -> dict:
        """The family's JSON (skipping or failing the test if it is not installed or the checker failed)."""
        _require(family)
        if family not in self.results:
            proc = self.procs.get(family) or self._start(family)
            try:
                rc = proc.wait(timeout=600)
                log = (self.tmp / f"{family}.log").read_text(errors="replace")
                if rc != 0:
                    raise RuntimeError(f"{family} checker exited {rc}:\n{log[-4000:]}")
                self.results[family] = json.loads((self.tmp / f"{family}.json").read_text())
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
                proc.kill()
                self.results[family] = f"{type(e).__name__}: {e}"
        if isinstance(self.results[family], str):
            pytest.fail(self.results[family])
        return self.results[family]

    def model(self, family: str, model: str) -> dict:
        return self.result(family)["models"][model]

    def act(self, family: str, model: str, act: str) -> dict:
        r = self.model(family, model)["acts"][act]
        assert "error" not in r, f"{model} + {act}: {r.get('traceback') or r['error']}"
        return r

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def upstream(request):
    """The Checker, started for the installed families that this session's selected tests of this file use."""
    here = [it for it in request.session.items if it.module is sys.modules[__name__] and hasattr(it, "callspec")]
    wanted = {it.callspec.params.get("family") for it in here} & set(MODELS)
    installed = [f for f in sorted(wanted) if all((UPSTREAM / d / ".yas-installed").is_file() for d in (f, "deps"))]
    checker = Checker(installed)
    yield checker
    checker.close()


@pytest.mark.parametrize("family", sorted(MODELS))
def test_upstream_versions(upstream, family):
    """The checker ran the pinned upstream releases and every model of the family."""
    data = upstream.result(family)
    assert data["version"] == VERSIONS[family]
    assert sorted(data["models"]) == sorted(MODELS[family])


@pytest.mark.parametrize("family,model", [(f, m) for f, ms in MODELS.items() for m in ms])
def test_independent_block_count(upstream, family, model):
    """Every plain activation of the unpatched model sits in a block the upstream-class count found."""
    m = upstream.model(family, model)
    assert m["blocks"], f"no activated conv blocks found in {model}"
    assert set(m["block_types"]) == BLOCK_TYPES[model]
    assert m["uncounted_before"] == [], f"activations outside counted blocks: {m['uncounted_before'][:5]}"


@pytest.mark.parametrize("family,model,act", CASES)
def test_swapped_blocks(upstream, family, model, act):
    """Swapped blocks == activated conv blocks, one fresh instance each, no plain activation left anywhere."""
    blocks = upstream.model(family, model)["blocks"]
    n = len(blocks)
    r = upstream.act(family, model, act)
    assert r["swapped"] == n, f"{model}: {r['swapped']} of {n} activated blocks swapped to {act}"
    assert r["unique_instances"] == n, "an activation instance is shared between blocks"
    assert r["report_blocks"] == n, f"patch_model found {r['report_blocks']} activated blocks, the model has {n}"
    assert r["report_swapped"] == n, f"patch_model reports {r['report_swapped']} swaps, the model has {n} blocks"
    wrong = [(b["path"], b["channels"], r["report_channels"].get(b["path"])) for b in blocks]
    wrong = [w for w in wrong if w[1] != w[2]]
    assert not wrong, f"(block, its channels, channels patch_model used): {wrong[:5]}"
    assert r["swapped_names"] == [act]
    assert r["plain_left"] == [], f"left unswapped: {r['plain_left'][:5]}"


@pytest.mark.parametrize("family,model,act", CASES)
def test_forward_shapes_unchanged(upstream, family, model, act):
    """Nested output shapes match the unpatched model in train and eval mode, square and non-square input."""
    r = upstream.act(family, model, act)
    runs = [f"{mode}@{IMGSZ}x{w}" for mode in ("train", "eval") for w in (IMGSZ, IMGSZ + 32)]
    assert sorted(r["shapes_before"]) == sorted(runs)
    assert r["shapes_after"] == r["shapes_before"]


@pytest.mark.parametrize("family,model,act", CASES)
def test_training_step(upstream, family, model, act):
    """Upstream loss, backward and an optimizer step after the snippet: every activation parameter gets a finite
    gradient, and every one with a nonzero gradient is moved by the step."""
    r = upstream.act(family, model, act)
    assert math.isfinite(r["loss"]) and r["loss"] > 0
    if act != "leaky_relu":
        assert r["n_act_params"] > 0 and r["added_params"] > 0, f"{act} added no parameters"
    assert r["grad_none"] == [], f"no gradient: {r['grad_none'][:5]}"
    assert r["grad_nonfinite"] == [], f"non-finite gradient: {r['grad_nonfinite'][:5]}"
    # DY-ReLU's fc2 starts at zero (a fresh one is exactly ReLU), so its fc1 sees a zero gradient on the first step.
    expected_zero = [n for n in r["grad_zero"] if act == "dy_relu_b" and ".fc1." in n]
    assert r["grad_zero"] == expected_zero, f"zero gradient: {r['grad_zero'][:5]}"
    assert r["not_updated"] == [], f"the optimizer step left these unchanged: {r['not_updated'][:5]}"
    n = len(upstream.model(family, model)["blocks"])
    assert r["ema_keys_match"] and r["ema_swapped"] == n, "upstream ModelEMA does not mirror the patched model"


@pytest.mark.parametrize("family,model,act", CASES)
def test_optimizer_snippet(upstream, family, model, act):
    """After add_activation_param_groups on upstream's own grouping: every parameter in exactly one group, activation
    shape parameters undecayed, conv/linear weights inside activations decayed like the script's weights."""
    r = upstream.act(family, model, act)
    g = r["groups_after"]
    assert g["missing"] == [], f"in no optimizer group: {g['missing'][:5]}"
    assert g["multi"] == [], f"in several optimizer groups: {g['multi'][:5]}"
    assert g["foreign"] == 0 and g["n_group_entries"] == g["n_model_params"]
    bad = {n: wd for n, wd in g["act_shape_param_decay"].items() if wd != [0.0]}
    assert not bad, f"activation shape parameters with weight decay: {list(bad.items())[:5]}"
    bad = {n: wd for n, wd in g["act_weight_decay"].items() if wd != [r["hyp_weight_decay"]]}
    assert not bad, f"activation conv/linear weights not decayed like the model's: {list(bad.items())[:5]}"


@pytest.mark.parametrize("family,model", [(f, m) for f, ms in MODELS.items() for m in ms])
def test_upstream_grouping_without_snippet_is_wrong(upstream, family, model):
    """Why the snippet exists: YOLOv5's smart_optimizer decays ACON's p1/p2/beta; YOLOv7's grouping omits them."""
    r = upstream.act(family, model, "acon_c")
    before = r["groups_before"]["act_shape_param_decay"]
    acon = {n: wd for n, wd in before.items() if n.rsplit(".", 1)[-1] in ("p1", "p2", "beta")}
    assert acon, "acon_c has no p1/p2/beta parameters"
    if family == "yolov5":
        decayed = all(wd == [r["hyp_weight_decay"]] for wd in acon.values())
        assert decayed, "smart_optimizer no longer puts ACON params in its decay group"
        assert r["groups_before"]["missing"] == []
    else:
        assert all(wd == [] for wd in acon.values()), "YOLOv7's grouping now includes ACON params"
        assert set(acon) <= set(r["groups_before"]["missing"])
        assert set(acon) <= set(r["not_updated_without_snippet"]), "without the snippet ACON params should not train"


@pytest.mark.parametrize("family,model,act", [(f, m, a) for f, d in RELOAD.items() for m, a in d.items()])
def test_patched_checkpoint_reload(upstream, family, model, act):
    """A patched checkpoint through train.py's pretrained branch: upstream loads only the keys the plain model has, so
    a bare patch leaves fresh activations; the docs' line (2), ``patch_model(..., weights=weights)``, restores every
    entry."""
    rl = upstream.act(family, model, act)["reload"]
    assert rl["new_keys"] > 0
    assert 0 < len(rl["differ_without_weights"]) <= rl["new_keys"], rl["differ_without_weights"][:5]
    assert rl["restored_without_weights"] == 0 and rl["restored_with_weights"] > 0
    assert rl["differ_with_weights"] == [], f"not restored: {rl['differ_with_weights'][:5]}"


@pytest.mark.parametrize("family", list(MODELS))
def test_upstream_checkpoints_load_without_running_code(upstream, family):
    """train.py-layout checkpoints written with upstream's code (last.pt with EMA, optimizer, numpy best_fitness and
    vars(opt); a stripped best.pt) load with the weights_only allow-list and --repo; a payload inside is refused."""
    r = upstream.result(family)["safe_load"]
    for name in ("last.pt", "best.pt"):
        assert r[name].get("equal_to_ema") is True, r[name]
        assert any(n.endswith("models.yolo.Model") or n.endswith("models.yolo.DetectionModel") for n in r[name]["needs"])
        assert any(n.startswith("numpy") for n in r[name]["needs"]), r[name]["needs"]
    assert "refused to load: it needs io.open" in r["payload.pt"]["refused"]
    assert r["payload.pt"]["marker"] is False


@pytest.mark.parametrize("family,train_py", [(f, t) for f, ts in TRAIN_PY.items() for t in ts])
def test_train_py_anchor_lines(family, train_py):
    """The README's insertion points exist exactly once in the installed upstream train.py, in this order."""
    _require(family)
    text = (UPSTREAM / train_py).read_text()
    positions = []
    for what, line in ANCHORS[family]:
        assert text.count(line + "\n") == 1, f"{train_py}: anchor for {what} not found once: {line!r}"
        positions.append(text.index(line + "\n"))
    assert positions == sorted(positions), f"{train_py}: anchors out of order"
