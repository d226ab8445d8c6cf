#!/usr/bin/env bash
# ResNet-50 on the CPU, batch 1 and 8: PyTorch eager vs ONNX Runtime FP32 vs our INT8 artifacts
# on ONNX Runtime, side by side in one process (docs/benchmarks.md), then the per-layer FP32/INT8
# profile of scripts/int8_cpu_layers.py. Writes scripts/results/bench-resnet50-cpu-KIND.{json,png}
# and scripts/results/int8-cpu-layers-KIND.{txt,json}, KIND being the CPU's kind (avx2,
# avx512-vnni, amx, ...: resnet_deploy.runtime.machine.cpu_kind), so each kind of CPU keeps its result.
# OpenVINO against ONNX Runtime on the same files: scripts/bench_cpu_runtimes.py.
#   scripts/bench_resnet50_cpu.sh [threads]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" "plot"  # --plot needs matplotlib
cd "$ROOT"
threads="${1:-$(nproc)}"
kind="$(python -c 'from resnet_deploy.runtime.machine import cpu_flags, cpu_kind; print(cpu_kind(cpu_flags()))')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python - "$work" <<'PY'
import sys, torch
from resnet_deploy import build_model, save_checkpoint
torch.manual_seed(0)
save_checkpoint(build_model(50), f"{sys.argv[1]}/r50.pt", {})
PY
resnet-deploy export --checkpoint "$work/r50.pt" -o "$work/r50.onnx"
resnet-deploy calibrate "$work/r50.onnx" --target cpu --method minmax --calib-images 64 --no-cache -o "$work/r50.cpu.int8.onnx"
resnet-deploy calibrate "$work/r50.onnx" --target tensorrt --method minmax --calib-images 64 --no-cache -o "$work/r50.int8.onnx"
mkdir -p scripts/results
resnet-deploy bench "$work/r50.pt" "$work/r50.onnx" "$work/r50.cpu.int8.onnx" "$work/r50.int8.onnx" \
  --backend onnxruntime --batch 1,8 --iters 24 --threads "$threads" --plot "scripts/results/bench-resnet50-cpu-$kind.png" --overwrite --json \
  > "$work/bench.json"  # the committed result is replaced only by a run that finished
mv "$work/bench.json" "scripts/results/bench-resnet50-cpu-$kind.json"
python scripts/int8_cpu_layers.py "$work/r50.onnx" "$work/r50.cpu.int8.onnx" --threads "$threads" \
  --json "scripts/results/int8-cpu-layers-$kind.json" | tee "scripts/results/int8-cpu-layers-$kind.txt"
echo "wrote scripts/results/bench-resnet50-cpu-$kind.{json,png} and scripts/results/int8-cpu-layers-$kind.{txt,json}"
