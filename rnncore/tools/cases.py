"""The case lists that tests and benchmarks share: the benchmark grids of
``rnncore bench`` and the pytest-benchmark suite, their case names, and the
odd-size grid the kernel tests sweep (sizes that are not multiples of any
vector width, T = 1 and N = 1 included)."""
import itertools

from ..engine import cells

__all__ = ["CELL", "CELLS", "FULL", "QUICK", "TRAIN_FULL", "TRAIN_QUICK", "STEP_FULL",
           "STEP_QUICK", "REGRESSION", "KERNEL_GRID", "GRADIENT_GRID", "VARIANTS", "case_name"]

# the benchmarked cells, named by their PyTorch class (as in the case names)
CELL = {"RNN": cells.cell("RNN_TANH"), "LSTM": cells.cell("LSTM"), "GRU": cells.cell("GRU")}
CELLS = tuple(CELL)

# rnncore bench: forward passes, T = 100, I = H
FULL = dict(cells=CELLS, hidden=(256, 512, 1024), batch=(1, 16, 64), steps=100, threads=(1, 2))
QUICK = dict(cells=CELLS, hidden=(256,), batch=(1, 16), steps=100, threads=(1,))
# training: 2 stacked layers, N = 64, T = 35 (Zaremba et al.'s unroll)
TRAIN_FULL = dict(cells=CELLS, hidden=(256, 512), batch=(64,), steps=35, threads=(1, 2))
TRAIN_QUICK = dict(cells=CELLS, hidden=(256,), batch=(64,), steps=35, threads=(1,))
# streaming: one time step at N = 1
STEP_FULL = dict(cells=CELLS, hidden=(256, 512, 1024), batch=(1,), steps=1, threads=(1, 2))
STEP_QUICK = dict(cells=CELLS, hidden=(512,), batch=(1,), steps=1, threads=(1,))
# the pytest-benchmark regression suite (benchmarks/test_bench_*.py): (cell, T, N, H)
REGRESSION = [(cell, 100, n, h) for cell in CELLS for h in (256, 512) for n in (1, 16, 64)]

# kernel tests: every cell variant on (N, T, H, I)
VARIANTS = tuple(cells.VARIANTS)
KERNEL_GRID = list(itertools.product([1, 5], [1, 9], [1, 7, 17, 64], [1, 3, 33]))
GRADIENT_GRID = list(itertools.product([1, 5], [1, 6], [1, 7, 40], [3]))


def case_name(cell, T, N, H, kind="forward", layers=1):
    """The compact name of a benchmark case (``lstm_t100_n16_i256_h256``)."""
    if kind == "train":
        return f"train_{cell.lower()}_l{layers}_t{T}_n{N}_h{H}"
    if kind == "step":
        return f"step_{cell.lower()}_n{N}_h{H}"
    return f"{cell.lower()}_t{T}_n{N}_i{H}_h{H}"
