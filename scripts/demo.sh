#!/usr/bin/env bash
# The main job end to end on the embedded default, offline. Sets itself up on a fresh machine.
#   scripts/demo.sh [demo options]   e.g. scripts/demo.sh --out /tmp/demo
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" ""
cd "$ROOT"
exec resnet-deploy demo "$@"
