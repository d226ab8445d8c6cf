#!/usr/bin/env bash
# The GPU proof in one command, from a bare checkout (the project not installed, no network):
#   bash scripts/gpu_checks.sh OUT_DIR              on a machine with an NVIDIA GPU
#   bash scripts/gpu_checks.sh --dry-run OUT_DIR    the same sequence on a CPU (GPU tests skip, the
#                                                   train-step bench at CPU sizes): how CI keeps it working
# Its Python (PYTHON, default python3) needs torch, torchvision, onnx, onnxruntime, onnxscript, click,
# Pillow, pytest and cuda-bindings. The parts, most valuable first, each under its own time limit
# (465 s in all); a part that fails or times out does not stop the next:
#   preflight           GPU, driver, CUDA, cuDNN, NCCL, NVRTC versions; one direct nvJPEG decode
#   pytest-gpu          every test marked gpu but the torchrun ones
#   pytest-distributed  the torchrun tests, in their own process (no CUDA context held by the parent)
#   train-step          scripts/bench_train_step.py --compile --ours-fast-cudnn at sizes that fit
# OUT_DIR receives at most 8 files: preflight, summary and the bench as .json and .txt, and the
# two pytest logs. The summary comes last. Exit 0 when every part passed.
set -uo pipefail
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: bash scripts/gpu_checks.sh [--dry-run] OUT_DIR" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
mkdir -p "$1" || { echo "error: cannot create $1" >&2; exit 2; }
OUT="$(cd "$1" && pwd)"
ours='^(preflight|summary|train-step-resnet50-.*)\.(json|txt)$|^pytest-(gpu|distributed)\.txt$'
foreign="$(ls -A "$OUT" | grep -Ev "$ours" | head -3 | tr '\n' ' ')"
if [ -n "$foreign" ]; then
  echo "error: $OUT holds files these checks did not write ($foreign); give an empty or new directory" >&2
  exit 2
fi
find "$OUT" -maxdepth 1 -type f -regextype posix-extended -regex ".*/($ours)" -delete 2>/dev/null \
  || (cd "$OUT" && ls -A | grep -E "$ours" | xargs -r rm -f)  # an earlier run's results, not this one's

parts="$(mktemp -d)"
trap 'rm -rf "$parts"' EXIT
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export CUBLAS_WORKSPACE_CONFIG=:4096:8  # the trainer's, fixed before any cuBLAS handle
unset NCCL_DEBUG                       # NCCL logs to stdout, which one test reads as JSON
cd "$ROOT"
flag=()
[ "$dry" = 1 ] && flag=(--dry-run)

# part NAME LIMIT LOG COMMAND...: runs COMMAND under its limit, its output to the terminal (and LOG,
# unless "-"), its exit code to $parts/NAME.status
part() {
  local name=$1 limit=$2 log=$3
  shift 3
  echo "== $name (at most ${limit} s)"
  if [ "$log" = "-" ]; then
    timeout -k 10 "$limit" "$@"
  else
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$OUT/$log"
  fi
  echo "${PIPESTATUS[0]}" >"$parts/$name.status"
}
pytest=("$PY" -m pytest -p no:cacheprovider -m gpu -rA -q -o faulthandler_timeout=120)

part preflight 45 - "$PY" scripts/gpu_checks.py preflight "$OUT" "${flag[@]}"
part pytest-gpu 140 pytest-gpu.txt "${pytest[@]}" --junitxml="$parts/pytest-gpu.xml" \
  tests --ignore=tests/training/test_distributed.py
part pytest-distributed 100 pytest-distributed.txt "${pytest[@]}" --junitxml="$parts/pytest-distributed.xml" \
  tests/training/test_distributed.py
if [ "$dry" = 1 ]; then  # CPU sizes, eager only: torch.compile's CPU build of ResNet-50 alone takes minutes
  bench=(--device cpu --batch 4 --size 32 --blocks 2 --steps 1 --warmup 1 --ours-fast-cudnn)
else  # the compiles (45-90 s each) dominate; 4 blocks of 10 steps still pair every variant
  bench=(--device cuda --compile --ours-fast-cudnn --blocks 4 --steps 10 --warmup 3)
fi
part train-step 180 - "$PY" scripts/bench_train_step.py "${bench[@]}" --out "$OUT"

echo "== summary"
"$PY" scripts/gpu_checks.py summary "$OUT" "$parts" "${flag[@]}"
