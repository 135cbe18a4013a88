"""Training a sequence classifier: the loop behind ``rnncore classify train``.

Data: ``label<TAB>text`` files (rnncore.classify.data.read_tsv); the
vocabulary (--min-count, --max-vocab) and the classes (sorted) come from the
training file. Without a validation file a seeded permutation (--seed) of
the training examples holds out --valid-fraction of them. Everything is read
and checked before anything is written.

Per epoch: the examples in batches of about equal length (bucket_batches:
shuffled, sorted by length within pools of 50 batches, batches shuffled),
per batch train_step (mean cross-entropy, BPTT through the padded batch with
lengths=), global gradient-norm clip and an optimizer step; then validation
accuracy, macro-F1 and loss, one JSON line in the log, an atomic checkpoint
(model + optimizer + schedule + random states: --resume continues bit for
bit) and, when the validation accuracy improves, the best model (early
stopping: --patience epochs without improvement end the run). The learning
rate is ``lr * lr_decay ** max(0, epoch - decay_after)``.

Pretrained word vectors (--embeddings FILE, with --embeddings-vocab FILE
for .npy / .safetensors; rnncore.classify.vectors): the embedding size is
their dimension unless --embed-size is larger (the columns past theirs
start random), a training word that has a vector is in the vocabulary
even when seen fewer than --min-count times, and the embedding starts from
them (SequenceClassifier.init_embedding); --freeze-embeddings keeps it
fixed. --vocab-from-embeddings N also puts the vectors file's first N words
(its most frequent ones), those the tokenizer can produce, in the
vocabulary, so that a word never seen in training still reads its
pretrained vector instead of <unk>. The vectors file is read once, at the
start; a checkpoint holds the embedding itself, so --resume does not read it
again.

--average D keeps an exponential moving average of the trained weights
(rnncore.optim.ExponentialAverage, ``avg = D avg + (1 - D) w`` after every
step): validation, the best model and early stopping use the average, the
checkpoint <out> keeps the raw weights (and the average, for --resume).
"""
import dataclasses
import math
import sys
import time

import numpy as np
from tqdm import tqdm

from .. import optim
from ..classify import SequenceClassifier
from ..classify.data import (bucket_batches, build_vocab, check_labels, pad_batch, read_tsv,
                             tokenize)
from ..classify.model import POOLINGS
from ..classify.vectors import lookup_set, match, read_vectors
from ..engine import cells, runtime
from ..files import read_checkpoint, write_checkpoint
from .train import (OPTIMIZERS, _append_json, _join_optimizer_state, _make_optimizer, _sibling,
                    _split_optimizer_state)

__all__ = ["ClassifyConfig", "train_classifier", "load_examples"]


@dataclasses.dataclass
class ClassifyConfig:
    """Everything ``rnncore classify train`` takes (the flags, with - for _)."""
    train: str = None            # training TSV
    valid: str = None            # validation TSV (None: valid_fraction of train, seeded)
    valid_fraction: float = 0.1
    multi_label: bool = False
    min_count: int = 2           # vocabulary: words seen at least this often
    max_vocab: int = None        # ... and the most frequent this many at most
    cell: str = "lstm"
    embed_size: int = None       # None: 128, or the dimension of the --embeddings vectors
    embeddings: str = None       # pretrained word vectors (text, .npy or .safetensors)
    embeddings_vocab: str = None  # the words of .npy / .safetensors vectors, one a line
    freeze_embeddings: bool = False
    vocab_from_embeddings: int = 0  # also the vectors file's first N words
    hidden_size: int = 128
    layers: int = 1
    bidirectional: bool = False
    pooling: str = "last"
    dropout: float = 0.0
    batch: int = 32
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    decay_after: int = 0
    clip: float = 5.0
    average: float = 0.0         # decay of the weights' moving average (0: none)
    epochs: int = 10
    patience: int = None         # stop after this many epochs without a better valid accuracy
    max_steps: int = None        # batches per epoch at most (short runs, tests)
    seed: int = 0
    out: str = "classifier.safetensors"
    best: str = None             # best-valid model (default: <out>.best.safetensors)
    log: str = None              # JSON lines, one per epoch (default: <out>.log.jsonl)
    resume: str = None
    threads: int = None
    progress: bool = True

    def check(self):
        cells.by_name(self.cell)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("hidden_size", "layers", "batch", "epochs", "min_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("embed_size", "max_vocab", "patience", "max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.average < 1.0:
            raise ValueError(f"average must be in [0, 1), got {self.average}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if not self.lr > 0 or not self.clip >= 0 or not self.lr_decay > 0:
            raise ValueError("lr and lr_decay must be > 0 and clip >= 0")
        if self.train is None and self.resume is None:
            raise ValueError("give a training file (--train) or --resume CHECKPOINT")
        if self.vocab_from_embeddings < 0:
            raise ValueError(f"vocab_from_embeddings must be >= 0, got "
                             f"{self.vocab_from_embeddings}")
        if self.embeddings is None and (self.embeddings_vocab or self.freeze_embeddings
                                        or self.vocab_from_embeddings):
            raise ValueError("--embeddings-vocab, --freeze-embeddings and "
                             "--vocab-from-embeddings need --embeddings FILE")


def load_examples(cfg, model=None):
    """``(vocab, classes, (train_texts, train_labels), (valid_texts,
    valid_labels), pretrained)`` as the config names them; vocabulary and
    classes from the training examples unless `model` gives them;
    pretrained: ``(words, vectors)`` of cfg.embeddings (the rows the
    vocabulary can use), or None."""
    labels, texts = read_tsv(cfg.train, cfg.multi_label)
    all_labels = labels  # the classes are those of the whole training file
    if cfg.valid is not None:
        valid_labels, valid_texts = read_tsv(cfg.valid, cfg.multi_label)
        valid_path = cfg.valid
    else:  # a seeded permutation holds out valid_fraction of train
        order = np.random.default_rng(cfg.seed).permutation(len(texts))
        cut = len(texts) - max(1, int(round(len(texts) * cfg.valid_fraction)))
        if cut < 1:
            raise ValueError(f"{cfg.train}: {len(texts)} example(s) are too few to hold out a "
                             "validation set; give --valid")
        keep, held = sorted(order[:cut].tolist()), sorted(order[cut:].tolist())
        valid_labels, valid_texts = [labels[i] for i in held], [texts[i] for i in held]
        labels, texts = [labels[i] for i in keep], [texts[i] for i in keep]
        valid_path = f"{cfg.train} (held out)"
    pretrained = None
    if model is None:
        keep, extra = None, []
        if cfg.embeddings is not None:
            tokens = sorted({t for text in texts for t in tokenize(text)})
            words, vectors = read_vectors(cfg.embeddings, cfg.embeddings_vocab,
                                          wanted=lookup_set(tokens),
                                          first=cfg.vocab_from_embeddings)
            # words the tokenizer can produce: not "n't", "'s", "a.m." ...
            extra = [w for w in words[:cfg.vocab_from_embeddings] if tokenize(w) == [w]]
            if cfg.embed_size is not None and cfg.embed_size < vectors.shape[1]:
                raise ValueError(f"{cfg.embeddings}: the vectors have dimension "
                                 f"{vectors.shape[1]}, more than --embed-size {cfg.embed_size}")
            keep = {t for t, ok in zip(tokens, match(tokens, words, vectors)[1]) if ok}
            pretrained = words, vectors
        found = sorted({lab for ls in all_labels for lab in (ls if cfg.multi_label else (ls,))})
        if len(found) < (1 if cfg.multi_label else 2):
            raise ValueError(f"{cfg.train}: only the label(s) {found}; a classifier needs "
                             "at least 2 classes")
        vocab, classes = build_vocab(texts, cfg.min_count, cfg.max_vocab, keep, extra), found
    else:
        vocab, classes = model.vocab, model.classes
    check_labels(cfg.train, labels, classes)
    check_labels(valid_path, valid_labels, classes)
    return vocab, classes, (texts, labels), (valid_texts, valid_labels), pretrained


def _make_average(cfg, model):
    return optim.ExponentialAverage(model.trainable(), cfg.average) if cfg.average else None


def _progress(total, desc, enabled):
    return tqdm(total=total, desc=desc, unit="ex", disable=not enabled, dynamic_ncols=True,
                leave=False, file=sys.stderr)


def train_classifier(cfg, log=print):
    """Train as `cfg` (a ClassifyConfig) says. Returns ``(model, history)``:
    the last epoch's model and the per-epoch records also written to the
    log file."""
    cfg.check()
    if cfg.threads is not None:
        runtime.set_num_threads(cfg.threads)
    history, epoch0, best, bad_epochs = [], 0, -math.inf, 0
    if cfg.resume is not None:
        model, training, arrays = read_checkpoint(cfg.resume)
        if training is None or not isinstance(model, SequenceClassifier):
            raise ValueError(f"{cfg.resume}: not a training checkpoint of a sequence classifier")
        saved = ClassifyConfig(**training["config"])
        # the run continues as saved; only its length, patience and threads may change
        cfg = dataclasses.replace(saved, epochs=cfg.epochs, resume=cfg.resume,
                                  threads=cfg.threads, progress=cfg.progress,
                                  max_steps=cfg.max_steps, patience=cfg.patience)
        _, _, (texts, labels), (valid_texts, valid_labels), _ = load_examples(cfg, model)
        opt, sched = _make_optimizer(cfg, model.trainable())
        opt.load_state_dict(_join_optimizer_state(training["optimizer"], arrays))
        sched.load_state_dict(training["schedule"])
        average = _make_average(cfg, model)
        if average is not None:
            average.load_state_dict(dict(training["average"], average={
                k[len("average/"):]: v for k, v in arrays.items() if k.startswith("average/")}))
        model.generator.bit_generator.state = training["rng"]
        batch_rng = np.random.default_rng()
        batch_rng.bit_generator.state = training["batch_rng"]
        history, epoch0 = training["history"], training["epoch"]
        best, bad_epochs = training["best_valid_accuracy"], training["bad_epochs"]
        log(f"resumed {cfg.resume} after epoch {epoch0}")
    else:
        vocab, classes, (texts, labels), (valid_texts, valid_labels), pretrained = \
            load_examples(cfg)
        embed_size = cfg.embed_size or (128 if pretrained is None else pretrained[1].shape[1])
        model = SequenceClassifier(vocab, classes, cfg.cell, embed_size, cfg.hidden_size,
                                   cfg.layers, cfg.bidirectional, cfg.pooling, cfg.dropout,
                                   cfg.multi_label, cfg.freeze_embeddings, seed=cfg.seed)
        if pretrained is not None:
            covered = model.init_embedding(*pretrained)
            log(f"{cfg.embeddings}: vectors of dimension {pretrained[1].shape[1]} for "
                f"{covered:,} of the {len(vocab):,} vocabulary words"
                + (" (frozen)" if cfg.freeze_embeddings else ""))
        opt, sched = _make_optimizer(cfg, model.trainable())
        average = _make_average(cfg, model)
        batch_rng = np.random.default_rng([cfg.seed, 1])
    best_path = cfg.best or _sibling(cfg.out, ".best.safetensors")
    log_path = cfg.log or _sibling(cfg.out, ".log.jsonl")
    seqs, targets = model.encode(texts), model.targets(labels)
    lengths = np.array([len(s) for s in seqs])
    log(f"{model!r}: {model.num_parameters():,} parameters; train {len(seqs):,} examples "
        f"({lengths.sum():,} tokens), valid {len(valid_texts):,}; "
        f"{runtime.get_num_threads()} thread(s)")
    for epoch in range(epoch0 + 1, cfg.epochs + 1):
        if cfg.patience is not None and bad_epochs >= cfg.patience:
            break
        t0, total, steps, seen = time.perf_counter(), 0.0, 0, 0
        batches = bucket_batches(lengths, cfg.batch, batch_rng)
        if cfg.max_steps is not None:
            batches = batches[:cfg.max_steps]
        bar = _progress(sum(b.size for b in batches), f"epoch {epoch}", cfg.progress)
        last_note = t0
        for idx in batches:
            ids, lens = pad_batch([seqs[i] for i in idx])
            loss = model.train_step(ids, lens, targets[idx])
            if not math.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}, step {steps + 1}: loss is {loss}; "
                                         "lower --lr or set --clip")
            if cfg.clip > 0:
                optim.clip_grad_norm(model, cfg.clip)
            opt.step()
            model.zero_grad()
            if average is not None:
                average.update()
            total += loss * idx.size
            steps += 1
            seen += idx.size
            bar.update(idx.size)
            now = time.perf_counter()
            if steps % 10 == 0 or steps == len(batches):
                bar.set_postfix(loss=f"{total / seen:.3f}", ex_s=f"{seen / (now - t0):,.0f}")
            if not cfg.progress and now - last_note > 60:  # a sign of life in logs
                last_note = now
                log(f"epoch {epoch}: step {steps}/{len(batches)}, loss {total / seen:.4f}")
        bar.close()
        seconds = time.perf_counter() - t0
        raw = average.swap_in() if average is not None else None  # validate the average
        valid = model.evaluate(valid_texts, valid_labels)
        record = {"epoch": epoch, "lr": opt.lr, "train_loss": total / seen,
                  "valid_loss": valid["loss"], "valid_accuracy": valid["accuracy"],
                  "valid_macro_f1": valid["macro_f1"], "steps": steps,
                  "examples_per_s": seen / seconds, "seconds": seconds}
        history.append(record)
        sched.step()
        if valid["accuracy"] > best:
            best, bad_epochs = valid["accuracy"], 0
            write_checkpoint(model, best_path)
        else:
            bad_epochs += 1
        if raw is not None:
            average.swap_out(raw)
        opt_meta, opt_arrays = _split_optimizer_state(opt.state_dict())
        extra = {}
        if average is not None:
            state = average.state_dict()
            opt_arrays.update(("average/" + k, v) for k, v in state.pop("average").items())
            extra["average"] = state
        write_checkpoint(model, cfg.out, training={
            "epoch": epoch, "config": dataclasses.asdict(cfg), "optimizer": opt_meta,
            "schedule": sched.state_dict(), "rng": model.generator.bit_generator.state,
            "batch_rng": batch_rng.bit_generator.state, "history": history,
            "best_valid_accuracy": best, "bad_epochs": bad_epochs, **extra},
            optimizer_tensors=opt_arrays)
        _append_json(log_path, record)
        log(f"epoch {epoch}: lr {record['lr']:.4g}, train loss {record['train_loss']:.4f}, "
            f"valid loss {valid['loss']:.4f}, accuracy {valid['accuracy']:.2%}, macro-F1 "
            f"{valid['macro_f1']:.4f}, {record['examples_per_s']:,.0f} ex/s, {seconds:.1f} s"
            + ("" if bad_epochs else " (best)"))
    if cfg.patience is not None and bad_epochs >= cfg.patience:
        log(f"stopped early: {bad_epochs} epoch(s) without a better validation accuracy "
            f"(best {best:.2%}, in {best_path})")
    return model, history
