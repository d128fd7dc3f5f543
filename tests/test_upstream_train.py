"""The docs' train.py snippet in full runs of upstream YOLOv5 (PyPI yolov5==7.0.14) and YOLOv7 (yolov7-wky-package).

For each (family, activation) tests/upstream/runs.py applies docs/upstream.md's three lines to a copy of upstream's
train.py (as a user would, at the documented places) and runs, each in its own subprocess with only that family's tree
on PYTHONPATH, on the demo data at 128 px on CPU: train from --cfg for 2 epochs; fine-tune from its last.pt; --resume
from its epoch-0 checkpoint (an interrupted run); upstream's val.py/test.py and detect.py on its best.pt. A probe line
after the snippet records the optimizer's grouping and the activation weights at the start of each run and at its end.

The default set trains all four parameterised families, split over the two repositories (about 3-4 minutes on two
cores, two chains at a time); ``YAS_UPSTREAM_FULL=1`` runs every activation in both. Without the upstream install the
tests skip (fail under CI), as in tests/test_upstream.py.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = [pytest.mark.upstream, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "upstream"))
from runs import UPSTREAM, Chain, demo_data
from snippet import apply_snippet

ACTS = ("frelu", "acon_c", "meta_acon_c", "dy_relu_b")
FULL = os.environ.get("YAS_UPSTREAM_FULL", "").lower() not in ("", "0", "false", "no")
CASES = (
    [(f, a) for f in ("yolov5", "yolov7") for a in ACTS]
    if FULL
    else [("yolov5", "acon_c"), ("yolov5", "frelu"), ("yolov7", "meta_acon_c"), ("yolov7", "dy_relu_b")]
)
N_GROUPS = 3  # both scripts: weights with decay, norm weights, biases (YOLOv5's results CSV has one lr column each)
TRAIN_PY = {"yolov5": ["yolov5/yolov5/train.py"], "yolov7": ["yolov7/python_scripts/train.py",
                                                             "yolov7/python_scripts/train_aux.py"]}  # fmt: skip


def _installed(family: str) -> bool:
    return all((UPSTREAM / d / ".yas-installed").is_file() for d in (family, "deps"))


def _require(family: str) -> None:
    if not _installed(family):
        msg = f"upstream {family} not installed in {UPSTREAM}: run `bash tests/upstream/install.sh`"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def chains(request):
    """Every selected (family, activation) chain, run two at a time (one subprocess each, single-threaded)."""
    here = [it for it in request.session.items if it.module is sys.modules[__name__] and hasattr(it, "callspec")]
    wanted = sorted({(it.callspec.params["family"], it.callspec.params["act"]) for it in here
                     if "act" in it.callspec.params and _installed(it.callspec.params["family"])})  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="yas-upstream-train-"))

    def one(case):
        root = tmp / "-".join(case)
        root.mkdir()
        return Chain(*case, root, demo_data(root)).run()

    # interleave the families, so that the two workers tend to run one YOLOv5 and one YOLOv7 chain at a time
    order = sorted(wanted, key=lambda c: ([w for w in wanted if w[0] == c[0]].index(c), c[0]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(order, pool.map(one, order)))
    yield results
    shutil.rmtree(tmp, ignore_errors=True)


def _step(chains, family, act, name) -> dict:
    _require(family)
    steps = chains[(family, act)]
    assert name in steps, f"{name} did not run (an earlier step failed): {sorted(steps)}"
    s = steps[name]
    assert s["rc"] == 0, f"{s['cmd']} exited {s['rc']}:\n{s['log'][-2500:]}"
    return s


def _grouping_ok(probe: dict) -> None:
    g = probe["grouping"]
    assert g["n_groups"] == N_GROUPS, f"the snippet changed the number of optimizer groups: {g['group_sizes']}"
    assert g["not_once"] == [], f"model parameters not in exactly one group: {g['not_once'][:5]}"
    assert g["n_act_params"] > 0
    bad = {n: gs for n, gs in g["act_groups"].items() if len(gs) != 1}
    assert not bad, f"activation parameters not in exactly one group: {list(bad.items())[:5]}"


@pytest.mark.parametrize("family,act", CASES)
def test_train_from_cfg(chains, family, act):
    """2 epochs from --cfg: train.py finishes (YOLOv5's results CSV gets its three lr columns), every activation
    parameter is in exactly one of upstream's three groups, every one of them gets gradients, and nearly all change
    (an update during the warm-up can stay below float32's resolution: see tests/upstream/probe.py)."""
    s = _step(chains, family, act, "scratch")
    assert "2 epochs completed" in s["log"]
    _grouping_ok(s["probe"])
    p = s["probe"]
    assert p["no_gradient"] == [], f"no gradient reached: {p['no_gradient'][:5]}"
    assert len(p["unchanged"]) <= p["grouping"]["n_act_params"] // 10, f"not trained: {p['unchanged'][:5]}"
    assert 0 < s["probe"]["max_drift"] < 1, s["probe"]["top_drift"]


@pytest.mark.parametrize("family,act", CASES)
@pytest.mark.parametrize("how", ["finetune", "resume"])
def test_activation_weights_continue(chains, family, act, how):
    """--weights last.pt and --resume epoch-0 checkpoint: at the start of the run every activation tensor equals the
    checkpoint's (max abs diff 0), although upstream loads the plain model with strict=False."""
    s = _step(chains, family, act, how)
    c = s["probe"]["checkpoint"]
    assert c is not None and c["n_compared"] > 0 and c["missing"] == []
    assert c["max_abs_diff"] == 0.0, f"{how}: activation weights differ from {c['weights']} by {c['max_abs_diff']}"
    if how == "resume":
        assert c["epoch"] == 0  # the interrupted run's checkpoint, not a finished one
    _grouping_ok(s["probe"])


@pytest.mark.parametrize("family,act", CASES)
def test_upstream_eval_and_detect(chains, family, act):
    """Upstream's own val.py (YOLOv5) / test.py (YOLOv7) and detect.py load the patched best.pt and run."""
    _step(chains, family, act, "eval")
    d = _step(chains, family, act, "detect")
    assert d["n_saved"] > 0, d["log"][-1500:]


@pytest.mark.parametrize("family,train_py", [(f, t) for f, ts in TRAIN_PY.items() for t in ts])
def test_snippet_applies(family, train_py):
    """The docs' lines go in at their documented places in each upstream training script (train_aux.py too)."""
    _require(family)
    text, where = apply_snippet((UPSTREAM / train_py).read_text(), family, "frelu")
    assert sorted(where) == ["1", "2", "3"]
    compile(text, train_py, "exec")
