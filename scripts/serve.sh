#!/usr/bin/env bash
# Serve an artifact on a real Triton server. Sets itself up on a fresh machine: .venv-serve with the
# [serve] extra (PyTriton requires numpy<2, so serving has its own environment, without torch).
#   scripts/serve.sh MODEL [serve options]   e.g. scripts/serve.sh model.onnx --http-port 9000
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export RESNET_DEPLOY_VENV="${RESNET_DEPLOY_SERVE_VENV:-$ROOT/.venv-serve}"
source "$ROOT/scripts/_venv.sh" "serve"
exec resnet-deploy serve "$@"
