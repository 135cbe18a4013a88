"""Training a sequence-to-sequence model: the loop behind ``rnncore seq2seq
train``, and the corpus reading and scoring it shares with ``translate`` and
``eval``.

Data: line i of the source file translates line i of the target file. The
tokenizers are learned on the training files (one per side). Batches:
pairs sorted by length (a seeded shuffle breaks ties), cut into batches of
``batch`` pairs, visited in a new seeded order every epoch (bucketing: a
batch pads little). Per batch: train_step (mean label-smoothed
cross-entropy over the target tokens), global gradient-norm clip, optimizer
step. Per epoch: validation loss and BLEU / chrF (sacrebleu, when installed,
on greedy translations of the validation set; ``--valid-beam`` for beam
search), one JSON line in the log, an atomic checkpoint (model + optimizer
+ random state: --resume continues bit for bit), the best model by BLEU
(by loss without sacrebleu), and the learning rate multiplied by
``lr_decay`` after an epoch whose validation loss did not improve.
"""
import dataclasses
import math
import time

import numpy as np

from .. import optim
from ..engine import cells, runtime
from ..files import read_checkpoint, write_checkpoint
from ..seq2seq import tokenizers
from ..seq2seq.attention import KINDS as ATTENTION_KINDS
from ..seq2seq.model import Seq2Seq
from .train import (OPTIMIZERS, _append_json, _join_optimizer_state, _progress, _sibling,
                    _split_optimizer_state)

__all__ = ["Seq2SeqConfig", "train", "read_lines", "read_pairs", "bleu_chrf"]


@dataclasses.dataclass
class Seq2SeqConfig:
    """Everything ``rnncore seq2seq train`` takes (the flags, with - for _)."""
    src: str = None
    tgt: str = None
    valid_src: str = None
    valid_tgt: str = None
    out: str = "seq2seq.safetensors"
    best: str = None             # best model (default <out>.best.safetensors)
    log: str = None              # JSON lines (default <out>.log.jsonl)
    resume: str = None
    cell: str = "lstm"
    embed_size: int = 256
    hidden_size: int = 256
    layers: int = 1
    attention: str = "general"   # or dot, additive, none
    bidirectional: bool = True
    tied_decoder: bool = False
    dropout: float = 0.2
    epochs: int = 10
    batch: int = 64
    optimizer: str = "adam"
    lr: float = 2e-3
    lr_decay: float = 0.5        # after an epoch without a better validation loss
    clip: float = 5.0
    label_smoothing: float = 0.1
    tokenizer: str = "subword"
    vocab_size: int = 8000
    max_len: int = 200           # tokens per training sentence at most
    valid_beam: int = 1
    max_steps: int = None        # batches per epoch at most (short runs, tests)
    max_minutes: float = None    # no new epoch after this much wall time
    seed: int = 0
    threads: int = None
    progress: bool = True

    def check(self):
        cells.by_name(self.cell)
        if self.attention not in ATTENTION_KINDS + ("none",):
            raise ValueError(f"attention must be one of {ATTENTION_KINDS + ('none',)}, "
                             f"got {self.attention!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.tokenizer not in tokenizers.KINDS:
            raise ValueError(f"tokenizer must be one of {tokenizers.KINDS}, got {self.tokenizer!r}")
        for name in ("embed_size", "hidden_size", "layers", "epochs", "batch", "vocab_size",
                     "max_len", "valid_beam"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("dropout and label_smoothing must be in [0, 1)")
        if not self.lr > 0 or not self.clip >= 0 or not 0 < self.lr_decay <= 1:
            raise ValueError("lr must be > 0, clip >= 0 and lr_decay in (0, 1]")
        if self.resume is None and (self.src is None or self.tgt is None):
            raise ValueError("give --src and --tgt training files (or --resume CHECKPOINT)")
        if (self.valid_src is None) != (self.valid_tgt is None):
            raise ValueError("give both --valid-src and --valid-tgt, or neither")


def read_lines(path, *, allow_empty=False):
    """The lines of a UTF-8 text file (without line ends). Errors name the
    file and line: undecodable bytes, and empty lines unless allowed."""
    lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}:{number}: not UTF-8 text ({exc.reason})") from None
            if not allow_empty and not line.strip():
                raise ValueError(f"{path}:{number}: empty line (every line is a sentence)")
            lines.append(line)
    if not lines:
        raise ValueError(f"{path}: empty file")
    return lines


def read_pairs(src_path, tgt_path):
    """(source lines, target lines) of two parallel files of equal length."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
                         "parallel files need one target line per source line")
    return src, tgt


def _encode(tok, lines, path, max_len):
    out = []
    for number, line in enumerate(lines, 1):
        ids = tok.encode(line)
        if not ids:
            raise ValueError(f"{path}:{number}: no tokens in {line!r}")
        if len(ids) > max_len:
            raise ValueError(f"{path}:{number}: {len(ids)} tokens, more than --max-len "
                             f"{max_len}")
        out.append(ids)
    return out


def bleu_chrf(hypotheses, references):
    """(BLEU, chrF) of detokenised hypotheses against one reference each,
    by sacrebleu (case-sensitive, its standard 13a tokenisation), or None
    without sacrebleu."""
    try:
        import sacrebleu
    except ImportError:
        return None
    return (sacrebleu.corpus_bleu(hypotheses, [references]).score,
            sacrebleu.corpus_chrf(hypotheses, [references]).score)


def _batches(src, tgt, size, rng):
    """Batches of pair indices: sorted by length, ties broken at random."""
    tie = rng.random(len(src))
    order = sorted(range(len(src)), key=lambda i: (len(src[i]), len(tgt[i]), tie[i]))
    return [order[i:i + size] for i in range(0, len(order), size)]


def _make_optimizer(cfg, model):
    kinds = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}
    return kinds[cfg.optimizer](model, lr=cfg.lr)


def evaluate(model, src_lines, tgt_lines, *, beam=1, batch=64, max_len=10**9):
    """Validation: mean target-token loss, perplexity and, with sacrebleu,
    BLEU and chrF of the translations."""
    src = _encode(model.src_vocab, src_lines, "source", max_len)
    tgt = _encode(model.tgt_vocab, tgt_lines, "target", max_len)
    total, tokens = 0.0, 0
    for i in range(0, len(src), batch):
        loss, n = model.loss(src[i:i + batch], tgt[i:i + batch])
        total, tokens = total + loss, tokens + n
    result = {"loss": total / tokens, "perplexity": math.exp(min(total / tokens, 700.0)),
              "sentences": len(src)}
    hyps = model.translate(src_lines, beam_size=beam, batch_size=batch)
    scores = bleu_chrf(hyps, tgt_lines)
    if scores is not None:
        result["bleu"], result["chrf"] = scores
    return result


def train(cfg, log=print):
    """Train as `cfg` (a Seq2SeqConfig) says. Returns ``(model, history)``."""
    cfg.check()
    if cfg.threads is not None:
        runtime.set_num_threads(cfg.threads)
    history, epoch0, best, best_loss = [], 0, -math.inf, math.inf
    if cfg.resume is not None:
        model, training, arrays = read_checkpoint(cfg.resume)
        if training is None or not isinstance(model, Seq2Seq):
            raise ValueError(f"{cfg.resume}: not a training checkpoint of a Seq2Seq model")
        saved = Seq2SeqConfig(**training["config"])
        cfg = dataclasses.replace(saved, epochs=cfg.epochs, resume=cfg.resume,
                                  threads=cfg.threads, progress=cfg.progress,
                                  max_steps=cfg.max_steps, max_minutes=cfg.max_minutes)
        opt = _make_optimizer(cfg, model)
        opt.load_state_dict(_join_optimizer_state(training["optimizer"], arrays))
        model.generator.bit_generator.state = training["rng"]
        history, epoch0 = training["history"], training["epoch"]
        best, best_loss = training["best"], training["best_loss"]
        src_lines, tgt_lines = read_pairs(cfg.src, cfg.tgt)
        log(f"resumed {cfg.resume} after epoch {epoch0}")
    else:
        src_lines, tgt_lines = read_pairs(cfg.src, cfg.tgt)
        src_tok = tokenizers.learn(cfg.tokenizer, src_lines, cfg.vocab_size)
        tgt_tok = tokenizers.learn(cfg.tokenizer, tgt_lines, cfg.vocab_size)
        model = Seq2Seq(src_tok, tgt_tok, cfg.cell, cfg.embed_size, cfg.hidden_size, cfg.layers,
                        cfg.bidirectional, None if cfg.attention == "none" else cfg.attention,
                        cfg.dropout, cfg.tied_decoder, seed=cfg.seed)
        opt = _make_optimizer(cfg, model)
    src = _encode(model.src_vocab, src_lines, cfg.src, cfg.max_len)
    tgt = _encode(model.tgt_vocab, tgt_lines, cfg.tgt, cfg.max_len)
    valid = read_pairs(cfg.valid_src, cfg.valid_tgt) if cfg.valid_src else None
    best_path = cfg.best or _sibling(cfg.out, ".best.safetensors")
    log_path = cfg.log or _sibling(cfg.out, ".log.jsonl")
    log(f"{model!r}: {model.num_parameters():,} parameters; {len(src):,} training pairs"
        f"{f', {len(valid[0]):,} validation pairs' if valid else ''}; "
        f"{runtime.get_num_threads()} thread(s)")
    started = time.perf_counter()
    for epoch in range(epoch0 + 1, cfg.epochs + 1):
        if cfg.max_minutes is not None and time.perf_counter() - started > 60 * cfg.max_minutes:
            log(f"stopping before epoch {epoch}: --max-minutes {cfg.max_minutes} reached")
            break
        rng = np.random.default_rng([cfg.seed, epoch])  # the epoch's batches, resumable
        batches = _batches(src, tgt, cfg.batch, rng)
        rng.shuffle(batches)
        if cfg.max_steps is not None:
            batches = batches[:cfg.max_steps]
        t0, total, tokens = time.perf_counter(), 0.0, 0
        bar = _progress(sum(len(tgt[i]) + 1 for b in batches for i in b), f"epoch {epoch}",
                        cfg.progress)
        for step, b in enumerate(batches, 1):
            loss, n = model.train_step([src[i] for i in b], [tgt[i] for i in b],
                                       label_smoothing=cfg.label_smoothing)
            if not math.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}, batch {step}: loss is {loss}; lower "
                                         "--lr or set --clip")
            if cfg.clip > 0:
                optim.clip_grad_norm(model, cfg.clip)
            opt.step()
            model.zero_grad()
            total, tokens = total + loss, tokens + n
            bar.update(n)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{total / tokens:.3f}",
                                tok_s=f"{tokens / (time.perf_counter() - t0):,.0f}")
        bar.close()
        seconds = time.perf_counter() - t0
        record = {"epoch": epoch, "lr": opt.lr, "train_loss": total / tokens,
                  "train_perplexity": math.exp(min(total / tokens, 700.0)), "batches": len(batches),
                  "target_tokens_per_s": tokens / seconds, "seconds": seconds}
        improved = False
        if valid is not None:
            v = evaluate(model, *valid, beam=cfg.valid_beam, batch=cfg.batch)
            record.update({"valid_" + k: val for k, val in v.items()})
            score = v.get("bleu", -v["loss"])
            if score > best:
                best, improved = score, True
            if v["loss"] < best_loss:
                best_loss = v["loss"]
            else:
                opt.lr = opt.lr * cfg.lr_decay
        history.append(record)
        if improved or valid is None:
            write_checkpoint(model, best_path)
        opt_meta, opt_arrays = _split_optimizer_state(opt.state_dict())
        write_checkpoint(model, cfg.out, training={
            "epoch": epoch, "config": dataclasses.asdict(cfg), "optimizer": opt_meta,
            "rng": model.generator.bit_generator.state, "history": history, "best": best,
            "best_loss": best_loss}, optimizer_tensors=opt_arrays)
        _append_json(log_path, record)
        note = "" if valid is None else (
            f", valid loss {record['valid_loss']:.4f}"
            + (f", BLEU {record['valid_bleu']:.2f}, chrF {record['valid_chrf']:.2f}"
               if "valid_bleu" in record else ""))
        log(f"epoch {epoch}: lr {record['lr']:.4g}, train loss {record['train_loss']:.4f}"
            f"{note}, {record['target_tokens_per_s']:,.0f} target tok/s, {seconds:.1f} s")
    return model, history
