"""Real upstream training runs for tests/test_upstream_train.py: upstream's train.py with the docs' snippet applied to a
copy, then fine-tuning from its checkpoint, ``--resume`` from its epoch-0 checkpoint, upstream's val.py/test.py and
detect.py on the result; every script in its own subprocess with one upstream tree on PYTHONPATH.

``Chain(family, act, root).run()`` does it all in ``root`` and returns a dict of what each step recorded (the probe's
JSON, return codes, log tails, timings); the test file asserts on it.

By hand (from the repository root, after ``bash tests/upstream/install.sh``)::

    PYTHONPATH=$PWD python tests/upstream/runs.py yolov5 acon_c /tmp/yas-v5
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
UPSTREAM = Path(os.environ.get("YAS_UPSTREAM_DIR") or REPO / ".upstream").resolve()
sys.path.insert(0, str(HERE))
from snippet import apply_snippet

PROBE = '    __import__("probe").attach(model, optimizer, weights)  # test probe, not part of the snippet'
IMGSZ, BATCH, N_TRAIN, N_VAL = 128, 4, 16, 4
# Upstream warms the lr up from 0 over at least 100 (YOLOv5) / 1000 (YOLOv7) iterations, and these runs have 8: with
# upstream's lr0 (0.01) a small gradient moves some ACON beta by less than float32 resolves, so the runs use lr0 0.1.
LR0 = 0.1
FAMILIES = {
    "yolov5": {
        "scripts": UPSTREAM / "yolov5" / "yolov5",
        "cfg": UPSTREAM / "yolov5/yolov5/models/yolov5n.yaml",
        "hyp": UPSTREAM / "yolov5/yolov5/data/hyps/hyp.scratch-low.yaml",
        "eval": "val.py",
        "epoch0": "epoch0.pt",
        "size": ["--imgsz", str(IMGSZ)],
        "eval_size": ["--imgsz", str(IMGSZ)],
        "extra": ["--save-period", "1", "--exist-ok"],
        "main": False,
    },
    "yolov7": {
        "scripts": UPSTREAM / "yolov7" / "python_scripts",
        "cfg": UPSTREAM / "yolov7/cfg/training/yolov7-tiny.yaml",
        "hyp": UPSTREAM / "yolov7/data/hyp.scratch.tiny.yaml",
        "eval": "test.py",
        "epoch0": "epoch_000.pt",
        "size": ["--img-size", str(IMGSZ), str(IMGSZ)],  # train, test
        "eval_size": ["--img-size", str(IMGSZ)],
        "extra": ["--exist-ok"],
        "main": True,
    },
}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def demo_data(root: Path) -> Path:
    """A small demo dataset and the data YAML both upstream scripts read (absolute train/val, nc, names list)."""
    from yolo_act_swap.data.demo import demo_dataset

    src = yaml.safe_load(demo_dataset(root / "cache", train=N_TRAIN, val=N_VAL, imgsz=IMGSZ).read_text())
    base = Path(src["path"])
    names = [src["names"][k] for k in sorted(src["names"])]
    doc = {"train": str(base / src["train"]), "val": str(base / src["val"]), "nc": len(names), "names": names}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def font_dir(root: Path) -> Path:
    """YOLOV5_CONFIG_DIR with a local Arial.ttf (matplotlib's DejaVuSans), so that YOLOv5 downloads no font."""
    import matplotlib

    d = root / "yolov5-config"
    d.mkdir(exist_ok=True)
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (d / name).exists():
            shutil.copy(ttf, d / name)
    return d


class Chain:
    """Train from --cfg (2 epochs), fine-tune from last.pt (1 epoch), resume from the epoch-0 checkpoint, evaluate,
    detect, for one family and one activation, in ``root``."""

    def __init__(self, family: str, act: str, root: Path, data: Path, timeout: int = 600):
        self.family, self.act, self.root, self.data, self.timeout = family, act, Path(root), data, timeout
        self.f = FAMILIES[family]
        self.scripts = self.root / "scripts"
        self.steps: dict = {}

    # --- setup
    def prepare(self) -> None:
        """Copy the upstream scripts; apply the snippet (and the probe line) to train.py."""
        self.scripts.mkdir(parents=True)
        for name in ("train.py", self.f["eval"], "detect.py"):  # they import the rest from the upstream tree
            shutil.copy(self.f["scripts"] / name, self.scripts / name)
        text, where = apply_snippet((self.scripts / "train.py").read_text(), self.family, self.act)
        lines = text.splitlines()
        lines.insert(where["3"] + 1, PROBE)
        (self.scripts / "train.py").write_text("\n".join(lines) + "\n")
        shutil.copy(HERE / "probe.py", self.scripts / "probe.py")

    def env(self, probe: str = "") -> dict:
        env = dict(os.environ, YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", MPLBACKEND="Agg", OMP_NUM_THREADS="1",
                   WANDB_MODE="disabled", COMET_MODE="disabled", CUDA_VISIBLE_DEVICES="",
                   TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", YOLOV5_CONFIG_DIR=str(font_dir(self.root)))  # fmt: skip
        paths = [HERE / "shims", UPSTREAM / self.family, UPSTREAM / "deps", REPO]
        env["PYTHONPATH"] = os.pathsep.join(map(str, paths))
        if probe:
            env["YAS_PROBE_OUT"] = str(self.root / f"{probe}.probe.json")
        return env

    def script(self, name: str, args: list, probe: str = "") -> dict:
        """Run one upstream script; record rc, seconds, the log's tail and the probe's JSON."""
        t0, cpu0 = time.perf_counter(), _children_cpu()
        log = self.root / f"{probe or Path(name).stem}.log"
        cmd = [sys.executable, str(self.scripts / name), *map(str, args)]
        if self.f["main"]:  # the packaged YOLOv7 scripts: main() and no __main__ guard (shims/yolov7_main.py)
            cmd = [sys.executable, "-m", "yolov7_main", str(self.scripts), Path(name).stem, *map(str, args)]
        with open(log, "w") as fh:
            rc = subprocess.run(cmd, cwd=self.root, env=self.env(probe), stdout=fh, stderr=subprocess.STDOUT,
                                timeout=self.timeout, check=False).returncode  # fmt: skip
        step = {"cmd": " ".join([name, *map(str, args)]), "rc": rc, "s": round(time.perf_counter() - t0, 1)}
        step["cpu_s"] = round(_children_cpu() - cpu0, 1)  # (only meaningful when chains run one at a time)
        step["log"] = log.read_text(errors="replace")[-3000:]
        p = self.root / f"{probe}.probe.json"
        if probe and p.is_file():
            step["probe"] = json.loads(p.read_text())
        return step

    def hyp(self) -> Path:
        """Upstream's hyperparameters with ``LR0``."""
        path = self.root / "hyp.yaml"
        if not path.is_file():
            hyp = yaml.safe_load(Path(self.f["hyp"]).read_text())
            path.write_text(yaml.safe_dump({**hyp, "lr0": LR0}, sort_keys=False))
        return path

    def train(self, tag: str, args: list) -> dict:
        common = ["--data", self.data, "--hyp", self.hyp(), "--batch-size", BATCH, *self.f["size"],
                  "--workers", 0, "--device", "cpu", "--project", self.root / "runs", *self.f["extra"]]  # fmt: skip
        self.steps[tag] = self.script("train.py", [*args, *common], probe=tag)
        return self.steps[tag]

    # --- the chain
    def run(self) -> dict:
        self.prepare()
        run = self.root / "runs"
        first = self.train("scratch", ["--cfg", self.f["cfg"], "--weights", "", "--epochs", 2, "--name", "scratch"])
        last, epoch0 = run / "scratch/weights/last.pt", run / "scratch/weights" / self.f["epoch0"]
        if first["rc"] == 0:
            self.train("finetune", ["--weights", last, "--epochs", 1, "--name", "finetune"])
            self.steps["epoch0_saved"] = epoch0.is_file()
            if epoch0.is_file():  # an interrupted run as --resume sees it: trained epoch 0 of 2
                self.steps["resume"] = self.script("train.py", ["--resume", epoch0], probe="resume")
            best, size, dev = run / "scratch/weights/best.pt", self.f["eval_size"], ["--device", "cpu"]
            out = ["--project", run, "--exist-ok"]
            self.steps["eval"] = self.script(self.f["eval"], ["--data", self.data, "--weights", best, *size,
                                                              "--batch-size", BATCH, *dev, *out, "--name", "eval"])
            images = Path(yaml.safe_load(self.data.read_text())["val"])
            self.steps["detect"] = self.script("detect.py", ["--weights", best, "--source", images, *size, *dev, *out,
                                                             "--name", "detect"])  # fmt: skip
            self.steps["detect"]["n_saved"] = len(list((run / "detect").glob("*.jpg")))
        return self.steps


def main(argv=None) -> int:
    family, act, root = (argv or sys.argv[1:])[:3]
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    steps = Chain(family, act, root, demo_data(root)).run()
    summary = {k: ({a: b for a, b in v.items() if a != "log"} if isinstance(v, dict) else v) for k, v in steps.items()}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
