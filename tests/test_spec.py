"""Swap specs: every accepted form, the round trip through to_dict, and every error with its message."""

from pathlib import Path

import pytest
import yaml

from yolo_act_swap import ActivationArgError, SpecError, UnknownActivation, load_spec
from yolo_act_swap.io import configs_dir
from yolo_act_swap.spec import ActSpec, Rule, SwapSpec, builtin_specs, parse_act_string, split_top


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- accepted forms ---------------------------------------------------------------------------------------------------


def test_shorthand_forms():
    assert load_spec(act="frelu").act == ActSpec("frelu")
    s = load_spec(act="leaky_relu:negative_slope=0.1")
    assert s.act == ActSpec("leaky_relu", {"negative_slope": 0.1}) and isinstance(s.act.kwargs["negative_slope"], float)
    assert load_spec(act="acon_c:init=silu").act == ActSpec("acon_c", {"init": "silu"})
    assert load_spec(act="Hard-Swish").act.name == "hard_swish"  # aliases and case normalise to the canonical name
    assert load_spec("swish").act.name == "silu"  # a bare string is the shorthand too
    assert parse_act_string("dy_relu_c:k=2,reduction=8,gamma=1.5") == (
        "dy_relu_c",
        {"k": 2, "reduction": 8, "gamma": 1.5},
    )
    assert parse_act_string("x:flag=true,v=[1, 2]") == ("x", {"flag": True, "v": [1, 2]})  # values are YAML scalars


def test_split_top_keeps_brackets_and_quotes():
    parts = split_top("acon_c:init=silu,v=[1, 2],w={a: 1, b: 2}", ",")
    assert parts == ["acon_c:init=silu", "v=[1, 2]", "w={a: 1, b: 2}"]
    assert split_top("a:s='x,y',b", ",") == ["a:s='x,y'", "b"] and split_top("", ",") == [""]
    assert split_top("relu/frelu:k=(1/2)", "/") == ["relu", "frelu:k=(1/2)"]


def test_dict_text_file_and_builtin_name(tmp_path):
    d = {"act": "frelu", "rules": [{"layers": ["0-9", 12, -1], "act": {"name": "acon_c", "init": "silu"}},
                                   {"modules": "model.2.*", "act": "keep"},
                                   {"types": ["C2f", "SPPF"], "stages": "neck", "act": "relu", "optional": True},
                                   {"types": "GELU", "bare": True, "act": "silu"}]}  # fmt: skip
    s = load_spec(d)
    assert s.act == ActSpec("frelu")
    r0, r1, r2, r3 = s.rules
    assert r0.layers == ((0, 9), 12, -1) and r0.act == ActSpec("acon_c", {"init": "silu"})
    assert r1.modules == ("model.2.*",) and r1.act.keep
    assert r2.types == ("C2f", "SPPF") and r2.stages == ("neck",) and r2.optional and not r2.bare
    assert r3.bare and r3.types == ("GELU",)
    assert load_spec(yaml.safe_dump(d)) == s  # YAML text
    assert load_spec(_write(tmp_path / "s.yaml", yaml.safe_dump(d))) == s  # a path
    assert load_spec(str(tmp_path / "s.yaml")) == s
    assert load_spec("frelu.yaml").source.endswith("frelu.yaml")  # a name under configs/acts
    assert load_spec("backbone-frelu-head-silu.yaml").rules[0].stages == ("backbone",)
    assert load_spec(s) is s


def test_act_override_replaces_default_keeps_rules():
    s = load_spec("backbone-frelu-head-silu.yaml", act="relu")
    assert s.act == ActSpec("relu") and s.rules == load_spec("backbone-frelu-head-silu.yaml").rules
    assert load_spec({"act": "frelu", "rules": [{"layers": 0, "act": "relu"}]}, act="keep").act is None


def test_model_yaml_with_act_swap_key(tmp_path):
    p = _write(tmp_path / "m.yaml", "nc: 2\nbackbone: []\nhead: []\nact_swap:\n  act: mish\n")
    assert load_spec(p).act == ActSpec("mish")


@pytest.mark.parametrize("name", builtin_specs())
def test_builtin_specs_round_trip(name):
    s = load_spec(f"{name}.yaml")
    d = s.to_dict()
    assert load_spec(d) == s
    assert load_spec(yaml.safe_dump(d)) == s  # and through YAML text
    assert s.description  # every example says what it is for


def test_round_trip_of_everything():
    s = SwapSpec(
        act=ActSpec("leaky_relu", {"negative_slope": 0.2}),
        rules=(
            Rule(ActSpec("keep"), layers=((0, 3), -1)),
            Rule(
                ActSpec("frelu", {"kernel_size": 5}),
                types=("Conv",),
                modules=("model.1*",),
                stages=("backbone", "head"),
                optional=True,
                bare=True,
            ),
        ),  # fmt: skip
        description="all keys",
    )
    assert load_spec(s.to_dict()) == s
    assert load_spec(s.to_dict()).to_dict() == s.to_dict()


def test_builtin_specs_are_shipped():
    names = set(builtin_specs())
    assert {"frelu", "acon-silu-init", "edge-relu", "backbone-frelu-head-silu", "dy-relu-b"} <= names
    assert all((configs_dir() / "acts" / f"{n}.yaml").is_file() for n in names)


# --- errors -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({"act": "frelo"}, UnknownActivation, r"--act: unknown activation 'frelo': did you mean 'frelu'"),
        (
            {"act": "leaky_relu:slope=0.1"},
            ActivationArgError,
            r"takes no keyword 'slope'; valid keywords: negative_slope",
        ),
        ({"act": "acon_c:init=tanh"}, ActivationArgError, r"--act: activation 'acon_c'.*tanh"),
        ({"act": "leaky_relu:negative_slope"}, SpecError, r"cannot read 'negative_slope'.*NAME:key=value"),
        ({"act": ":x=1"}, SpecError, r"empty activation"),
        ({}, SpecError, r"no activation given: pass an activation name \(--act frelu\) or a spec file"),
        (
            {"spec": {"act": "frelu", "rulez": []}},
            SpecError,
            r"spec\.rulez: unknown key 'rulez'; valid keys: act, rules",
        ),
        ({"spec": {"act": None}}, SpecError, r"spec\.act: act is empty"),
        ({"spec": {"act": 3}}, SpecError, r"act must be a name"),
        ({"spec": {"act": {"init": "silu"}}}, SpecError, r"needs a 'name' key"),
        ({"spec": {"act": {"name": "keep", "x": 1}}}, SpecError, r"'keep' takes no keywords"),
        ({"spec": {"description": "x"}}, SpecError, r"neither 'act' nor 'rules'"),
        ({"spec": {"act": "keep"}}, SpecError, r"swaps nothing"),
        ({"spec": {"rules": {"layers": 1}}}, SpecError, r"rules must be a list"),
        ({"spec": {"rules": ["relu"]}}, SpecError, r"spec\.rules\[0\]: a rule must be a mapping"),
        ({"spec": {"rules": [{"act": "relu"}]}}, SpecError, r"the rule has no selector; add layers, stages, modules"),
        ({"spec": {"rules": [{"layers": 1}]}}, SpecError, r"the rule has no act"),
        (
            {"spec": {"rules": [{"layer": 1, "act": "relu"}]}},
            SpecError,
            r"rules\[0\]\.layer: unknown rule key 'layer'; valid keys: layers, stages, modules, types, act, optional, bare",
        ),
        (
            {"spec": {"rules": [{"layers": "foo", "act": "relu"}]}},
            SpecError,
            r"rules\[0\]\.layers: layers: 'foo' is not a layer index or range",
        ),
        ({"spec": {"rules": [{"layers": True, "act": "relu"}]}}, SpecError, r"True is not a layer index"),
        ({"spec": {"rules": [{"layers": "9-5", "act": "relu"}]}}, SpecError, r"runs backwards; write it as '5-9'"),
        ({"spec": {"rules": [{"layers": [], "act": "relu"}]}}, SpecError, r"layers is empty"),
        ({"spec": {"rules": [{"types": ["C2f", 3], "act": "relu"}]}}, SpecError, r"types: 3 is not a string"),
        ({"spec": {"rules": [{"types": "Conv(3)", "act": "relu"}]}}, SpecError, r"is not a class name"),
        ({"spec": {"rules": [{"modules": "", "act": "relu"}]}}, SpecError, r"modules: '' is not a string"),
        (
            {"spec": {"rules": [{"stages": "body", "act": "relu"}]}},
            SpecError,
            r"unknown stage 'body'; valid stages: backbone, neck, head",
        ),
        (
            {"spec": {"rules": [{"layers": 1, "act": "relu", "optional": "yes please"}]}},
            SpecError,
            r"optional must be true or false",
        ),
        ({"spec": {"rules": [{"layers": 1, "act": "frelo"}]}}, UnknownActivation, r"spec\.rules\[0\]\.act: unknown"),
        ({"spec": "missing-spec.yaml"}, SpecError, r"spec file 'missing-spec.yaml' not found.*frelu"),
        ({"spec": ["frelu"]}, SpecError, r"a list .* is a chain of specs: pass it to patch_model"),
        ({"spec": 3.5}, SpecError, r"cannot read a spec from float"),
    ],
)
def test_errors(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern) as e:
        load_spec(kwargs.get("spec"), act=kwargs.get("act"))
    assert "\n" not in str(e.value)  # one line


def test_file_errors_name_file_and_line(tmp_path):
    p = _write(tmp_path / "bad.yaml", "act: frelu\nrules:\n  - layers: 0-3\n    act: [relu\n")
    with pytest.raises(SpecError, match=rf"{p}:5:\d+: malformed YAML: .*fix the YAML syntax"):
        load_spec(p)
    p = _write(tmp_path / "unknown.yaml", "act: frelu\nrules:\n  - layers: 0-3\n    act: relu\n  - types: Conv\n"
                                          "    act: frelo\n")  # fmt: skip
    with pytest.raises(UnknownActivation, match=rf"{p}:6: unknown activation 'frelo': did you mean 'frelu'"):
        load_spec(p)
    p = _write(tmp_path / "key.yaml", "act: frelu\n\nrules:\n  - layers: 0-3\n    actt: relu\n")
    with pytest.raises(SpecError, match=rf"{p}:5: unknown rule key 'actt'"):
        load_spec(p)
    p = _write(tmp_path / "kw.yaml", "act:\n  name: leaky_relu\n  slope: 0.1\n")
    with pytest.raises(ActivationArgError, match=rf"{p}:3: activation 'leaky_relu' takes no keyword 'slope'"):
        load_spec(p)
    with pytest.raises(SpecError, match="the spec file is empty"):
        load_spec(_write(tmp_path / "empty.yaml", "# nothing\n"))


def test_yaml_is_never_evaluated(tmp_path, monkeypatch):
    import os

    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    p = _write(tmp_path / "evil.yaml", "act: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError, match=rf"{p}:1:\d+: malformed YAML"):
        load_spec(p)
    with pytest.raises(SpecError):
        load_spec(act="relu:x=!!python/object/apply:os.system ['echo pwned']")
    assert calls == []


def test_layer_ranges_are_checked_against_the_model():
    r = load_spec({"rules": [{"layers": ["0-50", -1], "act": "relu"}]}).rules[0]
    assert r.layer_set(106) == set(range(51)) | {105}
    with pytest.raises(
        SpecError, match=r"spec\.rules\[0\]: layer range 0-50 is outside the model, which has layers 0-22"
    ):
        r.layer_set(23)
    r = load_spec({"rules": [{"layers": -30, "act": "relu"}]}).rules[0]
    with pytest.raises(SpecError, match=r"layer -30 is outside the model, which has layers 0-22"):
        r.layer_set(23)


# --- hostile input: bounded, typed, short errors ---------------------------------------------------------------------


def _one_short_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 300, msg[:500]
    return msg


BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
) + "act: *i\n"  # 9**9 nodes in under 500 bytes


@pytest.mark.parametrize(
    "text, pattern",
    [
        (BOMB, r":\d+: with its aliases expanded the YAML is over 5000 nodes"),
        ("x0: &m {k: v}\n" + "".join(f"x{i}: &m{i} {{<<: [{', '.join(['*m' if i == 1 else f'*m{i - 1}'] * 8)}]}}\n"
                                     for i in range(1, 9)) + "act: frelu\n", r"over 5000 nodes"),  # merge keys
        ("act: &r [*r]\n", r":1: an alias refers to a node that contains it"),
        ("act: " + "[" * 3000 + "relu" + "]" * 3000 + "\n", r":1: the YAML is nested deeper than 32 levels"),
        ("act:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 40)) + "  " * 40 + "x\n", r"nested deeper than 32"),
        ("act: frelu\nrules: [" + ", ".join(["{layers: 1, act: relu}"] * 2000) + "]\n", r"over 5000 nodes"),
        ("act: frelu\n# " + "x" * 70_000 + "\n", r"70\d\d\d characters|over 65536 characters"),
        ("act: {name: frelu, kernel_size: " + "9" * 5000 + "}\n", r":1:\d+: malformed YAML: cannot read this int value"),
        ("act: !!timestamp garbage\n", r":1:\d+: malformed YAML: cannot read this timestamp value"),
        ("act: !!float abc\n", r"cannot read this float value"),
        ("act: *" + "u" * 5000 + "\n", r"malformed YAML: found undefined alias '?u+\.\.\."),
        ("act: !" + "t" * 5000 + " x\n", r"malformed YAML: .*\.\.\.; fix the YAML syntax there"),
    ],
    ids=["alias-bomb", "merge-bomb", "recursive-alias", "deep-flow", "deep-block", "too-many-nodes", "too-long",
         "huge-int", "bad-timestamp", "bad-float", "long-alias", "long-tag"],
)
def test_yaml_limits(text, pattern, tmp_path):
    import time

    for spec in (text, _write(tmp_path / "s.yaml", text)):
        t0 = time.process_time()
        with pytest.raises(SpecError, match=pattern) as e:
            load_spec(spec)
        assert time.process_time() - t0 < 2.0
        _one_short_line(e)


def test_yaml_anchors_within_limits_still_work(tmp_path):
    text = "act: &f {name: frelu, kernel_size: 5}\nrules:\n  - layers: 0-3\n    act: *f\n  - types: [C2f]\n    act: *f\n"
    s = load_spec(_write(tmp_path / "a.yaml", text))
    assert s.act == s.rules[0].act == s.rules[1].act == ActSpec("frelu", {"kernel_size": 5})


@pytest.mark.parametrize(
    "act, pattern",
    [
        ("frelu:kernel_size=.inf", r"--act: activation 'frelu': kernel_size must be an integer, got float inf"),
        ("frelu:kernel_size=true", r"kernel_size must be an integer, got bool True"),
        ("frelu:kernel_size=1.5", r"kernel_size must be an integer, got float 1.5"),
        ("frelu:kernel_size=2.0", r"kernel_size must be an integer, got float 2.0"),
        ("dy_relu_b:k=1.9", r"k must be an integer, got float 1.9"),
        ("frelu:kernel_size=501", r"kernel_size must be odd and in 1..31, got 501"),
        ("frelu:kernel_size=99999", r"kernel_size must be odd and in 1..31"),
        ("frelu:kernel_size=4", r"kernel_size must be odd"),
        ("frelu:kernel_size=" + "9" * 5000, r"--act: cannot read the value of 'kernel_size'"),
        ("meta_acon_c:reduction=100000000", r"reduction must be in 1..1024 and at most the block's channel count"),
        ("dy_relu_b:k=9", r"k must be in 1..8, got 9"),
        ("dy_relu_c:gamma=.inf", r"gamma=inf is not finite"),
        ("dy_relu_c:temperature=0", r"temperature must be in 0.001..10000"),
        ("leaky_relu:negative_slope=1e300", r"negative_slope=1e\+300 does not fit in float32"),
        ("leaky_relu:negative_slope=2e4", r"negative_slope must be in -10000..10000"),
        ("celu:alpha=1e-300", r"alpha=1e-300 rounds to 0 in float32"),
        ("celu:alpha=1e-9", r"alpha must be .*0 or at least 0.0001 in size"),
        ("leaky_relu:negative_slope=.nan", r"negative_slope=nan is not finite"),
        ("relu:channels=3", r"activation 'relu' takes no keyword 'channels'; valid keywords: none"),
        ("relu:name=x", r"activation 'relu' takes no keyword 'name'"),
        ("frelu:recompute=3", r"recompute must be true or false, got 3"),
        ("acon_c:init=" + "s" * 1000, r"init is 1000 characters long; at most 64"),
        ("acon_c:init=3", r"init must be text, got int 3"),
        ("frelu:kernel_size=3,kernel_size=5", r"'kernel_size' is given twice"),
        ("", r"--act: empty activation"),
        ("  ", r"--act: empty activation"),
        ("x" * 100_000, r"unknown activation 'x+\.\.\.x+': run 'yolo-act-swap --list'"),
        ("relu:x=" + "[" * 500, r"cannot read the value of 'x'"),
        ("relu:x=&a [*a]", r"cannot read the value of 'x'"),
    ],
)
def test_keyword_values_are_typed_and_bounded(act, pattern):
    import time

    t0 = time.process_time()
    with pytest.raises(SpecError, match=pattern) as e:
        load_spec(act=act)
    assert time.process_time() - t0 < 2.0  # nothing was built for the bad value
    _one_short_line(e)


@pytest.mark.parametrize(
    "act, kwargs",
    [
        ("leaky_relu:negative_slope=1e-3", {"negative_slope": 0.001}),  # YAML 1.1 reads 1e-3 as text
        ("leaky_relu:negative_slope=2", {"negative_slope": 2}),  # an int for a float is fine
        ("frelu:kernel_size=31", {"kernel_size": 31}),
        ("meta_acon_c:reduction=512", {"reduction": 512}),  # probed at 512 channels, not rejected at 64
        ("dy_relu_c:k=8,gamma=0.5,temperature=1e-3", {"k": 8, "gamma": 0.5, "temperature": 0.001}),
        ("frelu:recompute=off", {"recompute": False}),
    ],
)
def test_keyword_values_in_range_are_kept(act, kwargs):
    assert load_spec(act=act).act.kwargs == kwargs


def test_keyword_checks_in_files_name_the_line(tmp_path):
    p = _write(tmp_path / "k.yaml", "act:\n  name: frelu\n  kernel_size: 1e-3\n")
    with pytest.raises(ActivationArgError, match=rf"{p}:3: activation 'frelu': kernel_size must be an integer"):
        load_spec(p)
    p = _write(tmp_path / "r.yaml", "act: frelu\nrules:\n  - layers: 0\n    act:\n      name: dy_relu_c\n"
                                    "      gamma: .inf\n")  # fmt: skip
    with pytest.raises(ActivationArgError, match=rf"{p}:6: activation 'dy_relu_c': gamma=inf is not finite"):
        load_spec(p)


def test_reduction_is_checked_against_the_block_channels():
    from yolo_act_swap.activations import create_activation

    with pytest.raises(ActivationArgError, match=r"reduction must be .*at most the block's channel count, got 32 "
                                                 r"\(the block has 16 channels\)"):  # fmt: skip
        create_activation("meta_acon_c", 16, reduction=32)
    assert create_activation("meta_acon_c", 16, reduction=16).fc1.out_channels == 16
    assert create_activation("meta_acon_c", 8).fc1.out_channels == 16  # the default is never refused
    with pytest.raises(ActivationArgError, match="negative_slope must be a number, got str '0.2'"):
        create_activation("leaky_relu", None, negative_slope="0.2")  # text is not a number: nothing is coerced


def test_values_are_checked_before_the_factory_runs():
    import torch.nn as nn

    from yolo_act_swap.activations import Bounds, create_activation, temporary_activation

    calls = []

    def factory(channels, width: int = 3, scale: float = 1.0):
        calls.append((width, scale))
        return nn.Identity()

    with temporary_activation("tmp_bounded", factory, bounds={"width": Bounds(min=1, max=9)}):
        for bad in ({"width": 10**9}, {"width": True}, {"width": 2.5}, {"scale": 1e39}, {"scale": "1"}):
            with pytest.raises(ActivationArgError):
                load_spec({"act": {"name": "tmp_bounded", **bad}})
            with pytest.raises(ActivationArgError):
                create_activation("tmp_bounded", 8, **bad)
        assert calls == []
        create_activation("tmp_bounded", 8, width=9, scale=2)
        assert calls == [(9, 2)]
    with pytest.raises(TypeError, match="takes no such keyword"):
        with temporary_activation("tmp_bounded", factory, bounds={"nope": Bounds(max=1)}):
            pass


def test_every_numeric_keyword_of_a_builtin_has_bounds():
    from yolo_act_swap.activations import list_activations

    missing = [f"{i.name}.{k}" for i in list_activations() for k, d in i.defaults.items()
               if isinstance(d, (int, float)) and not isinstance(d, bool) and k not in i.bounds]  # fmt: skip
    assert missing == [], f"give these keywords Bounds where they are registered: {missing}"


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ("a" * 300, r"--act: unknown activation 'a+\.\.\.a+'"),
        ("a" * 300 + ".yaml", r"spec file 'a+\.\.\.a+\.yaml' not found"),
        ("~nosuchuser/x.yaml", r"spec file '~nosuchuser/x.yaml' not found"),
        ("x\x00y.yaml", r"spec file 'x\\x00y.yaml' not found"),
        ("~\x00", r"--act: unknown activation '~\\x00'"),
        ("~\x00/x.yaml", r"spec file '~\\x00/x.yaml' not found"),
        (Path("a" * 5000), r"spec file 'a+\.\.\.a+' not found"),
        ("x" * 70_000 + "\n", r"a spec of 70001 characters; a spec is at most 65536"),
    ],
)
def test_bad_names_and_sizes(spec, pattern):
    with pytest.raises(SpecError, match=pattern) as e:
        load_spec(spec)
    _one_short_line(e)


def test_bad_files(tmp_path):
    (tmp_path / ("d" * 200)).mkdir()
    big = _write(tmp_path / ("d" * 200) / "big.yaml", "act: frelu\n" + "#" * 70_000)
    with pytest.raises(SpecError, match=r"^\.\.\.d+/big\.yaml: over 65536 characters") as e:
        load_spec(big)
    _one_short_line(e)
    (tmp_path / "latin1.yaml").write_bytes(b"act: fr\xe9lu\n")
    with pytest.raises(SpecError, match=r"latin1\.yaml: not UTF-8 text \(byte 7\)"):
        load_spec(tmp_path / "latin1.yaml")
    (tmp_path / "nul.yaml").write_bytes(b"act: frelu\x00\n")
    with pytest.raises(SpecError, match=r"nul\.yaml: malformed YAML: unacceptable character"):
        load_spec(tmp_path / "nul.yaml")


def _deep_list(n: int) -> list:
    v: list = []
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ({"act": {"name": "relu", "x": list(range(100_000))}}, r"spec\.act\.x: activation 'relu' takes no keyword"),
        ({"act": list(range(100_000))}, r"got list \[0, 1, 2, 3, 4, 5, \.\.\.\]"),
        ({"act": "frelu", "rules": [{"layers": 10**5000, "act": "relu"}]}, r"layers: <int> is not a layer of any"),
        ({"act": "frelu", "rules": [{"layers": "1" * 5000, "act": "relu"}]}, r"layers: '1+\.\.\.1+' is not a layer"),
        ({"act": "frelu", "rules": [{"types": ["x-" * 50_000], "act": "relu"}]}, r"types: 'x-x-.*\.\.\..*-x-' is not a class name"),
        ({"act": "frelu", "x" * 100_000: 1}, r"^spec\['x+\.\.\.x+'\]: unknown key 'x+\.\.\.x+'"),
        ({"act": {"name": "frelu", "kernel_size": 10**5000}}, r"kernel_size must be odd and in 1\.\.31, got <int>"),
        ({"act": {"name": "leaky_relu", "negative_slope": 10**400}}, r"negative_slope=10+\.\.\.0+ does not fit in float32"),
        ({"act": {"name": 3}}, r"activation name and keywords must be strings, got name 3"),
        ({"act": {"name": "relu", 3: 1}}, r"got keyword 3"),
        ({"act": _deep_list(5000)}, r"act must be a name.*got list \[+\.\.\.\]+$"),
    ],
    ids=["long-kw-value", "long-act", "huge-layer", "long-layer-text", "long-type", "long-key", "huge-kernel",
         "huge-float", "name-int", "key-int", "deep-list"],
)
def test_python_values_are_bounded_in_messages(spec, pattern):
    with pytest.raises(SpecError, match=pattern) as e:
        load_spec(spec)
    _one_short_line(e)


def test_empty_act_is_an_error_not_the_default():
    with pytest.raises(SpecError, match=r"--act: empty activation in ''"):
        load_spec(act="")
    with pytest.raises(SpecError, match=r"--act: empty activation"):
        load_spec("frelu.yaml", act="")
