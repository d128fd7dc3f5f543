"""``yolo-act-swap export-check``: export the patched model to deployment formats, run it back, compare; INT8 mAP.

    yolo-act-swap export-check --cfg yolov8n.yaml --act frelu --act relu --formats onnx,openvino,ncnn --imgsz 160
    yolo-act-swap export-check --cfg yolov8n.yaml --act relu --int8 --data demo
    yolo-act-swap export-check --weights best.pt --int8 --int8-backend all --data my.yaml

One row per activation and format: exported / loads / runs, max |difference| from PyTorch, batch-1 median latency
and its ratio to the same model with SiLU in the same format, and the ops the activation became there. A format that
fails is a row with its reason; a format whose packages are missing is one line naming the extra to install.
With ``--int8``: FP32 and INT8 mAP50-95 per activation in OpenVINO (NNCF) and/or ONNX Runtime (static quantization).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .common import Parser, UsageError, add_verbose


def build_parser() -> argparse.ArgumentParser:
    """The export-check command's parser (model options as in the default command)."""
    from ..engine.formats import DEFAULT_FORMATS, FORMATS

    p = Parser(prog="yolo-act-swap export-check", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--cfg", help="model YAML: a path, a built-in name (yolov7-tiny.yaml) or an ultralytics name "
                   "(yolov8n.yaml); default as in the main command")  # fmt: skip
    p.add_argument("--weights", help="checkpoint to patch (ultralytics, or upstream with --repo)")
    p.add_argument("--act", action="append", help="activation, repeatable; without --act/--spec the model is exported with the activations it has")
    p.add_argument("--spec", help="swap spec YAML: a path or a name in configs/acts")
    p.add_argument("--repo", help="upstream YOLOv5/YOLOv7 checkout")
    p.add_argument("--nc", type=int, help="number of classes for a model built from --cfg (with --int8: the data's)")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                   help=f"comma-separated formats out of {', '.join(FORMATS)} (default: %(default)s)")  # fmt: skip
    p.add_argument("--imgsz", type=int, default=160, help="square input size of the export and checks (160)")
    p.add_argument("--repeats", type=int, default=20, help="timed batch-1 runs per model and format (20)")
    p.add_argument("--int8", action="store_true", help="also quantize to INT8 and compare mAP50-95 with FP32")
    p.add_argument("--int8-backend", default="openvino", metavar="openvino|onnxruntime|all",
                   help="--int8 runtime(s), comma-separated: openvino (NNCF PTQ, default), onnxruntime (static "
                   "quantization, also 'onnx'), or all")  # fmt: skip
    p.add_argument("--data", help="dataset for --int8 calibration and validation (default: the built-in demo)")
    p.add_argument("--out", help="keep the exported models in this folder (default: a temporary one)")
    add_verbose(p, "show tracebacks on errors and the exporters' logs")
    return p


def _formats(text: str) -> list[str]:
    from ..engine.formats import format_info

    out = []
    for name in filter(None, (s.strip() for s in text.split(","))):
        try:
            out.append(format_info(name).name)
        except KeyError as e:
            raise UsageError(f"--formats: {e.args[0]}") from None
    if not out:
        raise UsageError("--formats: give at least one format, e.g. onnx,openvino")
    return list(dict.fromkeys(out))


def _available(formats: list[str]) -> list[str]:
    """The formats whose packages are installed; one line for each of the others."""
    from ..engine.formats import DEPLOY_EXTRA, FORMATS, missing_packages

    keep = []
    for name in formats:
        missing = missing_packages(FORMATS[name])
        if missing:
            print(f"{FORMATS[name].title}: skipped, {', '.join(missing)} not installed: {DEPLOY_EXTRA}")
        else:
            keep.append(name)
    return keep


AS_IS = "as-is"  # the row label of the model with its own activations (no --act/--spec)


def _builder(args, nc):
    """Activation labels and ``build(label)`` -> a freshly built, patched model (the user's spec for the user's)."""
    from ..models import default_cfg, load_model
    from ..patch import patch_model
    from ..spec import load_spec, spec_file_or_error

    spec_file = spec_file_or_error(args.spec) if args.spec else None
    stem = Path(str(args.spec)).stem if args.spec else ""
    specs = {}
    for act in args.act or [None]:
        label = "+".join(x for x in (stem, act) if x) or AS_IS
        specs[label] = load_spec(spec_file, act=act) if act or spec_file else None  # fail fast, before building
    cfg = args.cfg if args.cfg or args.weights else default_cfg()

    def build(label: str):
        model = load_model(cfg, args.weights, repo=args.repo, nc=nc, verbose=False)
        spec = specs[label] if label in specs else load_spec(None, act=label)
        if spec is not None:  # AS_IS: nothing swapped (the one default rule of every command)
            patch_model(model, spec, imgsz=args.imgsz, verify=False, flops=False)
        return model

    return build, list(specs)


def main(argv: list[str]) -> int:
    """Run the export matrix (and the INT8 table with ``--int8``); print them."""
    args = build_parser().parse_args(argv)
    if args.imgsz < 32 or args.imgsz % 32:
        raise UsageError(f"--imgsz {args.imgsz}: give a positive multiple of 32, e.g. 160")
    if args.data and not args.int8:
        raise UsageError("--data is for --int8; add --int8 or drop --data")
    backends = _int8_backends(args.int8_backend)
    if not args.int8 and args.int8_backend != "openvino":
        raise UsageError("--int8-backend is for --int8; add --int8 or drop --int8-backend")
    formats = _available(_formats(args.formats))
    info = None
    if args.int8:
        from ..data import resolve_data

        info = resolve_data(args.data, splits=("train", "val"))
    nc = args.nc if args.nc or info is None or args.weights else info.nc
    build, labels = _builder(args, nc)
    with tempfile.TemporaryDirectory(prefix="yas-export-check-") as tmp:
        folder = Path(args.out) if args.out else Path(tmp)
        _report(build, labels, formats, folder, args, info, backends)
    return 0


def _int8_backends(text: str) -> list[str]:
    from ..engine.int8 import int8_backends

    try:
        return int8_backends(text)
    except KeyError as e:
        raise UsageError(f"--int8-backend: {e.args[0]}") from None


def _report(build, labels, formats, folder, args, info, backends) -> None:
    from ..engine.export import export_matrix, matrix_table

    rows = export_matrix(build, labels, formats, imgsz=args.imgsz, folder=folder / "matrix", repeats=args.repeats,
                         verbose=args.verbose)  # fmt: skip
    print(f"export-check: imgsz {args.imgsz}, batch 1, CPU; ms = median of {args.repeats} after warm-up; x SiLU = "
          "relative to the same model with SiLU in the same format")  # fmt: skip
    print(matrix_table(rows))
    if info is None:
        return
    from ..engine.formats import DEPLOY_EXTRA, FORMATS, missing_modules
    from ..engine.int8 import INT8_BACKENDS, int8_table

    for b in list(backends):
        missing = missing_modules(INT8_BACKENDS[b])
        if missing:
            print(f"INT8 {FORMATS[b].title}: skipped, {', '.join(missing)} not installed: {DEPLOY_EXTRA}")
            backends = [x for x in backends if x != b]
    if not backends:
        return
    checks = _int8_checks(build, labels, rows, folder, args, info, backends)
    how = {"openvino": "OpenVINO NNCF", "onnx": "ONNX Runtime static"}
    print(f"\nINT8 ({' and '.join(how[b] for b in backends)} post-training quantization, calibrated on "
          f"{info.source} train, validated on val; FP32 and INT8 in the same runtime):")  # fmt: skip
    print(int8_table(checks))


def _int8_checks(build, labels, rows, folder, args, info, backends) -> list:
    """One ``Int8Check`` per activation and backend, reusing the matrix's FP32 exports."""
    from ..engine.export import error_line
    from ..engine.int8 import Int8Check, int8_check

    fp32 = {(r.act, r.format): r.path for r in rows if r.runs}
    checks = []
    for label in labels:
        try:
            model = build(label)
        except Exception as e:  # noqa: BLE001 - reported as the row's reason
            checks += [Int8Check(label, b, reason=f"build: {error_line(e)}") for b in backends]
            continue
        for b in backends:
            checks.append(int8_check(model, label, info.yaml, args.imgsz, folder / "int8", backend=b,
                                     fp32_path=fp32.get((label, b)), verbose=args.verbose))  # fmt: skip
    return checks
