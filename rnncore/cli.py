"""The ``rnncore`` command (also ``python -m rnncore``).

``rnncore info`` (the default) prints the configuration, then runs a small
forward pass of each cell on the active backend and on the float64 NumPy
reference, and prints both times and the largest difference.

``rnncore bench`` compares rnncore with PyTorch, ONNX Runtime and the
reference (see rnncore/bench.py); ``rnncore bench --quick`` is a one-minute
subset.
"""
import argparse
import sys
import time

import numpy as np

from . import _api
from ._config import show_config
from .layers import GRU, LSTM, RNN


def _median_ms(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def cmd_info(args):
    show_config()
    print()
    T, N, H = args.steps, args.batch, args.hidden
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, H), dtype=np.float32)
    print(f"forward pass, T={T} N={N} I=H={H}, {args.layers} layer(s), "
          f"{_api.get_num_threads()} thread(s), median of {args.repeat}")
    print(f"{'cell':>6} {_api.backend() + ' ms':>10} {'reference ms':>13} {'speed-up':>9} {'max |diff|':>11}")
    for name, cls in (("rnn", RNN), ("lstm", LSTM), ("gru", GRU)):
        layer = cls(H, H, num_layers=args.layers, seed=0)
        fast_ms = _median_ms(lambda: layer(x), args.repeat)
        y_fast = layer(x)[0]
        with _api.using_backend("reference"):
            ref_ms = _median_ms(lambda: layer(x), max(1, args.repeat // 3))
            y_ref = layer(x)[0]
        diff = float(np.max(np.abs(y_fast - y_ref)))
        print(f"{name:>6} {fast_ms:>10.3f} {ref_ms:>13.3f} {ref_ms / fast_ms:>8.1f}x {diff:>11.2e}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="rnncore", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    info = sub.add_parser("info", help="configuration and a small timed forward pass (default)")
    info.add_argument("--steps", type=int, default=50, help="sequence length T (default 50)")
    info.add_argument("--batch", type=int, default=16, help="batch size N (default 16)")
    info.add_argument("--hidden", type=int, default=256, help="I = H (default 256)")
    info.add_argument("--layers", type=int, default=1, help="stacked layers (default 1)")
    info.add_argument("--repeat", type=int, default=10, help="timed repeats (default 10)")
    info.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    info.set_defaults(func=cmd_info)
    bench = sub.add_parser("bench", help="speed against PyTorch, ONNX Runtime and the reference")
    from . import bench as bench_module
    bench_module.add_arguments(bench)
    bench.set_defaults(func=bench_module.main_from_args)
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
            _api.set_num_threads(args.threads)
    return args.func(args)
