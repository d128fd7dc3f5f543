"""``yolo-act-swap``: the command line.

    yolo-act-swap --cfg yolov7.yaml --act frelu           build, patch, verify, report (the default command)
    yolo-act-swap --list                                  the activation registry as a table
    yolo-act-swap train|val|sweep|plot|export-check ...   the other commands, each with its own --help

Exit codes: 0 success, 2 a user error (one line on stderr), 1 anything else. ``--verbose`` shows tracebacks.
"""

from __future__ import annotations

import gc
import importlib
import sys
import traceback

from ..errors import ActSwapError, TrainingInterrupted

# subcommand -> module with a ``main(argv) -> int``
SUBCOMMANDS = {
    "train": "yolo_act_swap.cli.train",
    "val": "yolo_act_swap.cli.val",
    "sweep": "yolo_act_swap.cli.sweep",
    "plot": "yolo_act_swap.cli.plot",
    "export-check": "yolo_act_swap.cli.export_check",
}
PATCH_COMMAND = "yolo_act_swap.cli.patch"  # the default command (no subcommand)


def run_guarded(fn, argv, verbose: bool | None = None) -> int:
    """Run ``fn(argv)``; turn user errors into one line and exit code 2, other failures into exit code 1."""
    if verbose is None:
        verbose = "--verbose" in argv or "-v" in argv
    try:
        return int(fn(argv) or 0)
    except ActSwapError as e:
        if verbose:
            traceback.print_exc()
        print(f"yolo-act-swap: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        hint = e.hint() if isinstance(e, TrainingInterrupted) else ""
        print(f"yolo-act-swap: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
        if verbose:
            traceback.print_exc()
        print(
            f"yolo-act-swap: internal error: {type(e).__name__}: {e} (rerun with --verbose for the traceback)",
            file=sys.stderr,
        )
        return 1


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point (``argv`` None: the process's own arguments, and the process is this command's)."""
    if argv is None:
        # The process is ours: move everything the imports made (torch, ultralytics: about 230,000 objects) out of the
        # cyclic collector's reach. Full collections, and the one at interpreter exit, walk every tracked object; on
        # yolov7 + frelu that was 0.37 s of a 2.66 s command. The DataLoader's forked workers then also leave those
        # pages shared (the collector no longer writes to them). Only cyclic garbage that the imports left behind is
        # kept; reference counting frees everything else as before. Not done for in-process calls (tests, scripts).
        gc.freeze()
    argv = list(sys.argv[1:] if argv is None else argv)
    name = SUBCOMMANDS[argv[0]] if argv and argv[0] in SUBCOMMANDS else PATCH_COMMAND
    if name != PATCH_COMMAND:
        argv = argv[1:]
    return run_guarded(importlib.import_module(name).main, argv)
