"""Swap specs: every accepted form, the round trip through to_dict, and every error with its message."""

from pathlib import Path

import pytest
import yaml

from yolo_act_swap import ActivationArgError, SpecError, UnknownActivation, load_spec
from yolo_act_swap.spec import ActSpec, Rule, SwapSpec, builtin_specs, parse_act_string, split_top
from yolo_act_swap.io import configs_dir


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
