#!/usr/bin/env bash
# The embedded default model (rnncore/models/shakespeare-char.safetensors):
# a character-level 2 x 512 GRU trained by rnncore on Tiny Shakespeare, first
# 90 % for training, the last 10 % held out for validation; the best-valid
# epoch is stored in float16 (half the size; load() returns float32).
# Usage: benchmarks/train_shakespeare_char.sh [OUT_DIR] [THREADS]   (needs ../shared/data)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
text="${SHAKESPEARE:-$here/../../shared/data/tinyshakespeare/input.txt}"
out="${1:-shakespeare}"
mkdir -p "$out"
time rnncore train "$text" --valid-fraction 0.1 --level char --cell gru \
    --embed-size 64 --hidden-size 512 --layers 2 --dropout 0.2 --unroll 100 --batch 32 \
    --optimizer adam --lr 0.002 --lr-decay 0.85 --decay-after 3 --clip 5 --epochs 6 \
    --seed 0 --threads "${2:-2}" --no-progress \
    --out "$out/shakespeare.safetensors" 2>&1 | tee "$out/train.out"
python - "$out/shakespeare.best.safetensors" "$here/../rnncore/models/shakespeare-char.safetensors" <<'PY'
import sys, rnncore
rnncore.save(rnncore.load(sys.argv[1]), sys.argv[2], dtype="float16")
PY
