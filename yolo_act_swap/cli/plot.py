"""``yolo-act-swap plot``: draw activation functions and their derivatives on one figure.

    yolo-act-swap plot --acts silu,relu,mish,frelu,acon_c --out acts.png --range -4 4
"""

from __future__ import annotations

import argparse

from ..plots import plot_activations
from ..sweep.plan import acts_flag, split_acts
from .common import Parser, add_verbose

DEFAULT_PLOT_ACTS = "silu,relu,leaky_relu:negative_slope=0.1,mish,gelu,hard_swish,frelu,acon_c"


def build_parser() -> argparse.ArgumentParser:
    """The ``yolo-act-swap plot`` argument parser."""
    p = Parser(
        prog="yolo-act-swap plot",
        description="Draw activation functions and their derivatives on one figure (two panels). Channel-aware "
        "activations (frelu, acon_c, meta_acon_c, dy_relu_*) are drawn as built fresh, marked 'at init'.",
    )
    p.add_argument("--acts", nargs="+", default=[DEFAULT_PLOT_ACTS],
                   help="comma list of registered names or inline forms (leaky_relu:negative_slope=0.1)")
    p.add_argument("--out", default="acts.png", help="output PNG (acts.png)")
    p.add_argument("--range", nargs=2, type=float, default=(-4.0, 4.0), metavar=("LO", "HI"), help="x range (-4 4)")
    p.add_argument("--points", type=int, default=401, help="samples along x (401)")
    add_verbose(p)
    return p


def main(argv: list[str]) -> int:
    """``yolo-act-swap plot``: write the activation figure and print its path."""
    parser = build_parser()
    args = parser.parse_args(argv)
    lo, hi = args.range
    if not lo < hi:
        parser.error(f"--range {lo:g} {hi:g}: LO must be smaller than HI, e.g. --range -4 4")
    if args.points < 2:
        parser.error(f"--points {args.points}: need at least 2 samples, e.g. --points 401")
    tokens = split_acts(args.acts)
    if not tokens:
        parser.error("--acts is empty: name at least one activation, e.g. --acts silu,relu")
    with acts_flag():
        out = plot_activations(tokens, args.out, lo, hi, args.points)
    print(f"wrote {out} ({len(tokens)} activations on [{lo:g}, {hi:g}])")
    return 0
