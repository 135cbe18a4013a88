"""Sweep rnncore's GEMM blocking on this machine and print the best against
the choice derived from the CPU's caches and registers: the same sweep as
``rnncore bench --tune`` (rnncore/tools/tune.py, where the method is
described). Examples:

    python benchmarks/tune_blocking.py
    RNNCORE_CACHE=32K,512K,32M python benchmarks/tune_blocking.py   # Zen 3's caches
    RNNCORE_DISABLE_ISA=avx512 python benchmarks/tune_blocking.py   # the AVX2 path
"""
import sys

from rnncore.tools.tune import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
