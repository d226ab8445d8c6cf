# Sourced by demo.sh and test.sh: make .venv (if missing) and install resnet-deploy into it.
# Re-runs skip the install while pyproject.toml is unchanged (a stamp holds its hash).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RESNET_DEPLOY_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.resnet-deploy-install"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/_venv.sh" | sha256sum | cut -d' ' -f1) ${EXTRAS}"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[setup] installing resnet-deploy${EXTRAS:+[$EXTRAS]} into $VENV (first run: about a minute)"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  log="$(mktemp)"
  # Pinned torch: these wheels lie on this workplace's disk; pyproject keeps a range for users.
  # dev: tensorrt-stubs lets mypy check the full-TensorRT code; --no-deps because its dependency
  # is NVIDIA's placeholder package, which cannot install here.
  { "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1 \
    && "$VENV/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}" \
    && { [ "$EXTRAS" != "dev" ] || { "$VENV/bin/python" -m pip install -q --no-deps "tensorrt-stubs==10.13.0.35.1" \
         && "$VENV/bin/python" "$ROOT/scripts/trt_typings.py" "$VENV/typings"; }; }; } \
    >"$log" 2>&1 \
    || { grep -v "is ignored: it is neither" "$log" >&2; echo "[setup] pip install failed" >&2; exit 1; }
  rm -f "$log"
  "$VENV/bin/python" -c "import resnet_deploy, torch, onnxruntime" \
    || { echo "[setup] install failed; see the pip output above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
