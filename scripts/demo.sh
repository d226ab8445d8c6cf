#!/usr/bin/env bash
# The main job end to end on the embedded default, offline. Sets itself up on a fresh machine.
#   scripts/demo.sh [demo options]   e.g. scripts/demo.sh --out /tmp/demo
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" "train"
cd "$ROOT"
# Engines: TensorRT-RTX builds them ahead of time even without a GPU. Tried once; where its wheel
# does not exist (e.g. Jetson, which has full TensorRT from JetPack) the demo goes on without it.
if [ ! -e "$VENV/.tensorrt-rtx-tried" ] && ! python -c "import tensorrt_rtx" 2>/dev/null; then
  echo "[setup] installing tensorrt-rtx for the engine step (about 20 s)"
  python -m pip install -q "tensorrt-rtx>=1.4" >/dev/null 2>&1 \
    || echo "[setup] tensorrt-rtx is not available for this machine; the demo will skip engines"
  touch "$VENV/.tensorrt-rtx-tried"
fi
exec resnet-deploy demo "$@"
