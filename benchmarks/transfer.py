"""Move a trained SiLU detector to ReLU: abrupt swap, abrupt swap + BN recalibration, blended transition, and ReLU
trained from scratch, on the built-in demo data (CPU).

1. Train a SiLU yolov8n for ``E`` epochs (``--pretrain``).
2. From its ``last.pt``, fine-tune to ReLU for ``F`` epochs (``--finetune``) in three ways with the same schedule
   (optimizer, learning rate, no warmup, augmentation, seed): ``abrupt`` (``--act relu``), ``abrupt+BN``
   (``--act relu --recalibrate-bn N``) and ``blend`` (``--act relu --transition T``).
3. As a reference, train ReLU from scratch for ``E + F`` epochs with the pretraining schedule.

Reported: mAP50-95 at the moment of the swap (the model each fine-tune starts from, validated before its first
batch: the abrupt swap, the recalibrated one, the blend at a = 0) and after each fine-tuning epoch (each run's own
per-epoch validation of its EMA); for ``scratch``, row k is its epoch ``E + k``. The table is printed and written as
``transfer.md``, the plot as ``transfer.png``, next to the runs in ``--out``.

Usage:
    python benchmarks/transfer.py                                  # E=8, F=4, 128 px: 15-25 min on 2 busy cores
    python benchmarks/transfer.py --pretrain 3 --finetune 2 --imgsz 96 --out /tmp/transfer   # a quick look
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # never download anything
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.activations import machine
from yolo_act_swap.checkpoints import save_checkpoint
from yolo_act_swap.engine.run import prepare_run
from yolo_act_swap.engine.trainer import ActSwapTrainer
from yolo_act_swap.engine.validator import val
from yolo_act_swap.io import atomic_write_text, read_results_csv
from yolo_act_swap.tables import markdown_table

KEY = "metrics/mAP50-95(B)"
VARIANTS = ("abrupt", "abrupt+BN", "blend", "scratch")


def _train(out: Path, name: str, save_start: bool = False, **kw) -> tuple[Path, float | None]:
    """One run; returns its folder and (with ``save_start``) the mAP50-95 of the model it starts from."""
    args = prepare_run(project=str(out), name=name, exist_ok=True, **kw)
    trainer = ActSwapTrainer(overrides=args)
    start = Path(args["save_dir"]) / "start.pt"
    if save_start:  # after the trainer's own on_train_start callbacks (BN recalibration), before the first batch
        trainer.add_callback("on_train_start", lambda t: save_checkpoint(copy.deepcopy(t.ema.ema), start,
                                                                         imgsz=kw["imgsz"]))
    trainer.train()
    m0 = None
    if save_start:
        m0 = val(start, imgsz=kw["imgsz"], batch=2 * kw["batch"], device="cpu")["metrics"]["mAP50-95"]
    return Path(args["save_dir"]), m0


def _curve(folder: Path) -> list[float]:
    return [r[KEY] for r in read_results_csv(folder / "results.csv")]


def run(a) -> dict:
    common = dict(imgsz=a.imgsz, batch=a.batch, device="cpu", workers=a.workers, plots=False, optimizer="AdamW",
                  seed=0, deterministic=True, fraction=a.fraction)
    scratch_sched = dict(lr0=a.lr0, warmup_epochs=1, **common)
    finetune_sched = dict(lr0=a.lr0_finetune, warmup_epochs=0, **common)
    t0 = time.time()
    silu, _ = _train(a.out, "silu", cfg="yolov8n.yaml", epochs=a.pretrain, **scratch_sched)
    weights = str(silu / "weights" / "last.pt")
    silu_map = _curve(silu)[-1]
    print(f"SiLU after {a.pretrain} epochs: mAP50-95 {silu_map:.4f} ({time.time() - t0:.0f} s)", flush=True)
    table = {}
    for variant, extra in (("abrupt", {}), ("abrupt+BN", {"recalibrate_bn": a.recalibrate_bn}),
                           ("blend", {"transition": a.transition})):
        folder, m0 = _train(a.out, variant.replace("+", "_"), save_start=True, weights=weights, act="relu",
                            epochs=a.finetune, **extra, **finetune_sched)
        table[variant] = [m0, *_curve(folder)]
        print(f"{variant}: {['%.4f' % v for v in table[variant]]} ({time.time() - t0:.0f} s)", flush=True)
    scratch, _ = _train(a.out, "scratch", cfg="yolov8n.yaml", act="relu", epochs=a.pretrain + a.finetune,
                        **scratch_sched)
    table["scratch"] = _curve(scratch)[a.pretrain - 1:]
    return {"silu": silu_map, "table": table, "seconds": time.time() - t0}


def report(a, res: dict) -> str:
    rows = []
    for k in range(a.finetune + 1):
        rows.append([f"{k}" + (" (swap)" if k == 0 else ""),
                     *(f"{res['table'][v][k]:.4f}" if k < len(res["table"][v]) else "-" for v in VARIANTS)])
    head = ["fine-tuning epoch", *VARIANTS]
    text = (f"SiLU yolov8n after {a.pretrain} epochs: mAP50-95 {res['silu']:.4f}. Fine-tuning to ReLU for "
            f"{a.finetune} epochs at {a.imgsz} px, batch {a.batch}, AdamW lr0={a.lr0_finetune}, no warmup; "
            f"blend: --transition {a.transition}; abrupt+BN: --recalibrate-bn {a.recalibrate_bn}; scratch: ReLU "
            f"from scratch, row k = its epoch {a.pretrain}+k. {res['seconds'] / 60:.1f} min on "
            f"{machine(torch.device('cpu'), torch.get_num_threads())}.\n\n")
    return text + "\n".join(markdown_table(head, rows, right=range(1, len(head)))) + "\n"


def plot(a, res: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for v in VARIANTS:
        ys = res["table"][v]
        ax.plot(range(len(ys)), ys, marker="o", ms=4, label=v + (f" (epochs {a.pretrain}+k)" if v == "scratch" else ""))
    ax.axhline(res["silu"], color="black", lw=1, ls="--", label=f"SiLU after {a.pretrain} epochs")
    ax.set_xlabel("fine-tuning epoch (0: at the swap)")
    ax.set_ylabel("mAP50-95 (demo val)")
    ax.set_title("SiLU -> ReLU: abrupt swap, BN recalibration, blended transition")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrain", type=int, default=8, help="SiLU epochs (E)")
    p.add_argument("--finetune", type=int, default=4, help="fine-tuning epochs (F)")
    p.add_argument("--transition", default="2", help="blend ramp: epochs or Nit")
    p.add_argument("--recalibrate-bn", type=int, default=25, help="batches for BN recalibration")
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr0", type=float, default=0.003, help="AdamW lr of the SiLU and scratch runs")
    p.add_argument("--lr0-finetune", type=float, default=0.001, help="AdamW lr of the fine-tunes")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of the 200 training images")
    p.add_argument("--out", type=Path, default=Path("runs/benchmarks/transfer"))
    a = p.parse_args(argv)
    a.out = a.out.resolve()
    res = run(a)
    text = report(a, res)
    atomic_write_text(a.out / "transfer.md", text)
    print("\n" + text + f"\nplot: {plot(a, res, a.out / 'transfer.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
