"""What a patch did: one row per swapped slot, totals, the verification verdict, and the table ``print`` shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .tables import format_table
from .verify import VerifyReport

_CONTAINERS = ("C2f", "C3", "C3k2", "C2PSA", "SPPF", "SPPCSPC", "Detect", "BottleneckCSP", "ELAN")  # one row each


@dataclass
class BlockReport:
    """One swapped slot: path, type, stage, layer, channels, old and new activation, parameters added."""

    path: str
    type: str
    stage: str
    layer: int | None
    channels: int | None
    old: str
    new: str
    params_added: int
    kind: str = "block"
    layer_type: str = ""


@dataclass
class PatchReport:
    """What ``patch_model`` did.

    Attributes:
        blocks (list[BlockReport]): the swapped slots, in module order.
        n_blocks (int): activated conv blocks found (swapped or not).
        n_bare (int): bare activations found (only searched for when a rule has ``bare: true``).
        params_before, params_after (int): parameter counts.
        gflops_before, gflops_after (float | None): GFLOPs at ``imgsz`` (ultralytics' thop profile), if computed.
        imgsz (int | tuple): the image size of the checks and the GFLOPs.
        verification (VerifyReport | None): the verification verdict; None with ``verify=False``.
        spec (list[SwapSpec]): the specs applied, in order.
        model (str): the model's class name (and YAML file).
        seconds (float): wall time of the patch (with verification).
        restored (list[str]): the activations whose state came back from ``patch_model(weights=...)``.
    """

    blocks: list = field(default_factory=list)
    n_blocks: int = 0
    n_bare: int = 0
    params_before: int = 0
    params_after: int = 0
    gflops_before: float | None = None
    gflops_after: float | None = None
    imgsz: Any = 640
    verification: VerifyReport | None = None
    spec: list = field(default_factory=list)
    model: str = ""
    seconds: float = 0.0
    restored: list = field(default_factory=list)

    @property
    def n_swapped(self) -> int:
        """Slots swapped."""
        return len(self.blocks)

    @property
    def params_added(self) -> int:
        """Parameters added by the swap."""
        return self.params_after - self.params_before

    def by_stage(self) -> dict[str, list[BlockReport]]:
        """Swapped slots grouped by stage, in stage order."""
        out: dict[str, list] = {}
        for b in self.blocks:
            out.setdefault(b.stage, []).append(b)
        order = {"backbone": 0, "neck": 1, "head": 2}
        return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], 3)))

    def table(self, per_block: bool = False) -> str:
        """The report as text: one row per layer (or per block), grouped by stage, then totals and the verdict."""
        if per_block or all(b.layer is None for b in self.blocks):
            head = ("stage", "block", "type", "ch", "activation", "+params")
            rows = [
                (b.stage, b.path, b.type, str(b.channels or "-"), f"{b.old} → {b.new}", f"{b.params_added:,}")
                for blocks in self.by_stage().values()
                for b in blocks
            ]
        else:
            head = ("stage", "layers", "module", "blocks", "channels", "activation", "+params")
            rows = []
            for stage, blocks in self.by_stage().items():
                groups: list[list] = []  # consecutive layers of one module type and one change merge into one row
                for b in blocks:
                    key = (b.layer_type, b.old, b.new)
                    last = groups[-1] if groups else None
                    if last and last[0] == key and (b.layer == last[1][-1].layer or last[0][0] not in _CONTAINERS):
                        last[1].append(b)
                    else:
                        groups.append([key, [b]])
                for key, bs in groups:
                    chs = sorted({b.channels for b in bs if b.channels})
                    ch = "-" if not chs else str(chs[0]) if len(chs) == 1 else f"{chs[0]}-{chs[-1]}"
                    lo, hi = bs[0].layer, bs[-1].layer
                    rows.append((stage, f"{lo}" if lo == hi else f"{lo}-{hi}", key[0], str(len(bs)), ch,
                                 f"{key[1]} → {key[2]}", f"{sum(b.params_added for b in bs):,}"))  # fmt: skip
        lines = format_table(head, rows, right={1, 3, 4, 6} if len(head) == 7 else {3, 5}, group_first=True)
        return "\n".join([*lines, *self.summary_lines()])

    def summary_lines(self) -> list[str]:
        """Totals and verdict lines."""
        stages = ", ".join(f"{k} {len(v)}" for k, v in self.by_stage().items())
        what = f"{self.n_swapped} of {self.n_blocks} activated conv blocks"
        if self.n_bare:
            what = f"{self.n_swapped} of {self.n_blocks} activated conv blocks + {self.n_bare} bare activations"
        lines = [f"swapped {what}" + (f" ({stages})" if stages else "")]
        pct = 100 * self.params_added / self.params_before if self.params_before else 0.0
        p = f"params {self.params_before:,} → {self.params_after:,} ({self.params_added:+,}, {pct:+.2f}%)"
        if self.gflops_before is not None and self.gflops_after is not None:
            sz = self.imgsz if isinstance(self.imgsz, int) else "x".join(map(str, self.imgsz))
            p += f"; GFLOPs {self.gflops_before:.2f} → {self.gflops_after:.2f} at {sz}"
        lines.append(p)
        if self.restored:
            lines.append(f"restored the trained state of {len(self.restored)} activations from the checkpoint")
        v = self.verification
        lines.append(f"verification: {v}" if v is not None else "verification: skipped (verify=False)")
        return lines

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        """Plain data (for JSON logs)."""
        return {
            "model": self.model,
            "spec": [s.to_dict() for s in self.spec],
            "n_blocks": self.n_blocks,
            "n_swapped": self.n_swapped,
            "n_bare": self.n_bare,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "gflops_before": self.gflops_before,
            "gflops_after": self.gflops_after,
            "imgsz": self.imgsz,
            "verified": None if self.verification is None else self.verification.ok,
            "verification": None if self.verification is None else str(self.verification),
            "blocks": [b.__dict__.copy() for b in self.blocks],
            "seconds": round(self.seconds, 3),
            "restored": list(self.restored),
        }
