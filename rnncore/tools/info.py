"""``rnncore info`` (the command's default): the configuration, then a small
forward pass of each cell kind on the active backend and on the float64
NumPy reference, with both times and the largest difference."""
import time

import numpy as np

from ..engine import cells, runtime
from ..engine.config import show_config
from ..engine.layers import make_layer


def _median_ms(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main_from_args(args):
    show_config()
    print()
    T, N, H = args.steps, args.batch, args.hidden
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, H), dtype=np.float32)
    print(f"forward pass, T={T} N={N} I=H={H}, {args.layers} layer(s), "
          f"{runtime.get_num_threads()} thread(s), median of {args.repeat}")
    print(f"{'cell':>6} {runtime.backend() + ' ms':>10} {'reference ms':>13} {'speed-up':>9} {'max |diff|':>11}")
    for mode in ("RNN_TANH", "LSTM", "GRU"):
        name = cells.cell(mode).name
        layer = make_layer(cells.cell(mode), H, H, num_layers=args.layers, seed=0)
        fast_ms = _median_ms(lambda: layer(x), args.repeat)
        y_fast = layer(x)[0]
        with runtime.using_backend("reference"):
            ref_ms = _median_ms(lambda: layer(x), max(1, args.repeat // 3))
            y_ref = layer(x)[0]
        diff = float(np.max(np.abs(y_fast - y_ref)))
        print(f"{name:>6} {fast_ms:>10.3f} {ref_ms:>13.3f} {ref_ms / fast_ms:>8.1f}x {diff:>11.2e}")
    return 0


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=50, help="sequence length T (default 50)")
    parser.add_argument("--batch", type=int, default=16, help="batch size N (default 16)")
    parser.add_argument("--hidden", type=int, default=256, help="I = H (default 256)")
    parser.add_argument("--layers", type=int, default=1, help="stacked layers (default 1)")
    parser.add_argument("--repeat", type=int, default=10, help="timed repeats (default 10)")
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads (default: all cores)")
