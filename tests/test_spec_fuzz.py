"""Fuzzing the spec parser: whatever comes in ends in a spec or one short ActSwapError, quickly and in little memory.

Inputs: random and spec-shaped YAML text (anchors, aliases, alias bombs, merge keys, tags, deep nesting, long strings,
unicode), plain Python data, inline ``--act`` strings, and ``--spec`` files and names. Each example is timed and its
peak memory measured (Python allocations with tracemalloc; the process's peak RSS for everything else, torch included).

A few hundred examples by default (deterministic, for CI); ``YAS_FUZZ_EXAMPLES=2000`` asks for that many in total,
from a random seed. ``YAS_FUZZ_REPORT=path.json`` writes the figures (calls, clear errors, other exceptions, slow or
large cases; the file and name tests make two calls per example). Time is CPU time, so that a loaded CI machine does
not fail it.
"""

import json
import os
import resource
import string
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolo_act_swap import ActSwapError, load_spec
from yolo_act_swap.activations import all_names, list_activations
from yolo_act_swap.errors import short
from yolo_act_swap.spec import spec_file_or_error

N_TESTS = 5  # fuzz tests below; the examples are shared out among them
TOTAL = int(os.environ.get("YAS_FUZZ_EXAMPLES", "0") or 0)
EXAMPLES = max(1, -(-TOTAL // N_TESTS)) if TOTAL else 80
MAX_SECONDS, MAX_BYTES, MAX_MESSAGE = 2.0, 200 * 2**20, 300

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # timed by run() below, with the limit the issue sets
    database=None,
    derandomize=not TOTAL,  # CI: the same examples every run; the long run: a fresh seed
    suppress_health_check=list(HealthCheck),
)

STATS = Counter()
TIME: Counter = Counter()  # seconds spent in the calls, per kind of input
SLOWEST: list = []  # kind, input, MB of the slowest call
LARGEST: list = []  # kind, input, seconds of the call with the largest peak
SLOW: list = []
OTHER: list = []


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run(kind: str, fn, *args, label=None, **kwargs):
    """Call ``fn``; it must return or raise a one-line ActSwapError under MAX_MESSAGE, within the time and memory."""
    rss0 = _rss()
    tracemalloc.start()  # only around the call: tracing hypothesis' own work would triple the test's time
    t0 = time.process_time()  # CPU time: on a shared CI machine wall time measures the neighbours
    try:
        fn(*args, **kwargs)
        outcome, error = "ok", None
    except ActSwapError as e:
        outcome, error = "clear error", e
    except Exception as e:  # noqa: BLE001 - exactly what the fuzzer looks for
        outcome, error = "other exception", e
    seconds = time.process_time() - t0
    peak = max(tracemalloc.get_traced_memory()[1], _rss() - rss0)
    tracemalloc.stop()
    STATS["examples"] += 1
    STATS[outcome] += 1
    TIME[kind] += seconds
    sample = short(label if label is not None else (args, kwargs), 200)
    if seconds > TIME["slowest"]:
        TIME["slowest"] = seconds
        SLOWEST[:] = [kind, sample, round(peak / 2**20, 1)]
    if peak > TIME["largest MB"] * 2**20:
        TIME["largest MB"] = peak / 2**20
        LARGEST[:] = [kind, sample, round(seconds, 3)]
    if seconds > MAX_SECONDS or peak > MAX_BYTES:
        SLOW.append({"kind": kind, "seconds": round(seconds, 3), "MB": round(peak / 2**20, 1), "input": sample})
    if outcome == "other exception":
        OTHER.append({"kind": kind, "error": f"{type(error).__name__}: {str(error)[:200]}", "input": sample})
    assert outcome != "other exception", f"{type(error).__name__}: {str(error)[:300]} for {sample}"
    if error is not None:
        msg = str(error)
        assert "\n" not in msg and len(msg) < MAX_MESSAGE, f"{len(msg)} characters: {msg[:400]!r}"
    assert seconds <= MAX_SECONDS, f"{seconds:.2f} s for {sample}"
    assert peak <= MAX_BYTES, f"{peak / 2**20:.0f} MB for {sample}"


@pytest.fixture(scope="module", autouse=True)
def fuzz_report():
    load_spec(act="meta_acon_c:reduction=512")  # warm up: imports and first allocations are not an example's cost
    load_spec("act: {name: frelu, kernel_size: 5}\n")
    yield
    report = {"calls": STATS["examples"], "ok": STATS["ok"], "clear errors": STATS["clear error"],
              "other exceptions": len(OTHER), "slow or large": len(SLOW),
              "seconds": {k: round(v, 2) for k, v in TIME.items()}, "slowest call": SLOWEST, "largest call": LARGEST,
              "others": OTHER[:20], "slow": SLOW[:20]}  # fmt: skip
    if os.environ.get("YAS_FUZZ_REPORT"):
        Path(os.environ["YAS_FUZZ_REPORT"]).write_text(json.dumps(report, indent=1))


# --- building blocks ----------------------------------------------------------------------------------------------

KEYWORDS = sorted({k for info in list_activations() for k in info.kwargs}) + ["channels", "name", "x", "inplace"]
NAMES = all_names() + ["keep", "KEEP", "Hard-Swish", "frelo", "", " ", "acon", "name"]
SCALARS = [
    "true", "false", "yes", "off", "null", "~", "''", '""', "0", "-1", "1", "2", "3", "5", "31", "33", "501", "99999",
    "100000000", "1.5", "1.9", "2.0", "0.1", "1e-3", "1e300", "1e-300", "1.0e-300", "-1e39", "3.5e38", ".inf", "-.inf",
    ".nan", "0x1F", "0o17", "1_000", "1:30", "2001-12-14", "silu", "swish", "default", "tanh", "none", "9" * 5000,
    "!!binary aGVsbG8=", "!!binary ???", "!!timestamp garbage", "!!float abc", "!!int xyz", "!!str 3", "!!set {a, b}",
    "!!omap [a: 1]", "!!pairs [a: 1]", "!!python/object/apply:os.system ['true']", "!!python/name:os.system",
    "!custom x", "!<tag:yaml.org,2002:int> 7", "[1, 2]", "{a: 1}", "[]", "{}", "*undefined", "&a [*a]",
]  # fmt: skip
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
PLAIN = st.text(alphabet=string.ascii_letters + string.digits + "_-.:,=[]{}&*!|>'\"#%@` \t", max_size=30)


def scalar() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(SCALARS), st.sampled_from(NAMES), PLAIN, st.integers().map(str),
                     st.floats().map(repr), TEXT.map(json.dumps))  # fmt: skip


@st.composite
def valid_kwargs(draw, info) -> list:
    """Keywords of ``info`` with values of the right type, mostly within range: the success path gets fuzzed too."""
    out = []
    for key in draw(st.lists(st.sampled_from(info.kwargs), unique=True, max_size=3)) if info.kwargs else []:
        default, bound = info.defaults.get(key), info.bounds.get(key)
        lo, hi = (bound.min, bound.max) if bound else (-10.0, 10.0)
        if isinstance(default, bool):
            value = draw(st.sampled_from(["true", "false", "off"]))
        elif isinstance(default, int):
            value = str(draw(st.integers(int(lo) - 1, int(hi) + 1)))
        elif isinstance(default, float):
            value = repr(draw(st.floats(lo * 1.01, hi * 1.01)))
        else:
            value = draw(st.sampled_from(["silu", "swish", "default", "tanh", "none"]))
        out.append((key, value))
    return out


@st.composite
def inline_act(draw) -> str:
    """``name:key=value,...`` with names, keywords and values drawn from the registry and from hostile pools."""
    if draw(st.integers(0, 2)) == 0:
        info = draw(st.sampled_from(list_activations()))
        return info.name + ("".join(f"{',' if i else ':'}{k}={v}" for i, (k, v) in enumerate(draw(valid_kwargs(info)))))
    name = draw(st.one_of(st.sampled_from(NAMES), PLAIN))
    items = draw(st.lists(st.tuples(st.one_of(st.sampled_from(KEYWORDS), PLAIN), scalar()), max_size=4))
    sep = draw(st.sampled_from([":", ":", "", "::", ": "]))
    return name + (sep + ",".join(f"{k}={v}" for k, v in items) if items or draw(st.booleans()) else "")


@st.composite
def yaml_node(draw, depth: int = 0, anchors: list | None = None) -> str:
    """Spec-shaped YAML in flow style, with anchors, aliases, merge keys and tags sprinkled in."""
    anchors = [] if anchors is None else anchors
    kind = draw(st.sampled_from(["scalar", "act", "seq", "map", "alias"] if depth < 6 else ["scalar", "alias"]))
    if kind == "alias" and anchors:
        return "*" + draw(st.sampled_from(anchors))
    if kind in ("scalar", "alias"):
        return draw(st.one_of(scalar(), inline_act().map(json.dumps)))
    if kind == "act" and draw(st.booleans()):
        info = draw(st.sampled_from(list_activations()))
        text = "{" + ", ".join([f"name: {info.name}", *(f"{k}: {v}" for k, v in draw(valid_kwargs(info)))]) + "}"
    elif kind == "act":
        kwargs = draw(st.lists(st.tuples(st.sampled_from(KEYWORDS), scalar()), max_size=3))
        body = ", ".join([f"name: {draw(st.sampled_from(NAMES)) or 'x'}", *(f"{k}: {v}" for k, v in kwargs)])
        text = "{" + body + "}"
    elif kind == "seq":
        items = draw(st.lists(yaml_node(depth + 1, anchors), max_size=4))
        text = "[" + ", ".join(items) + "]"
    else:
        keys = st.one_of(st.sampled_from(["act", "rules", "description", "layers", "stages", "modules", "types",
                                          "optional", "bare", "act_swap", "name", "<<"]), PLAIN)  # fmt: skip
        pairs = draw(st.lists(st.tuples(keys, yaml_node(depth + 1, anchors)), max_size=4))
        text = "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    if draw(st.integers(0, 4)) == 0:
        name = f"a{len(anchors)}"
        anchors.append(name)
        text = f"&{name} {text}"
    return text


@st.composite
def alias_bomb(draw) -> str:
    """Billion laughs (lists or merge keys), recursive aliases: tiny text standing for a huge tree."""
    width, levels = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    merge = draw(st.booleans())
    lines = ["x0: &a0 {k: v}" if merge else "x0: &a0 [lol, lol, lol]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"x{i}: &a{i} {{<<: [{refs}], k{i}: v}}" if merge else f"x{i}: &a{i} [{refs}]")
    where = draw(st.sampled_from(["act", "rules", "description", "top"]))
    last = f"*a{levels - 1}"
    tail = {"act": f"act: {last}", "rules": f"rules: [{{layers: {last}, act: relu}}]",
            "description": f"description: {last}", "top": f"act: frelu\nextra: {last}"}[where]  # fmt: skip
    if draw(st.booleans()):
        tail = "rec: &r [*r, *r]\n" + tail
    return "\n".join(lines) + "\n" + tail + "\n"


@st.composite
def deep(draw) -> str:
    n = draw(st.integers(1, 3000))
    style = draw(st.sampled_from(["seq", "map", "block", "mixed"]))
    if style == "seq":
        return "act: " + "[" * n + "relu" + "]" * n
    if style == "map":
        return "{act: " + "{a: " * n + "relu" + "}" * n + "}"
    if style == "block":
        return "".join("  " * i + f"k{i}:\n" for i in range(min(n, 400))) + "  " * min(n, 400) + "relu\n"
    return "act: " + "[{a: " * n + "x"  # unterminated


@st.composite
def long_strings(draw) -> str:
    n = draw(st.integers(100, 120_000))
    ch = draw(st.sampled_from(["x", "é", "🙂", "[", ",", " ", "\t", "a: b\n", "- ", "#"]))
    where = draw(st.sampled_from(["value", "key", "name", "comment", "raw"]))
    body = ch * (n // len(ch))
    return {"value": f"act: '{body}'", "key": f"{body}: 1", "name": f"act: {{name: {body!r}}}",
            "comment": f"# {body}\nact: frelu", "raw": body}[where]  # fmt: skip


def yaml_text() -> st.SearchStrategy[str]:
    spec_like = yaml_node().map(lambda t: t if t.startswith("{") else f"act: {t}")
    block = st.builds(lambda a, r: f"act: {a}\nrules:\n" + "".join(f"  - {x}\n" for x in r), yaml_node(),
                      st.lists(yaml_node(), max_size=4))  # fmt: skip
    return st.one_of(spec_like, block, alias_bomb(), deep(), long_strings(), TEXT, st.text(max_size=300))


def python_data() -> st.SearchStrategy:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300), st.floats(),
                       TEXT, st.sampled_from(NAMES), st.sampled_from(SCALARS), st.binary(max_size=8))  # fmt: skip
    data = st.recursive(leaves, lambda c: st.one_of(st.lists(c, max_size=5), st.tuples(c, c),
                        st.dictionaries(st.one_of(st.sampled_from(["act", "rules", "name", "layers", "types", "k",
                                                                  "kernel_size", "channels"]), TEXT, st.integers()), c,
                                        max_size=4)), max_leaves=20)  # fmt: skip
    act = st.one_of(st.sampled_from(NAMES), inline_act(), data,
                    st.dictionaries(st.sampled_from(["name", *KEYWORDS]), st.one_of(st.sampled_from(NAMES), data),
                                    max_size=4))  # fmt: skip
    rule = st.dictionaries(st.sampled_from(["layers", "stages", "modules", "types", "act", "optional", "bare", "x"]),
                           st.one_of(act, data), max_size=4)  # fmt: skip
    spec = st.fixed_dictionaries({}, optional={"act": act, "rules": st.one_of(st.lists(rule, max_size=3), data),
                                               "description": data, "act_swap": data})  # fmt: skip
    huge = st.integers(1, 200_000).map(lambda n: {"act": {"name": "relu", "x": list(range(n))}})
    deep_list = st.integers(1, 5000).map(_nested)
    return st.one_of(spec, data, huge, deep_list)


def _nested(n: int) -> dict:
    v = "relu"
    for _ in range(n):
        v = [v]
    return {"act": v}


# --- the properties -----------------------------------------------------------------------------------------------

DIR = Path(tempfile.mkdtemp(prefix="yas-fuzz-"))


@SETTINGS
@given(yaml_text())
def test_yaml_text(text):
    run("yaml text", load_spec, text)


@SETTINGS
@given(python_data())
def test_python_data(data):
    run("python data", load_spec, data)


@SETTINGS
@given(st.one_of(inline_act(), PLAIN, TEXT, st.text(max_size=2000)), st.booleans())
def test_inline_act(act, with_spec):
    run("--act", load_spec, "frelu.yaml" if with_spec else None, act=act)


@SETTINGS
@given(st.one_of(yaml_text(), st.binary(max_size=300)), st.sampled_from([".yaml", ".yml", ""]))
def test_spec_files(content, suffix):
    path = DIR / f"spec{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    run("--spec file", lambda: load_spec(spec_file_or_error(str(path))), label=content)
    run("spec path", load_spec, path, label=content)


NAME_PARTS = st.sampled_from(["~", "~nosuchuser/", "../", "/", "a" * 300, "\x00", "é", "frelu", ".yaml", "//", "\\",
                              "configs/acts/", "/dev/null", "/proc/self/", "*", "?", "🙂" * 100, " "])  # fmt: skip


@SETTINGS
@given(st.lists(st.one_of(NAME_PARTS, PLAIN, TEXT), min_size=1, max_size=5).map("".join))
def test_spec_names(name):
    run("--spec name", lambda: load_spec(spec_file_or_error(name)), label=name)
    run("spec string", load_spec, name)


def test_yaml_dump_of_every_builtin_spec_still_loads():
    """The bounded loader reads what yaml.safe_dump writes (the fuzzer's inputs are mostly rejections)."""
    from yolo_act_swap.spec import builtin_specs

    for name in builtin_specs():
        s = load_spec(f"{name}.yaml")
        assert load_spec(yaml.safe_dump(s.to_dict())) == s
