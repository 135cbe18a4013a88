"""Forward-pass comparison of rnncore, PyTorch, ONNX Runtime and the NumPy
reference; the same program as ``rnncore bench`` (see rnncore/tools/bench.py).

    python benchmarks/bench_forward.py --quick
    python benchmarks/bench_forward.py --json results.json      # the full grid
"""
import argparse

from rnncore.tools import bench

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench.add_arguments(parser)
    raise SystemExit(bench.main_from_args(parser.parse_args()))
