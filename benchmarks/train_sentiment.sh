#!/bin/sh
# Movie-snippet sentiment (pos / neg): a bidirectional GRU with max pooling
# (AdamW, lr halved each epoch after the first, dropout 0.5),
# trained by `rnncore classify train`, scored on a held-out fifth of
# train.tsv. The split is fixed: every 5th line (lines 5, 10, 15, ...) is the
# test set, the other four fifths train; of those, a seeded 10 % permutation
# (--seed 0) is the validation set for early stopping, and the best
# validation-accuracy model is the one evaluated.
# Usage: benchmarks/train_sentiment.sh [OUTDIR] [extra train flags]
set -e
# the machine is shared: OpenMP threads that spin while waiting for a core
# held by another process slowed a step 10x; passive waiting yields it
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
DATA=${DATA:-$(cd "$(dirname "$0")" && pwd)/../../shared/data/movie-snippets/train.tsv}
OUT=${1:-/tmp/sentiment}; [ $# -gt 0 ] && shift
mkdir -p "$OUT"
awk 'NR % 5 != 0' "$DATA" > "$OUT/train.tsv"
awk 'NR % 5 == 0' "$DATA" > "$OUT/test.tsv"
rm -f "$OUT/model.log.jsonl"
start=$(date +%s.%N)
python -m rnncore classify train --train "$OUT/train.tsv" --valid-fraction 0.1 \
    --out "$OUT/model.safetensors" --cell gru --bidirectional --pooling max \
    --embed-size 128 --hidden-size 128 --layers 1 --dropout 0.5 --min-count 2 \
    --optimizer adamw --weight-decay 0.1 --lr 2e-3 --lr-decay 0.5 --decay-after 1 --clip 5 \
    --batch 32 --epochs 6 --patience 3 --seed 0 \
    --threads 2 --no-progress "$@"
python -m rnncore classify eval --model "$OUT/model.best.safetensors" "$OUT/test.tsv" --json \
    | tee "$OUT/test.json"
end=$(date +%s.%N)
echo "wall time: $(echo "$end - $start" | bc) s"
