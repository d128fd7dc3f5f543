"""Run one of yolov7-wky-package's scripts the way ``python script.py ARGS`` runs WongKinYiu/yolov7's.

The package moved each script's ``if __name__ == '__main__':`` body into ``main()`` (for its console entry points),
but its ``test()`` and ``detect()`` still read a module-level ``opt``, which is now a local of ``main()``: run as
``yolov7_test``/``yolov7_detect`` they fail with NameError. This runs ``main()`` with the parsed arguments also
stored as the module's ``opt``, as in the repository.

    python -m yolov7_main SCRIPTS_DIR train|test|detect ARGS...
"""

import argparse
import importlib
import sys

folder, name, *args = sys.argv[1:]
sys.path.insert(0, folder)  # the script's own folder first, as for `python script.py` (train.py imports test)
sys.argv = [f"{folder}/{name}.py", *args]
module = importlib.import_module(name)
_parse = argparse.ArgumentParser.parse_args


def _parse_and_keep(self, *a, **k):
    module.opt = _parse(self, *a, **k)
    return module.opt


argparse.ArgumentParser.parse_args = _parse_and_keep
module.main()
