"""What a first-time user meets: one default rule, saved YAMLs that rebuild exactly, configs found from any folder,
the swap confirmed in training logs, Ctrl-C naming the resume command, stale act_swap records."""

import os
import subprocess
import sys

import pytest
import torch

from yolo_act_swap.cli import main, run_guarded
from yolo_act_swap.errors import TrainingInterrupted

pytestmark = pytest.mark.usefixtures("one_thread")


def test_saved_yaml_rebuilds_exactly_that_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a pip user is never in the repository root: configs/acts/... still resolves
    assert main(["--cfg", "yolov8n.yaml", "--spec", "configs/acts/backbone-frelu-head-silu.yaml", "--imgsz", "64",
                 "--no-verify", "--save-yaml", "m.yaml"]) == 0
    capsys.readouterr()
    assert main(["--cfg", "m.yaml", "--imgsz", "64", "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "nothing swapped" in out and "(rebuilt from its record)" in out
    assert "27 frelu" in out and "30 silu" in out  # backbone frelu, neck and head silu: not frelu everywhere


def test_builtin_names_and_repo_relative_paths_resolve_from_any_folder(tmp_path, monkeypatch):
    from yolo_act_swap.io import find_config

    monkeypatch.chdir(tmp_path)
    for name in ("backbone-frelu-head-silu", "backbone-frelu-head-silu.yaml", "configs/acts/backbone-frelu-head-silu.yaml"):
        assert find_config(name, "acts").name == "backbone-frelu-head-silu.yaml"
    assert find_config("configs/models/yolov7-tiny.yaml", "models").name == "yolov7-tiny.yaml"
    (tmp_path / "configs" / "acts").mkdir(parents=True)
    own = tmp_path / "configs" / "acts" / "backbone-frelu-head-silu.yaml"
    own.write_text("act: relu\\n")
    assert find_config("configs/acts/backbone-frelu-head-silu.yaml", "acts") == own.relative_to(tmp_path)  # cwd first
    assert find_config("x" * 300, "acts") is None and find_config("~nosuchuser/x.yaml", "acts") is None


def test_patched_build_logs_the_swap_and_the_patched_summary():
    code = ("from yolo_act_swap.models import build_detection_model, load_model_cfg\n"
            "d = load_model_cfg('yolov8n.yaml'); d['act_swap'] = {'act': 'frelu'}\n"
            "build_detection_model(d, verbose=True)\n")
    env = {**os.environ, "YOLO_VERBOSE": "true"}  # the suite runs ultralytics quiet; a user sees its log
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    assert "act_swap: frelu: swapped 57 of 57 activated conv blocks" in text
    assert "3,215,456 parameters" in text and "3,157,200 parameters" not in text  # the patched count only


def test_ctrl_c_names_the_resume_command(tmp_path, capsys):
    last = tmp_path / "weights" / "last.pt"

    def interrupted(_argv):
        raise TrainingInterrupted(last)

    assert run_guarded(interrupted, []) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"yolo-act-swap: interrupted; resume with: yolo-act-swap train --resume {last}"

    def early(_argv):
        raise TrainingInterrupted(None)

    assert run_guarded(early, []) == 130
    assert "nothing to resume" in capsys.readouterr().err


def test_stale_act_swap_record_is_warned_and_dropped(tmp_path, capfd):
    from ultralytics.nn.tasks import DetectionModel

    from yolo_act_swap.checkpoints import save_checkpoint
    from yolo_act_swap.models import load_model

    m = DetectionModel("yolov8n.yaml", verbose=False)  # what stock YOLO(ckpt).train() leaves: SiLU, record kept
    m.yaml["act_swap"] = {"act": "frelu"}
    save_checkpoint(m, tmp_path / "stale.pt")
    capfd.readouterr()
    loaded = load_model(weights=tmp_path / "stale.pt")
    out = capfd.readouterr()
    lines = [x for x in (out.out + out.err).splitlines() if "act_swap" in x]
    assert len(lines) == 1 and "record is ignored" in lines[0] and "ActSwapTrainer" in lines[0]
    assert "act_swap" not in loaded.yaml


def test_plot_marks_coinciding_curves():
    from yolo_act_swap.plots import _same_curve

    x = torch.linspace(-4, 4, 101)
    assert _same_curve(torch.relu(x), torch.relu(x).clone()) and not _same_curve(torch.relu(x), torch.nn.functional.silu(x))


def test_help_states_the_default_rule(capsys):
    for argv in (["--help"], ["train", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "nothing is swapped" in " ".join(capsys.readouterr().out.split())
