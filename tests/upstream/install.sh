#!/usr/bin/env bash
# Install the real upstream YOLOv5 and YOLOv7 code for tests/test_upstream.py, isolated from the main environment.
#
#   bash tests/upstream/install.sh            # into $YAS_UPSTREAM_DIR, default <repo>/.upstream (git-ignored)
#   PYTHON=/path/to/python bash tests/upstream/install.sh
#
# Layout (each folder is a pip --target folder; nothing is installed into the main environment):
#   yolov5/  PyPI yolov5==7.0.14 (the package `yolov5`)              PYTHONPATH=yolov5:deps
#   yolov7/  PyPI yolov7-wky-package (top-level models/ utils/ cfg/)   PYTHONPATH=yolov7:deps
#   deps/    what their model/loss/optimizer code imports that the main environment lacks:
#            pandas, seaborn, scipy, and setuptools<81 (the last one that ships pkg_resources, which YOLOv5 imports).
# Everything is installed with --no-deps, so torch, numpy, opencv, matplotlib, ultralytics... come from the main
# environment and are never downgraded. Idempotent: a folder whose stamp matches its requirements is left alone, and a
# folder is only replaced once its new copy is complete. Needs PyPI and nothing else.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${YAS_UPSTREAM_DIR:-$REPO/.upstream}"
PY="${PYTHON:-python}"

YOLOV5_REQ=("yolov5==7.0.14")
YOLOV7_REQ=("yolov7-wky-package==2024.9.23.1")
DEPS_REQ=("pandas>=2.2" "seaborn>=0.13" "scipy>=1.13" "setuptools>=65,<81")

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"  # absolute: the import check below runs from another directory
CHANGED=0
[[ "${1:-}" == "--check" ]] && CHANGED=1  # --check: run the import smoke check even when nothing changed

install_target() {  # install_target NAME REQ... : pip --target DEST/NAME, atomically, unless already up to date
    local name="$1"; shift
    local dir="$DEST/$name" want="$*"
    if [[ -f "$dir/.yas-installed" && "$(cat "$dir/.yas-installed")" == "$want" ]]; then
        echo "upstream: $name up to date ($want)"
        return
    fi
    echo "upstream: installing $name: $want"
    local tmp
    tmp="$(mktemp -d "$DEST/.$name.XXXXXX")"
    if ! "$PY" -m pip install --quiet --disable-pip-version-check --no-input --no-deps --no-compile \
            --target "$tmp" "$@"; then
        rm -rf "$tmp"
        echo "upstream: pip install of $name failed" >&2
        return 1
    fi
    printf '%s' "$want" > "$tmp/.yas-installed"
    chmod 755 "$tmp"
    CHANGED=1
    rm -rf "$dir"
    mv "$tmp" "$dir"
}

install_target deps "${DEPS_REQ[@]}"
install_target yolov5 "${YOLOV5_REQ[@]}"
install_target yolov7 "${YOLOV7_REQ[@]}"

if [[ "$CHANGED" == 0 ]]; then
    echo "upstream: ready in $DEST (unchanged; pass --check to re-run the import check)"
    exit 0
fi
# Smoke check, each in its own process: the two trees both rely on top-level names, so they never share one.
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
cd /  # so that no folder named models/ or utils/ in the current directory shadows the upstream ones
smoke() {  # smoke NAME CODE: import CODE with NAME's folder and deps/ on PYTHONPATH, or say why not
    local err
    if ! err="$(PYTHONPATH="$DEST/$1:$DEST/deps" "$PY" -c "$2" 2>&1 >/dev/null)"; then
        echo "$err" | tail -n 5 >&2
        echo "upstream: $1 is installed but does not import with $PY; check: PYTHONPATH=$DEST/$1:$DEST/deps $PY -c '$2'" >&2
        exit 1
    fi
}
smoke yolov5 "from yolov5.models.yolo import Model; from yolov5.utils.torch_utils import smart_optimizer"
smoke yolov7 "from models.yolo import Model; from models.common import RepConv, RepConv_OREPA; from utils.loss import ComputeLoss"
echo "upstream: ready in $DEST"
