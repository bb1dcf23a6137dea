#!/usr/bin/env bash
# One GPU smoke check for a bare CUDA machine (CUDA PyTorch, numpy, onnx, onnxruntime; nothing fetched):
# runs bench/gpu_check.py under a hard 8-minute limit and leaves one JSON. On a CPU machine it dry-runs,
# every GPU step skipped by name.
#   bash bench/gpu_check.sh [OUT.json] [gpu_check.py options...]
# Exit status: 0 all steps ok or skipped, 1 a step failed (the JSON says which), 2 no JSON written.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${1:-bench/results/gpu_check.json}
shift || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# 470 s for the steps' own budget (450 s) plus start-up; timeout's 124 means the limit hit.
timeout -k 10 470 "$PY" bench/gpu_check.py --out "$OUT" "$@"
rc=$?
if [ ! -s "$OUT" ]; then
  echo "gpu_check.sh: $OUT was not written (exit $rc)" >&2
  exit 2
fi
exit $rc
