"""Accuracy of rnncore's int8 language models against their float32 originals
(issue 15's targets; results in benchmarks/RESULTS.md, "int8 inference"):

* the embedded Tiny Shakespeare model (a 2 x 512 GRU, characters) quantized
  loses <= 0.01 nats/char on the held-out last 10 % of the corpus (the tail
  that benchmarks/train_shakespeare_char.sh validates on);
* a PTB small LSTM (benchmarks/train_ptb_small.sh) quantized loses <= 1 % of
  test perplexity (whole test stream, state carried, as the training log's
  last line).

Also the resident weight bytes of both models, float32 and int8.

Usage: python benchmarks/accuracy_int8.py [--ptb MODEL] [--json OUT]
(needs the data of ../shared/data, or --shakespeare / --ptb-test paths).
"""
import argparse
import json
import os
import time

import rnncore
from rnncore import files
from rnncore.lm.text import read_text

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def compare(model, ids, name, target, unit):
    """Loss (nats/token) and perplexity of model and its int8 copy on ids."""
    q = rnncore.quantize(model)
    t0 = time.perf_counter()
    f = model.evaluate(ids)
    t1 = time.perf_counter()
    i = q.evaluate(ids)
    t2 = time.perf_counter()
    fp32_bytes = sum(p.size * 4 for p in model.parameters())
    row = {"model": name, "tokens": f["tokens"], "fp32_loss": f["loss"], "int8_loss": i["loss"],
           "loss_delta": i["loss"] - f["loss"], "fp32_ppl": f["perplexity"],
           "int8_ppl": i["perplexity"],
           "ppl_change_pct": 100 * (i["perplexity"] / f["perplexity"] - 1),
           "fp32_s": t1 - t0, "int8_s": t2 - t1, "fp32_weight_bytes": fp32_bytes,
           "int8_weight_bytes": q.weight_bytes(), "target": target, "unit": unit}
    print(f"{name}: {row['tokens']:,} {unit}s; fp32 {f['loss']:.4f} nats (ppl {f['perplexity']:.3f}), "
          f"int8 {i['loss']:.4f} (ppl {i['perplexity']:.3f}): {row['loss_delta']:+.4f} nats/{unit}, "
          f"ppl {row['ppl_change_pct']:+.2f} %; target {target}; evaluate {t1 - t0:.1f} s fp32, "
          f"{t2 - t1:.1f} s int8; weights {fp32_bytes:,} -> {q.weight_bytes():,} bytes "
          f"({q.weight_bytes() / fp32_bytes:.3f})", flush=True)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shakespeare", default=os.path.join(DATA, "tinyshakespeare", "input.txt"))
    p.add_argument("--ptb", help="a PTB model file (benchmarks/train_ptb_small.sh's "
                                 "ptb-small.safetensors); omitted: the Shakespeare model only")
    p.add_argument("--ptb-test", default=os.path.join(DATA, "ptb", "ptb.test.txt"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the rows as JSON")
    a = p.parse_args()
    rnncore.set_num_threads(a.threads)
    rows = []
    text = read_text(a.shakespeare)
    lm = rnncore.load(files.DEFAULT_MODEL)
    held_out = text[int(len(text) * 0.9):]  # train.py's --valid-fraction 0.1 cut
    rows.append(compare(lm, lm.vocab.encode(held_out), "shakespeare-char (embedded GRU 2x512)",
                        "loss_delta <= 0.01 nats/char", "char"))
    if a.ptb:
        ptb = rnncore.load(a.ptb)
        rows.append(compare(ptb, ptb.vocab.encode(read_text(a.ptb_test)),
                            f"ptb ({os.path.basename(a.ptb)})", "ppl_change_pct <= 1 %", "word"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "config": rnncore.config(), "rows": rows},
                      f, indent=1)


if __name__ == "__main__":
    main()
