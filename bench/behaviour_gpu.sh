#!/usr/bin/env bash
# The GPU half of issue 16's measurements, as one short run (about 5 minutes on one H200):
#   1. the CUDA tests of tests/behaviour/test_devices.py (skipped on machines without a GPU);
#   2. bench/behaviour_protocol.py on ResNet-18 (3×32×32): 20 calibration + 30 clean + 30
#      backdoored models, the first 4 measured alone for the timing, the rest 8 at a time.
# Run from the repository root, with torch, torchvision, scikit-learn and ART installed
# (bench/requirements-behaviour.txt); results go to $OUT (default bench/out).
set -u
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/gpu.txt"
timeout 120 python3 -m pytest -p no:cacheprovider -q -rs tests/behaviour/test_devices.py 2>&1 \
    | tee "$OUT/devices.log"
timeout "${PROTOCOL_TIMEOUT:-420}" python3 bench/behaviour_protocol.py --arch resnet18 \
    --device cuda --solo 4 --workers 8 --threads 2 \
    --jsonl "$OUT/protocol-resnet18.jsonl" --out "$OUT/protocol-gpu.md" 2>&1 \
    | tee "$OUT/protocol-gpu.log"
