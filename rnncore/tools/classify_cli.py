"""The ``rnncore classify`` commands: ``train`` (rnncore/tools/classify_train.py),
``eval`` (accuracy and macro-F1 of a labelled TSV file) and ``predict`` (one
label per line of standard input, streamed)."""
import dataclasses
import json
import os
import sys

from ..classify import SequenceClassifier
from ..classify.data import check_labels, read_tsv
from ..classify.model import POOLINGS
from ..engine import cells
from ..files import load
from .classify_train import ClassifyConfig, train_classifier

__all__ = ["add_commands"]

TSV_HELP = ("TSV files hold one example per line: label<TAB>text (with --multi-label the "
            "label field is comma-separated labels, e.g. 'action,comedy<TAB>text'). Text is "
            "lower-cased and split into words and punctuation marks.")


def _load_classifier(path, command):
    try:
        model = load(path)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"rnncore classify {command}: {exc}") from None
    if not isinstance(model, SequenceClassifier):
        raise SystemExit(f"rnncore classify {command}: {path} holds a {type(model).__name__}, "
                         "not a sequence classifier")
    return model


def cmd_train(args):
    fields = {f.name for f in dataclasses.fields(ClassifyConfig)}
    cfg = ClassifyConfig(**{k: v for k, v in vars(args).items() if k in fields})
    try:
        train_classifier(cfg, log=lambda msg: print(msg, file=sys.stderr))
    except (ValueError, OSError, FloatingPointError) as exc:
        raise SystemExit(f"rnncore classify train: {exc}") from None
    return 0


def cmd_eval(args):
    model = _load_classifier(args.model, "eval")
    try:
        labels, texts = read_tsv(args.file, model.multi_label)
        check_labels(args.file, labels, model.classes)
        result = model.evaluate(texts, labels)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"rnncore classify eval: {exc}") from None
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.file}: {result['examples']:,} examples; accuracy {result['accuracy']:.2%}, "
              f"macro-F1 {result['macro_f1']:.4f}, loss {result['loss']:.4f}")
    return 0


def cmd_predict(args):
    """One output line per input line, written (and flushed) as soon as
    --batch lines are read (1 on a terminal)."""
    model = _load_classifier(args.model, "predict")
    size = 1 if sys.stdin.isatty() else args.batch
    out, pending, number = sys.stdout, [], 0

    def flush():
        if not pending:
            return
        probs = model.predict_proba(pending)
        for p, label in zip(probs, model.labels_of(probs)):
            text = ",".join(label) if model.multi_label else label
            if args.proba:
                text += "\t" + json.dumps({c: round(float(v), 6)
                                           for c, v in zip(model.classes, p)})
            out.write(text + "\n")
        out.flush()
        pending.clear()

    try:
        for line in sys.stdin:
            number += 1
            line = line.rstrip("\r\n")
            if not line.strip():
                flush()
                raise SystemExit(f"rnncore classify predict: <stdin>, line {number}: empty line")
            pending.append(line)
            if len(pending) >= size:
                flush()
        flush()
    except BrokenPipeError:  # the reader stopped (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def add_commands(sub):
    """The ``classify`` command and its subcommands, on the main parser's
    subparsers `sub`."""
    cl = sub.add_parser("classify", help="sequence classifiers: train, eval, predict",
                        description=__doc__.split("\n\n")[0] + " " + TSV_HELP)
    csub = cl.add_subparsers(dest="classify_command", required=True)
    d = ClassifyConfig()
    tr = csub.add_parser("train", help="train a classifier on a label<TAB>text file",
                         description=TSV_HELP)
    tr.add_argument("--train", help="training TSV file (not needed with --resume)")
    tr.add_argument("--valid", help="validation TSV file (default: a seeded --valid-fraction "
                                    "of train held out)")
    tr.add_argument("--valid-fraction", type=float, default=d.valid_fraction,
                    help=f"without --valid: hold out this share of train (default "
                         f"{d.valid_fraction})")
    tr.add_argument("--multi-label", action="store_true",
                    help="each text has any number of comma-separated labels (a sigmoid and "
                         "binary cross-entropy per class)")
    tr.add_argument("--cell", choices=[c.name for c in cells.CELLS.values()], default=d.cell)
    tr.add_argument("--pooling", choices=POOLINGS, default=d.pooling,
                    help="last: final states; mean / max over the real steps (default last)")
    tr.add_argument("--bidirectional", action="store_true", help="read both ways")
    tr.add_argument("--embed-size", type=int,
                    help="embedding size (default 128, or the dimension of --embeddings)")
    tr.add_argument("--embeddings", metavar="FILE",
                    help="initialise the embedding from pretrained word vectors: a GloVe / "
                         "word2vec text file (word v1 ... vD a line), or .npy / .safetensors "
                         "with --embeddings-vocab; the embedding size is theirs "
                         "unless --embed-size is larger (the other columns start random)")
    tr.add_argument("--embeddings-vocab", metavar="FILE",
                    help="the words of .npy / .safetensors vectors, one a line (line i: row i)")
    tr.add_argument("--freeze-embeddings", action="store_true",
                    help="keep the pretrained embedding fixed (default: fine-tune it)")
    tr.add_argument("--vocab-from-embeddings", type=int, default=0, metavar="N",
                    help="also put the first N words of --embeddings (the most frequent) in "
                         "the vocabulary, so words unseen in training keep their vectors "
                         "(default 0)")
    for name, typ, help_ in (
            ("min-count", int, "vocabulary: words seen at least this often"),
            ("max-vocab", int, "vocabulary: the most frequent words at most"),
            ("hidden-size", int, "hidden units"),
            ("layers", int, "stacked layers"),
            ("dropout", float, "dropout on embeddings, between layers and on the features"),
            ("batch", int, "examples per batch"), ("lr", float, "learning rate"),
            ("momentum", float, "SGD momentum"), ("weight-decay", float, "L2 / decoupled decay"),
            ("lr-decay", float, "lr factor per epoch after --decay-after"),
            ("decay-after", int, "epochs at the full lr"),
            ("clip", float, "global gradient-norm clip (0: none)"), ("epochs", int, "epochs"),
            ("average", float, "validate and keep the moving average of the weights, this "
                               "decay per step, e.g. 0.99 (0: none)"),
            ("patience", int, "stop after this many epochs without a better valid accuracy"),
            ("max-steps", int, "batches per epoch at most"), ("seed", int, "random seed"),
            ("threads", int, "kernel threads")):
        attr = name.replace("-", "_")
        tr.add_argument("--" + name, type=typ, default=getattr(d, attr),
                        help=f"{help_} (default {getattr(d, attr)})")
    tr.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=d.optimizer)
    tr.add_argument("--out", default=d.out, help="checkpoint, written each epoch (default "
                                                 f"{d.out})")
    tr.add_argument("--best", help="best-valid model (default <out>.best.safetensors)")
    tr.add_argument("--log", help="JSON-lines log (default <out>.log.jsonl)")
    tr.add_argument("--resume", help="continue from this checkpoint")
    tr.add_argument("--no-progress", dest="progress", action="store_false")
    tr.set_defaults(func=cmd_train)
    ev = csub.add_parser("eval", help="accuracy and macro-F1 on a label<TAB>text file",
                         description=TSV_HELP)
    ev.add_argument("file")
    ev.add_argument("--model", required=True, help="model file (or a training checkpoint)")
    ev.add_argument("--json", action="store_true",
                    help="print one JSON object (accuracy, macro_f1, loss, examples)")
    ev.set_defaults(func=cmd_eval)
    pr = csub.add_parser("predict", help="the label of each line of stdin, one per line")
    pr.add_argument("--model", required=True, help="model file (or a training checkpoint)")
    pr.add_argument("--proba", action="store_true",
                    help="add a tab and the class probabilities (JSON) to each line")
    pr.add_argument("--batch", type=int, default=64,
                    help="lines read before predicting (1 on a terminal; default 64)")
    pr.set_defaults(func=cmd_predict)
