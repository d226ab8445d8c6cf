#!/usr/bin/env bash
# The test suite. Sets itself up on a fresh machine (.venv with the [dev] extra).
#   scripts/test.sh [pytest options]   e.g. scripts/test.sh -k export
set -euo pipefail
# The serving environment first (its own: PyTriton requires numpy<2); the serving tests start
# `resnet-deploy serve` from it and skip where it is missing
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export RESNET_DEPLOY_SERVE_PYTHON="${RESNET_DEPLOY_SERVE_VENV:-$here/../.venv-serve}/bin/python"
RESNET_DEPLOY_VENV="${RESNET_DEPLOY_SERVE_VENV:-$here/../.venv-serve}" bash -c 'source "$1/_venv.sh" serve' _ "$here"
source "$here/_venv.sh" "dev"
cd "$ROOT"
ruff check resnet_deploy tests scripts
ruff format --check --quiet resnet_deploy tests scripts || { echo "run: ruff format resnet_deploy tests scripts"; exit 1; }
# the import layers in pyproject.toml [tool.importlinter]; its banner only when a contract breaks
layers="$(lint-imports --no-cache 2>&1)" || { echo "$layers"; exit 1; }
echo "import layers: ${layers##*$'\n'}"
MYPYPATH="$VENV/typings" mypy  # typings: tensorrt-stubs, fixed by scripts/trt_typings.py
exec python -m pytest "$@"
