#!/usr/bin/env bash
# Penn Treebank, word level: the "small" configuration of Zaremba, Sutskever &
# Vinyals 2014 (2 x 200 LSTM, unroll 20, batch 20, U(-0.1, 0.1) init, SGD lr 1
# halved every epoch after the 4th, 13 epochs, global norm clip 5, no
# dropout). Valid perplexity each epoch; test perplexity over the whole test
# stream with carried state after the last epoch (the log's last line).
# Usage: benchmarks/train_ptb_small.sh [OUT_DIR] [THREADS]   (needs ../shared/data)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${PTB_DIR:-$here/../../shared/data/ptb}"
out="${1:-ptb-small}"
mkdir -p "$out"
time rnncore train --data "$data" --level word --cell lstm \
    --embed-size 200 --hidden-size 200 --layers 2 --dropout 0 --init-scale 0.1 \
    --unroll 20 --batch 20 --optimizer sgd --lr 1.0 --lr-decay 0.5 --decay-after 4 \
    --clip 5 --epochs 13 --seed 0 --threads "${2:-2}" --no-progress \
    --out "$out/ptb-small.safetensors" 2>&1 | tee "$out/train.out"
