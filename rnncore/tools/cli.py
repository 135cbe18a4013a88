"""The ``rnncore`` command (also ``python -m rnncore``).

``rnncore info`` (the default) prints the configuration, then runs a small
forward pass of each cell on the active backend and on the float64 NumPy
reference, and prints both times and the largest difference.

``rnncore bench`` compares rnncore with PyTorch, ONNX Runtime and the
reference (see rnncore/tools/bench.py); ``rnncore bench --quick`` is a one-minute
subset.

Language models: ``rnncore train`` (see rnncore/tools/train.py), ``rnncore eval
FILE...`` and ``rnncore generate [PROMPT]``; the last two use the embedded
character-level Tiny Shakespeare model when no ``--model`` is given, and run
on a Dask cluster with ``--scheduler ADDRESS`` (``local:N``: N worker
processes on this machine; see rnncore.distributed).

``rnncore quantize IN OUT [--dtype int8]`` writes an int8 copy of a model
file (rnncore.quantize); eval and generate take such files as --model.

Translation: ``rnncore seq2seq train | translate | eval`` (see
rnncore/tools/seq2seq_cli.py).

Sequence classifiers: ``rnncore classify train|eval|predict`` (see
rnncore/tools/classify_cli.py).
"""
import argparse
import dataclasses
import json
import os
import sys

from ..engine import cells, runtime
from ..files import DEFAULT_MODEL, load, save
from ..quantization import quantize
from ..lm import LanguageModel
from ..lm.text import read_text
from .. import distributed
from . import bench as bench_module
from . import classify_cli
from . import info as info_module
from . import seq2seq_cli
from .train import TrainConfig, train


def _load_lm(path):
    try:
        model = load(path or DEFAULT_MODEL)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"rnncore: {exc}") from None
    if not isinstance(model, LanguageModel):
        raise SystemExit(f"rnncore: {path} holds a {type(model).__name__} layer, not a "
                         "language model")
    return model


def cmd_train(args):
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    files = args.files or []
    if len(files) > 3:
        raise SystemExit("rnncore train: at most three files (train, valid, test)")
    cfg.train, cfg.valid, cfg.test = (files + [None] * 3)[:3]
    try:
        train(cfg, log=lambda msg: print(msg, file=sys.stderr))
    except (ValueError, OSError, FloatingPointError) as exc:
        raise SystemExit(f"rnncore train: {exc}") from None
    return 0


def _cluster_errors():
    """Errors a cluster run reports to the user as one line."""
    return (ValueError, OSError, TypeError, distributed.TaskError)


def cmd_eval(args):
    model = _load_lm(args.model)
    level = model.vocab.level
    try:
        if args.scheduler:
            chunk = distributed.DEFAULT_CHUNK_TOKENS if args.chunk_tokens is None else args.chunk_tokens
            with distributed.connect(args.scheduler) as client:
                result = distributed.evaluate(client, args.file, args.model, chunk_tokens=chunk,
                                              context_tokens=args.context_tokens,
                                              threads=args.threads, progress=args.progress)
        elif len(args.file) == 1 and args.chunk_tokens is None:
            # one file, one stream with the state carried: LanguageModel.evaluate
            result = model.evaluate(model.vocab.encode(read_text(args.file[0])))
            if level == "char":
                result["bits_per_char"] = result["bits_per_token"]
        else:  # the cluster's arithmetic in this process (rnncore.distributed.evaluate_local)
            result = distributed.evaluate_local(args.file, model, chunk_tokens=args.chunk_tokens,
                                                context_tokens=args.context_tokens,
                                                threads=args.threads, progress=args.progress)
    except _cluster_errors() as exc:
        raise SystemExit(f"rnncore eval: {exc}") from None
    if args.json:
        print(json.dumps(result))
    else:
        unit = "character" if level == "char" else "word"
        print(f"{', '.join(args.file)}: {result['tokens']:,} {unit}s predicted; loss "
              f"{result['loss']:.4f} nats/{unit}, perplexity {result['perplexity']:.3f}, "
              f"{result['bits_per_token']:.4f} bits/{unit}")
    return 0


def _generate_many(args):
    """generate --scheduler or --prompts: every prompt as a task of
    rnncore.distributed.generate (or its local twin), printed in order."""
    prompts = [args.prompt] if args.prompts is None else read_text(args.prompts).splitlines()
    sampling = dict(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                    top_p=args.top_p, seed=args.seed, num_samples=args.samples)
    if args.scheduler:
        with distributed.connect(args.scheduler) as client:
            texts = distributed.generate(client, prompts, args.model, threads=args.threads,
                                         progress=args.progress, **sampling)
    else:
        texts = distributed.generate_local(prompts, _load_lm(args.model), threads=args.threads,
                                           **sampling)
    for i, text in enumerate(texts):
        samples = text if isinstance(text, list) else [text]
        for n, sample in enumerate(samples):
            head = f"--- prompt {i + 1}" + (f", sample {n + 1}" if len(samples) > 1 else "")
            sys.stdout.write(sample + "\n" if len(texts) == 1 and len(samples) == 1
                             else f"{head}\n{sample}\n")
    return 0


def cmd_generate(args):
    if args.scheduler or args.prompts is not None:
        try:
            return _generate_many(args)
        except _cluster_errors() as exc:
            raise SystemExit(f"rnncore generate: {exc}") from None
    model = _load_lm(args.model)
    vocab, out = model.vocab, sys.stdout
    # the token before the first generated one, for word spacing: a line end
    # for an empty prompt or one that ends its line, else a word
    at_line_start = not args.prompt or args.prompt.endswith("\n")
    previous = [vocab.index.get("<eos>") if at_line_start else vocab.unk]
    if args.samples == 1:
        out.write(args.prompt)
        out.flush()

        def on_token(ids):  # streamed as produced
            i = int(ids[0])
            out.write(vocab.token_text(i, previous[0]))
            out.flush()
            previous[0] = i
    else:
        on_token = None
    try:
        texts = model.generate(args.prompt, args.max_tokens, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                               num_samples=args.samples, on_token=on_token)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"rnncore generate: {exc}") from None
    except BrokenPipeError:  # the reader stopped (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.samples == 1:
        out.write("\n")
    else:
        for n, text in enumerate(texts):
            out.write(f"--- sample {n + 1}\n{text}\n")
    return 0


def cmd_quantize(args):
    """rnncore quantize IN OUT: the int8 copy of the model in IN written to OUT."""
    try:
        model = load(args.input)
        q = quantize(model, args.dtype)
    except (ValueError, TypeError, OSError) as exc:
        raise SystemExit(f"rnncore quantize: {exc}") from None
    save(q, args.output)
    print(f"{args.output}: {type(model).__name__} quantized to {args.dtype} "
          f"({os.path.getsize(args.input):,} -> {os.path.getsize(args.output):,} bytes)")
    return 0


def _add_quantize_command(sub):
    qu = sub.add_parser("quantize", help="write an int8 copy of a model file (inference only)")
    qu.add_argument("input", help="model file (a layer or a language model)")
    qu.add_argument("output", help="the quantized model file to write")
    qu.add_argument("--dtype", choices=["int8"], default="int8", help="(default int8)")
    qu.set_defaults(func=cmd_quantize)


def _add_lm_commands(sub):
    d = TrainConfig()
    tr = sub.add_parser("train", help="train a language model on text files")
    tr.add_argument("files", nargs="*", help="train [valid [test]] text files")
    tr.add_argument("--data", help="folder with *train*.txt, *valid*.txt, *test*.txt")
    tr.add_argument("--valid-fraction", type=float, default=d.valid_fraction,
                    help="without a valid file: hold out this tail of train (default 0.1)")
    tr.add_argument("--level", choices=["char", "word"], default=d.level)
    tr.add_argument("--cell", choices=[c.name for c in cells.CELLS.values()], default=d.cell)
    for name, typ, help_ in (("embed-size", int, "embedding size"), ("hidden-size", int, "hidden units"),
                             ("layers", int, "stacked layers"),
                             ("dropout", float, "dropout on non-recurrent connections"),
                             ("init-scale", float, "U(-s, s) init of every parameter"),
                             ("unroll", int, "BPTT steps per window"), ("batch", int, "streams"),
                             ("lr", float, "learning rate"), ("momentum", float, "SGD momentum"),
                             ("weight-decay", float, "L2 / decoupled decay"),
                             ("lr-decay", float, "lr factor per epoch after --decay-after"),
                             ("decay-after", int, "epochs at the full lr"),
                             ("clip", float, "global gradient-norm clip (0: none)"),
                             ("epochs", int, "epochs"), ("max-steps", int, "windows per epoch at most"),
                             ("seed", int, "random seed"), ("threads", int, "kernel threads")):
        attr = name.replace("-", "_")
        tr.add_argument("--" + name, type=typ, default=getattr(d, attr),
                        help=f"{help_} (default {getattr(d, attr)})")
    tr.add_argument("--tied", action="store_true", help="tie input and output embeddings")
    tr.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=d.optimizer)
    tr.add_argument("--out", default=d.out, help="checkpoint, written each epoch")
    tr.add_argument("--best", help="best-valid model (default <out>.best.safetensors)")
    tr.add_argument("--log", help="JSON-lines log (default <out>.log.jsonl)")
    tr.add_argument("--plot", help="learning-curve PNG (needs matplotlib)")
    tr.add_argument("--resume", help="continue from this checkpoint")
    tr.add_argument("--no-progress", dest="progress", action="store_false")
    tr.set_defaults(func=cmd_train)
    ev = sub.add_parser("eval", help="loss, perplexity and bits per token of a text file")
    ev.add_argument("file", nargs="+", help="text files (their predictions pooled)")
    ev.add_argument("--model", help="model file (default: the embedded Shakespeare char model)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--chunk-tokens", type=int, default=None,
                    help="evaluate in chunks of N tokens, each from a fresh state warmed up over "
                         "--context-tokens (default: one stream per file; with --scheduler "
                         f"{distributed.DEFAULT_CHUNK_TOKENS}); the same N gives the same "
                         "numbers locally and on a cluster")
    ev.add_argument("--context-tokens", type=int, default=distributed.DEFAULT_CONTEXT_TOKENS,
                    help="warm-up tokens before each chunk "
                         f"(default {distributed.DEFAULT_CONTEXT_TOKENS})")
    _add_cluster_arguments(ev)
    ev.set_defaults(func=cmd_eval)
    ge = sub.add_parser("generate", help="generate text, streamed to stdout")
    ge.add_argument("prompt", nargs="?", default="",
                    help="text to continue (default: the start of a text)")
    ge.add_argument("--model", help="model file (default: the embedded Shakespeare char model)")
    ge.add_argument("--max-tokens", type=int, default=500,
                    help="tokens (characters or words) to generate (default 500)")
    ge.add_argument("--temperature", type=float, default=0.8, help="0: greedy (default 0.8)")
    ge.add_argument("--top-k", type=int, default=None,
                    help="sample among the k most likely tokens only")
    ge.add_argument("--top-p", type=float, default=None,
                    help="sample among the most likely tokens holding probability p (nucleus)")
    ge.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    ge.add_argument("--samples", type=int, default=1, help="samples drawn in one batch")
    ge.add_argument("--prompts", help="a file of prompts, one a line (each its own task, "
                                      "seeded by (--seed, its line number))")
    _add_cluster_arguments(ge)
    ge.set_defaults(func=cmd_generate)


def _add_cluster_arguments(parser):
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on the Dask cluster at ADDRESS (tcp://host:8786), or "
                             "local:N for N worker processes on this machine (needs "
                             "rnncore[dask])")
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads per task (default: one per task on a cluster, "
                             "each worker running as many tasks as it has threads)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar over tasks")


def build_parser():
    parser = argparse.ArgumentParser(prog="rnncore", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    info = sub.add_parser("info", help="configuration and a small timed forward pass (default)")
    info_module.add_arguments(info)
    info.set_defaults(func=info_module.main_from_args)
    bench = sub.add_parser("bench", help="speed against PyTorch, ONNX Runtime and the reference")
    bench_module.add_arguments(bench)
    bench.set_defaults(func=bench_module.main_from_args)
    _add_lm_commands(sub)
    _add_quantize_command(sub)
    seq2seq_cli.add_commands(sub)
    classify_cli.add_commands(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["info"] + argv  # the default command
    args = parser.parse_args(argv)
    if args.command == "info":
        for name in ("steps", "batch", "hidden", "layers", "repeat"):
            if getattr(args, name) < 1:
                parser.error(f"--{name} must be >= 1")
        if args.threads is not None:
            if args.threads < 1:
                parser.error("--threads must be >= 1")
            runtime.set_num_threads(args.threads)
    if args.command == "seq2seq":
        seq2seq_cli.configure(args)
    return args.func(args)
