#!/usr/bin/env bash
# Multi30k German -> English (issue "sequence to sequence"): train an LSTM
# encoder-decoder with attention on ../shared/data/multi30k/train.{de,en}
# on 2 threads within a wall-time budget, then BLEU / chrF on val with beam 5
# and greedy, timed (the decoding-speed target), one JSON line each.
#
#   benchmarks/train_multi30k.sh [OUT_DIR] [extra rnncore seq2seq train flags]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${DATA:-$here/../../shared/data/multi30k}"
out="${1:-multi30k-run}"; shift || true
mkdir -p "$out"
export OPENBLAS_NUM_THREADS=1
lscpu | grep -E "Model name|^CPU\(s\)|L2 cache" > "$out/machine.txt"
start=$(date +%s)
rnncore seq2seq train --src "$data/train.de" --tgt "$data/train.en" \
    --valid-src "$data/val.de" --valid-tgt "$data/val.en" --out "$out/model.safetensors" \
    --cell lstm --embed-size 256 --hidden-size 384 --layers 1 --attention general \
    --dropout 0.3 --label-smoothing 0.1 --tokenizer subword --vocab-size 8000 \
    --batch 64 --lr 2e-3 --lr-decay 0.5 --clip 5 --epochs 40 --max-minutes 85 \
    --threads 2 --no-progress "$@" 2>&1 | tee "$out/train.log"
echo "{\"train_wall_seconds\": $(( $(date +%s) - start ))}" > "$out/train_time.json"
for beam in 5 1; do
    t0=$(date +%s.%N)
    rnncore seq2seq eval --model "$out/model.best.safetensors" --src "$data/val.de" \
        --ref "$data/val.en" --beam "$beam" --threads 2 --json > "$out/eval_beam$beam.json"
    t1=$(date +%s.%N)
    python - "$out/eval_beam$beam.json" "$t0" "$t1" <<'PY'
import json, sys
path, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
r = json.load(open(path))
r["seconds"] = t1 - t0
r["sentences_per_s"] = r["sentences"] / r["seconds"]
json.dump(r, open(path, "w"))
print(path, r)
PY
done
