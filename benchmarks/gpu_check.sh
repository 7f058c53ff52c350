#!/usr/bin/env bash
# The device run of benchmarks/gpu_check.py (README, "GPU check"): on a lent GPU machine, whose python3 has torch,
# transformers and sentence-transformers but not this checkout's package nor the model's weights.
#   here:   .venv/bin/python benchmarks/gpu_check.py --export-architecture .gpu_model
#   there:  bash benchmarks/gpu_check.sh [budget seconds, default 420] [more gpu_check.py options, e.g. --profile]
#           (carry: .gpu_model)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
model=()
if [ -d .gpu_model ]; then model=(--model .gpu_model); fi
python3 benchmarks/gpu_check.py --budget-seconds "${1:-420}" "${model[@]}" "${@:2}"
if [ -n "${OUT:-}" ]; then cp benchmarks/results/gpu_check*.json benchmarks/results/gpu_check*.md "$OUT"/; fi
