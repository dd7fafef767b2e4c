#!/usr/bin/env bash
# One prepared command for a GPU machine (written for one H200): training images/s of iResNet-50 and
# iResNet-100 with bf16 + channels_last at batch 128 and 256 per GPU, in CR-FIQA mode and IG-FIQA
# duplicate / split, plus torch.compile for the duplicate mode at batch 256, and peak GPU memory.
# Synthetic tensors on the device (no data loading); class counts of CASIA (r50) / MS1MV2 (r100).
#
#   bash benchmarks/gpu.sh            # from the repository root; results also in $OUT or /tmp
#
# Finishes in under 8 minutes: every configuration is time-boxed (--seconds), configurations that
# would start after --budget seconds are skipped (and listed), and a hard timeout ends the run,
# after which the summary of what finished is printed. The last line of stdout is one JSON object.
set -uo pipefail
cd "$(dirname "$0")/.."
out_dir="${OUT:-/tmp}"
summary="$out_dir/train_speed_gpu.json"
rm -f "$summary"
python - <<'PY' || { echo '{"benchmark": "train_speed", "error": "no usable torch with CUDA here"}'; exit 1; }
import torch, sys
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}", file=sys.stderr)
sys.exit(0 if torch.cuda.is_available() else 1)
PY
python -c "import igfiqa" 2>/dev/null || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
timeout --signal=TERM --kill-after=10 455 python benchmarks/train_speed.py \
    --device cuda --models r50,r100 --batches 128,256 \
    --variants bf16_cl --modes crfiqa,duplicate,split \
    --compile-variants bf16_cl_compile --compile-modes duplicate \
    --seconds 6 --warmup 3 --min-steps 3 --budget 320 --out "$summary"
status=$?
if [ "$status" -ne 0 ] && [ -s "$summary" ]; then
    echo "train_speed.py ended with status $status; summary of the finished configurations:" >&2
    cat "$summary"; echo
fi
exit "$status"
