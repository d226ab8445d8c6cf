# Sourced by demo.sh and test.sh: make .venv (if missing) and install resnet-deploy into it.
#   source _venv.sh EXTRAS   EXTRAS: "train" (demo.sh), "dev" (test.sh), "serve" (serve.sh: no torch,
#                            numpy<2 for PyTriton, so in its own venv), or a comma-separated list
# A stamp in the venv holds a hash of pyproject.toml and this file, then the extras installed so
# far. Re-runs with the same hash install nothing when the wanted extras are among those ([dev]
# holds every other PyPI extra, so demo.sh's "train" is met by test.sh's "dev"), and only the
# missing extras otherwise: alternating demo.sh and test.sh installs once. A changed hash reinstalls.
# PYTHON picks the interpreter that creates the venv; RESNET_DEPLOY_VENV picks the venv.
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
# $ROOT too: a venv shared by two checkouts (RESNET_DEPLOY_VENV) must run this checkout's code
want_hash="$({ echo "$ROOT"; cat "$ROOT/pyproject.toml" "$ROOT/scripts/_venv.sh"; } | sha256sum | cut -d' ' -f1)"
have_hash="" have_extras=""
if [ -f "$stamp" ]; then read -r have_hash have_extras <"$stamp" || true; fi
[ "$have_hash" = "$want_hash" ] || have_extras=""  # pyproject.toml or this file changed: start over
missing=""
dev_holds=" train torch onnxruntime openvino rtx plot simplify docs video client "  # pyproject.toml's [dev] includes them
for extra in ${EXTRAS//,/ }; do
  case " $have_extras " in *" $extra "*) continue ;; esac
  case " $have_extras " in *" dev "*) case "$dev_holds" in *" $extra "*) continue ;; esac ;; esac
  missing="${missing:+$missing,}$extra"
done
fresh=0  # 1: the base install (pinned torch first) is needed too
torch=1  # 0: the serving environment, which has no torch (and numpy<2 for PyTriton)
case ",$EXTRAS," in *,serve,*) torch=0 ;; esac
[ "$have_hash" = "$want_hash" ] || fresh=1
stubs=0  # 1: the dev extra is being added, with its typings
case ",$missing," in *,dev,*) stubs=1 ;; esac
if [ "$fresh" = 1 ] || [ -n "$missing" ]; then
  if [ "$fresh" = 0 ]; then
    echo "[setup] adding resnet-deploy[$missing] to $VENV"
  else
    echo "[setup] installing resnet-deploy${missing:+[$missing]} into $VENV (first run: about a minute)"
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  log="$(mktemp)"
  # Pinned torch: these wheels lie on this workplace's disk; pyproject keeps a range for users.
  # dev: tensorrt-stubs lets mypy check the full-TensorRT code; --no-deps because its dependency
  # is NVIDIA's placeholder package, which cannot install here.
  { { [ "$fresh" = 0 ] || [ "$torch" = 0 ] || "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1; } \
    && "$VENV/bin/python" -m pip install -q -e "$ROOT${missing:+[$missing]}" \
    && { [ "$stubs" = 0 ] || { "$VENV/bin/python" -m pip install -q --no-deps "tensorrt-stubs==10.13.0.35.1" \
         && "$VENV/bin/python" "$ROOT/scripts/trt_typings.py" "$VENV/typings"; }; }; } \
    >"$log" 2>&1 \
    || { grep -v "is ignored: it is neither" "$log" >&2 || true; rm -f "$log"; echo "[setup] pip install failed" >&2; exit 1; }
  rm -f "$log"
  modules="resnet_deploy, torch, onnxruntime"
  [ "$torch" = 1 ] || modules="resnet_deploy, onnxruntime, pytriton"
  "$VENV/bin/python" -c "import $modules" \
    || { echo "[setup] the install finished but one of $modules does not import (above)" >&2; exit 1; }
  installed="$(printf '%s\n' $have_extras ${missing//,/ } | sort -u | tr '\n' ' ')"
  echo "$want_hash ${installed% }" >"$stamp"
fi
export PATH="$VENV/bin:$PATH"
