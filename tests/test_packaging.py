"""The built-in configs reach wheel users too, and the console script is declared."""

import subprocess
import sys
import zipfile
from pathlib import Path

from yolo_act_swap.io import configs_dir

ROOT = Path(__file__).resolve().parents[1]


def test_configs_dir_has_builtins():
    d = configs_dir()
    assert (d / "models" / "yolov7.yaml").is_file()
    assert (d / "models" / "yolov7-tiny.yaml").is_file()
    assert (d / "data" / "demo.yaml").is_file()
    assert any((d / "acts").glob("*.yaml"))


def test_wheel_ships_configs_and_entry_point(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("yolo_act_swap-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    tracked = {p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml")}
    assert tracked, "no configs found in the source tree"
    for rel in tracked:
        assert f"yolo_act_swap/configs/{rel}" in names, f"configs/{rel} is missing from the wheel"
    assert "yolo-act-swap = yolo_act_swap.cli:main" in entry_points
    assert "yolo_act_swap/activations/kernels.c" in names, "the fused kernels' source is missing from the wheel"
