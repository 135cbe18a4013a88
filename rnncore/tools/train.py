"""Training a language model: the loop behind ``rnncore train``.

Data: the token stream cut into `batch` continuous streams, windows of
`unroll` steps, the state carried from window to window (truncated BPTT) and
reset at each epoch. Per window: train_step (loss = sum over the steps of the
per-step mean NLL), global gradient-norm clip, optimizer step. Per epoch:
validation perplexity (the whole valid stream, one stream, state carried),
one JSON line in the log, an atomic checkpoint (model + optimizer + schedule +
random state: --resume continues bit for bit) and, when valid improves, the
best model. The learning rate is ``lr * lr_decay ** max(0, epoch - decay_after)``
for epoch = 1, 2, ... (Zaremba's small PTB model: lr 1, decay 0.5 after 4).
"""
import dataclasses
import json
import math
import os
import sys
import time

from tqdm import tqdm

from .. import optim
from ..engine import cells, runtime
from ..files import read_checkpoint, write_checkpoint
from ..lm import LanguageModel
from ..lm.text import LEVELS, Vocabulary, batchify, bptt_batches, read_text

__all__ = ["TrainConfig", "train", "load_corpus"]

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclasses.dataclass
class TrainConfig:
    """Everything ``rnncore train`` takes (the flags, with - for _)."""
    train: str = None            # training text file
    valid: str = None            # validation file (None: the last valid_fraction of train)
    test: str = None             # test file, evaluated after the last epoch
    data: str = None             # a folder with *train*, *valid*, *test* text files
    valid_fraction: float = 0.1
    level: str = "char"
    cell: str = "lstm"
    embed_size: int = 128
    hidden_size: int = 256
    layers: int = 2
    dropout: float = 0.0
    tied: bool = False
    init_scale: float = None
    unroll: int = 35
    batch: int = 32
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    decay_after: int = 0
    clip: float = 5.0
    epochs: int = 10
    max_steps: int = None        # per epoch (short runs, tests)
    seed: int = 0
    out: str = "model.safetensors"
    best: str = None             # where the best-valid model goes (default: <out>.best.safetensors)
    log: str = None              # JSON lines, one per epoch (default: <out>.log.jsonl)
    plot: str = None             # learning-curve PNG (needs matplotlib)
    resume: str = None
    threads: int = None
    progress: bool = True

    def check(self):
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        cells.by_name(self.cell)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("embed_size", "hidden_size", "layers", "unroll", "batch", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if not self.lr > 0 or not self.clip >= 0 or not self.lr_decay > 0:
            raise ValueError("lr and lr_decay must be > 0 and clip >= 0")
        if self.train is None and self.data is None and self.resume is None:
            raise ValueError("give a training file, --data DIR or --resume CHECKPOINT")


def _find(folder, part):
    names = sorted(n for n in os.listdir(folder) if part in n and n.endswith(".txt"))
    return os.path.join(folder, names[0]) if names else None


def load_corpus(cfg, vocab=None):
    """(vocab, train_ids, valid_ids, test_ids or None) as the config names
    them; the vocabulary is built from the training text unless given."""
    train_path, valid_path, test_path = cfg.train, cfg.valid, cfg.test
    if cfg.data is not None:
        train_path = train_path or _find(cfg.data, "train")
        valid_path = valid_path or _find(cfg.data, "valid")
        test_path = test_path or _find(cfg.data, "test")
        if train_path is None:
            raise ValueError(f"--data {cfg.data}: no *train*.txt file in it")
    text = read_text(train_path)
    valid_text = None if valid_path is None else read_text(valid_path)
    if valid_text is None:  # hold out the tail of the training text
        cut = int(len(text) * (1.0 - cfg.valid_fraction))
        if cfg.level == "word":  # at a line end
            cut = text.rfind("\n", 0, cut) + 1 or cut
        text, valid_text = text[:cut], text[cut:]
    vocab = vocab or Vocabulary.build(text, cfg.level)
    test_ids = None if test_path is None else vocab.encode(read_text(test_path))
    return vocab, vocab.encode(text), vocab.encode(valid_text), test_ids


def _make_optimizer(cfg, model):
    if cfg.optimizer == "sgd":
        opt = optim.SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = optim.Adam(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = optim.AdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    decay, after = cfg.lr_decay, cfg.decay_after
    # schedule epoch e (0-based) trains epoch e + 1
    return opt, optim.LambdaLR(opt, lambda e: decay ** max(0, e + 1 - after))


def _split_optimizer_state(state):
    """optimizer.state_dict() as (JSON part, name -> array)."""
    arrays = {f"{key}/{buf}": v for key, bufs in state["state"].items() for buf, v in bufs.items()}
    meta = dict(state, state={key: sorted(bufs) for key, bufs in state["state"].items()})
    return meta, arrays


def _join_optimizer_state(meta, arrays):
    state = {key: {buf: arrays[f"{key}/{buf}"] for buf in bufs} for key, bufs in meta["state"].items()}
    return dict(meta, state=state)


def _plot(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax.plot(epochs, [h["valid_loss"] for h in history], "o-", label="valid")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats per token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _progress(total, desc, enabled):
    return tqdm(total=total, desc=desc, unit="tok", unit_scale=True, disable=not enabled,
                dynamic_ncols=True, leave=False, file=sys.stderr)


def train(cfg, log=print):
    """Train as `cfg` (a TrainConfig) says. Returns ``(model, history)``:
    history is the list of per-epoch records also written to the log file
    (plus a final ``test`` record when a test file is given)."""
    cfg.check()
    if cfg.threads is not None:
        runtime.set_num_threads(cfg.threads)
    history, epoch0, best = [], 0, math.inf
    if cfg.resume is not None:
        model, training, arrays = read_checkpoint(cfg.resume)
        if training is None or not isinstance(model, LanguageModel):
            raise ValueError(f"{cfg.resume}: not a training checkpoint of a language model")
        saved = TrainConfig(**training["config"])
        # the run continues as saved; only the length, the outputs and the threads may change
        cfg = dataclasses.replace(saved, epochs=cfg.epochs, resume=cfg.resume,
                                  threads=cfg.threads, progress=cfg.progress,
                                  max_steps=cfg.max_steps)
        _, train_ids, valid_ids, test_ids = load_corpus(cfg, model.vocab)
        opt, sched = _make_optimizer(cfg, model)
        opt.load_state_dict(_join_optimizer_state(training["optimizer"], arrays))
        sched.load_state_dict(training["schedule"])
        model.generator.bit_generator.state = training["rng"]
        history, epoch0, best = training["history"], training["epoch"], training["best_valid"]
        log(f"resumed {cfg.resume} after epoch {epoch0}")
    else:
        vocab, train_ids, valid_ids, test_ids = load_corpus(cfg)
        model = LanguageModel(vocab, cfg.cell, cfg.embed_size, cfg.hidden_size, cfg.layers,
                              cfg.dropout, cfg.tied, init_scale=cfg.init_scale, seed=cfg.seed)
        opt, sched = _make_optimizer(cfg, model)
    best_path = cfg.best or _sibling(cfg.out, ".best.safetensors")
    log_path = cfg.log or _sibling(cfg.out, ".log.jsonl")
    data = batchify(train_ids, cfg.batch)
    log(f"{model!r}: {model.num_parameters():,} parameters; train {len(train_ids):,} tokens, "
        f"valid {len(valid_ids):,}; {runtime.get_num_threads()} thread(s)")
    for epoch in range(epoch0 + 1, cfg.epochs + 1):
        t0, state, total, steps, tokens = time.perf_counter(), None, 0.0, 0, 0
        n_windows = -(-(data.shape[0] - 1) // cfg.unroll)
        if cfg.max_steps is not None:
            n_windows = min(n_windows, cfg.max_steps)
        bar = _progress(n_windows * cfg.unroll * cfg.batch, f"epoch {epoch}", cfg.progress)
        last_note = t0
        for inputs, targets in bptt_batches(data, cfg.unroll):
            if steps == n_windows:
                break
            loss, state = model.train_step(inputs, targets, state)
            if not math.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}, step {steps + 1}: loss is {loss}; "
                                         "lower --lr or set --clip")
            if cfg.clip > 0:
                optim.clip_grad_norm(model, cfg.clip)
            opt.step()
            model.zero_grad()
            total += loss
            steps += 1
            tokens += inputs.size
            bar.update(inputs.size)
            now = time.perf_counter()
            per_token = total * cfg.batch / tokens  # loss is summed over the window's steps
            if steps % 10 == 0 or steps == n_windows:
                bar.set_postfix(loss=f"{per_token:.3f}",
                                tok_s=f"{tokens / (now - t0):,.0f}")
            if not cfg.progress and now - last_note > 60:  # a sign of life in logs
                last_note = now
                log(f"epoch {epoch}: step {steps}/{n_windows}, loss "
                    f"{per_token:.4f}, {tokens / (now - t0):,.0f} tok/s")
        bar.close()
        seconds = time.perf_counter() - t0
        train_loss = total * cfg.batch / tokens  # per token
        valid = model.evaluate(valid_ids)
        record = {"epoch": epoch, "lr": opt.lr, "train_loss": train_loss,
                  "train_perplexity": math.exp(min(train_loss, 700.0)),
                  "valid_loss": valid["loss"], "valid_perplexity": valid["perplexity"],
                  "valid_bits_per_token": valid["bits_per_token"], "steps": steps,
                  "tokens_per_s": tokens / seconds, "seconds": seconds}
        history.append(record)
        sched.step()
        if valid["loss"] < best:
            best = valid["loss"]
            write_checkpoint(model, best_path)
        opt_meta, opt_arrays = _split_optimizer_state(opt.state_dict())
        write_checkpoint(model, cfg.out, training={
            "epoch": epoch, "config": dataclasses.asdict(cfg), "optimizer": opt_meta,
            "schedule": sched.state_dict(), "rng": model.generator.bit_generator.state,
            "history": history, "best_valid": best}, optimizer_tensors=opt_arrays)
        _append_json(log_path, record)
        log(f"epoch {epoch}: lr {record['lr']:.4g}, train loss {train_loss:.4f} (ppl "
            f"{record['train_perplexity']:.2f}), valid loss {valid['loss']:.4f} (ppl "
            f"{valid['perplexity']:.2f}, {valid['bits_per_token']:.3f} bits/token), "
            f"{record['tokens_per_s']:,.0f} tok/s, {seconds:.1f} s")
        if cfg.plot:
            _plot(history, cfg.plot)
    if test_ids is not None:
        test = model.evaluate(test_ids)
        record = {"test_loss": test["loss"], "test_perplexity": test["perplexity"],
                  "test_bits_per_token": test["bits_per_token"], "tokens": test["tokens"]}
        history.append(record)
        _append_json(log_path, record)
        log(f"test (last epoch's model): loss {test['loss']:.4f}, perplexity "
            f"{test['perplexity']:.2f}")
    return model, history


def _append_json(path, record):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _sibling(path, suffix):
    base = path[:-len(".safetensors")] if path.endswith(".safetensors") else path
    return base + suffix
