"""``rnncore seq2seq train | translate | eval``: the command line of the
sequence-to-sequence models (rnncore.seq2seq).

* ``train --src FILE --tgt FILE [--valid-src FILE --valid-tgt FILE] --out PATH``
  (rnncore/tools/seq2seq_train.py);
* ``translate --model PATH [--beam N] [--max-len-a A --max-len-b B]``: source
  lines on stdin, translations on stdout, one per line, in batches of
  ``--batch`` lines (one line at a time from a terminal); an empty line gives
  an empty translation; with ``--scheduler ADDRESS`` (``local:N``: N worker
  processes on this machine) all of stdin is read, translated on the Dask
  cluster in tasks of ``--lines-per-task`` lines (rnncore.distributed.translate)
  and written in order: the same lines as without it;
* ``eval --model PATH --src FILE --ref FILE [--beam N] [--json]``: BLEU and
  chrF by sacrebleu (detokenised, case-sensitive) of the translations of
  FILE against the references.
"""
import dataclasses
import json
import os
import sys

from .. import distributed
from ..engine import cells, runtime
from ..files import load
from ..seq2seq import Seq2Seq
from ..seq2seq.attention import KINDS as ATTENTION_KINDS
from ..seq2seq.tokenizers import KINDS as TOKENIZERS
from .seq2seq_train import Seq2SeqConfig, bleu_chrf, read_lines, train
from .train import OPTIMIZERS


def _load(path, command):
    try:
        model = load(path)
    except (ValueError, OSError, ImportError) as exc:
        raise SystemExit(f"rnncore seq2seq {command}: {exc}") from None
    if not isinstance(model, Seq2Seq):
        raise SystemExit(f"rnncore seq2seq {command}: {path} holds a {type(model).__name__}, "
                         "not a Seq2Seq model")
    return model


def _decoding(args):
    return dict(beam_size=args.beam, max_len_a=args.max_len_a, max_len_b=args.max_len_b,
                alpha=args.alpha)


def cmd_train(args):
    fields = {f.name for f in dataclasses.fields(Seq2SeqConfig)}
    cfg = Seq2SeqConfig(**{k: v for k, v in vars(args).items() if k in fields})
    try:
        train(cfg, log=lambda msg: print(msg, file=sys.stderr))
    except (ValueError, OSError, FloatingPointError, ImportError) as exc:
        raise SystemExit(f"rnncore seq2seq train: {exc}") from None
    return 0


def _read_stdin(command):
    """stdin's lines without their line ends, each checked as UTF-8."""
    for number, raw in enumerate(sys.stdin.buffer, 1):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise SystemExit(f"rnncore seq2seq {command}: stdin line {number}: not UTF-8 "
                             f"text ({exc.reason})") from None


def _translate_on_cluster(args):
    lines = list(_read_stdin("translate"))
    try:
        with distributed.connect(args.scheduler) as client:
            texts = distributed.translate(client, lines, args.model, **_decoding(args),
                                          batch_size=args.batch, threads=args.threads,
                                          lines_per_task=args.lines_per_task,
                                          progress=args.progress)
    except (ValueError, OSError, TypeError, ImportError, distributed.TaskError) as exc:
        raise SystemExit(f"rnncore seq2seq translate: {exc}") from None
    try:
        sys.stdout.writelines(text + "\n" for text in texts)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_translate(args):
    model = _load(args.model, "translate")  # also refuses a model of another kind early
    if args.scheduler:
        del model  # the workers load their own
        return _translate_on_cluster(args)
    batch = 1 if sys.stdin.isatty() else args.batch
    out = sys.stdout

    def flush(lines):
        texts = [line for line in lines if line.strip()]
        done = iter(model.translate(texts, **_decoding(args), batch_size=args.batch)
                    if texts else [])
        for line in lines:
            out.write((next(done) if line.strip() else "") + "\n")
        out.flush()

    pending = []
    try:
        for line in _read_stdin("translate"):
            pending.append(line)
            if len(pending) >= batch:
                flush(pending)
                pending = []
        if pending:
            flush(pending)
    except BrokenPipeError:  # the reader stopped (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_eval(args):
    model = _load(args.model, "eval")
    try:
        src, ref = read_lines(args.src), read_lines(args.ref)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"rnncore seq2seq eval: {exc}") from None
    if len(src) != len(ref):
        raise SystemExit(f"rnncore seq2seq eval: {args.src} has {len(src)} lines but "
                         f"{args.ref} has {len(ref)}")
    hyps = model.translate(src, **_decoding(args), batch_size=args.batch)
    scores = bleu_chrf(hyps, ref)
    if scores is None:
        raise SystemExit("rnncore seq2seq eval: BLEU needs sacrebleu "
                         "(pip install 'rnncore[seq2seq]')")
    result = {"bleu": scores[0], "chrf": scores[1], "sentences": len(src)}
    print(json.dumps(result) if args.json else
          f"{args.src}: {len(src):,} sentences; BLEU {scores[0]:.2f}, chrF {scores[1]:.2f}")
    return 0


def _decoding_arguments(p):
    p.add_argument("--beam", type=int, default=5, help="beam size; 1: greedy (default 5)")
    p.add_argument("--max-len-a", type=float, default=1.5,
                   help="at most A * source tokens + B target tokens (default A = 1.5)")
    p.add_argument("--max-len-b", type=int, default=10, help="(default B = 10)")
    p.add_argument("--alpha", type=float, default=0.6,
                   help="GNMT length-penalty exponent (default 0.6; 0: raw log-probability)")
    p.add_argument("--batch", type=int, default=64, help="sentences decoded together")
    p.add_argument("--threads", type=int, default=None, help="kernel threads")


def add_commands(sub):
    """The ``seq2seq`` command and its subcommands, on an argparse subparsers object."""
    top = sub.add_parser("seq2seq", help="sequence to sequence: train, translate, eval")
    s2s = top.add_subparsers(dest="seq2seq_command", required=True)
    d = Seq2SeqConfig()
    tr = s2s.add_parser("train", help="train an encoder-decoder with attention")
    tr.add_argument("--src", required=False, help="training source file, one sentence a line")
    tr.add_argument("--tgt", required=False, help="training target file, line by line")
    tr.add_argument("--valid-src", help="validation source file")
    tr.add_argument("--valid-tgt", help="validation target file")
    tr.add_argument("--out", default=d.out, help="checkpoint, written each epoch")
    tr.add_argument("--best", help="best model (default <out>.best.safetensors)")
    tr.add_argument("--log", help="JSON-lines log (default <out>.log.jsonl)")
    tr.add_argument("--resume", help="continue from this checkpoint")
    tr.add_argument("--cell", choices=[c.name for c in cells.CELLS.values()], default=d.cell)
    tr.add_argument("--attention", choices=list(ATTENTION_KINDS) + ["none"], default=d.attention)
    tr.add_argument("--tokenizer", choices=list(TOKENIZERS), default=d.tokenizer,
                    help="subword (SentencePiece, learned on the training files) or word")
    tr.add_argument("--optimizer", choices=list(OPTIMIZERS), default=d.optimizer)
    for name, typ, help_ in (("embed-size", int, "embedding size"),
                             ("hidden-size", int, "decoder units (the encoder's per direction: half)"),
                             ("layers", int, "stacked layers (encoder and decoder)"),
                             ("dropout", float, "dropout"), ("epochs", int, "epochs"),
                             ("batch", int, "sentence pairs per batch"),
                             ("lr", float, "learning rate"),
                             ("lr-decay", float, "lr factor after an epoch without a better "
                                                 "validation loss"),
                             ("clip", float, "global gradient-norm clip (0: none)"),
                             ("label-smoothing", float, "label smoothing"),
                             ("vocab-size", int, "vocabulary size per side"),
                             ("max-len", int, "tokens per training sentence at most"),
                             ("valid-beam", int, "beam of the per-epoch validation BLEU"),
                             ("max-steps", int, "batches per epoch at most"),
                             ("max-minutes", float, "no new epoch after this wall time"),
                             ("seed", int, "random seed"), ("threads", int, "kernel threads")):
        attr = name.replace("-", "_")
        tr.add_argument("--" + name, type=typ, default=getattr(d, attr),
                        help=f"{help_} (default {getattr(d, attr)})")
    tr.add_argument("--unidirectional", dest="bidirectional", action="store_false",
                    help="a forward-only encoder")
    tr.add_argument("--tied-decoder", action="store_true",
                    help="output layer = target embedding (embed size = hidden size)")
    tr.add_argument("--no-progress", dest="progress", action="store_false")
    tr.set_defaults(func=cmd_train)
    tl = s2s.add_parser("translate", help="translate stdin to stdout, line by line")
    tl.add_argument("--model", required=True, help="a Seq2Seq model file")
    _decoding_arguments(tl)
    tl.add_argument("--scheduler", metavar="ADDRESS",
                    help="translate on the Dask cluster at ADDRESS (tcp://host:8786), or "
                         "local:N for N worker processes on this machine (needs rnncore[dask]); "
                         "--threads is then per task")
    tl.add_argument("--lines-per-task", type=int, default=distributed.DEFAULT_LINES_PER_TASK,
                    help="with --scheduler: lines per task (default "
                         f"{distributed.DEFAULT_LINES_PER_TASK})")
    tl.add_argument("--no-progress", dest="progress", action="store_false",
                    help="with --scheduler: no progress bar over tasks")
    tl.set_defaults(func=cmd_translate)
    ev = s2s.add_parser("eval", help="BLEU and chrF (sacrebleu) against reference translations")
    ev.add_argument("--model", required=True, help="a Seq2Seq model file")
    ev.add_argument("--src", required=True, help="source file")
    ev.add_argument("--ref", required=True, help="reference translations, line by line")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    _decoding_arguments(ev)
    ev.set_defaults(func=cmd_eval)


def configure(args):
    """Settings every seq2seq command shares (threads)."""
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise SystemExit("rnncore seq2seq: --threads must be >= 1")
        runtime.set_num_threads(args.threads)
