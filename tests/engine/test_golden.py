"""Results are bit-identical to those of the code before the package layout
change (tests/golden: the grid, and the hashes the old code recorded per
backend and CPU path), at every thread count. Re-recorded once, when the
kernels moved to one source per cell (isa/cells/): the LSTM variants and the
reset-before GRU went from scalar to SIMD code on the AVX paths, and the
generic path to the shared SIMD sources; every other array of the AVX paths
(backward included, now SIMD too) kept its bits. The reference's language
model arrays were re-recorded when its products moved to float64
(reference.matmul): in float32 they carried the bits of NumPy's BLAS kernel
for the CPU, and an Intel Xeon's (OpenBLAS SkylakeX) differed from the AMD
Zen's (Haswell) on which they were recorded; they are now the same under
OPENBLAS_CORETYPE=Haswell, SkylakeX and Prescott. The avx2 and generic
paths were re-recorded (``record.py avx2 generic``) when a GEMM row tile of
one row (a batch-1 step, a 1-row tail) became one pass over the whole panel
row with 2 accumulator sets instead of one pass per tile width with 4: 127
and 297 of their 861 arrays changed bits, the avx512 path's tile already
spanned the panel and kept every bit."""
import json
import sys
from pathlib import Path

import pytest

import rnncore
from rnncore.engine import runtime
from conftest import C_OPS, ISAS

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
sys.path.insert(0, str(GOLDEN))
from grid import digest, run_grid  # noqa: E402

HASHES = json.loads((GOLDEN / "hashes.json").read_text())


@pytest.mark.parametrize("path", ["reference", "avx512", "avx2", "generic"])
def test_bit_identical_to_the_recorded_results(path, n_threads):
    if path != "reference" and path not in ISAS:
        pytest.skip(f"CPU path {path} is not available here")
    saved = C_OPS.isa() if C_OPS else None
    try:
        if path != "reference":
            C_OPS.set_isa(path)
        with runtime.using_backend("reference" if path == "reference" else "c"):
            got = run_grid()
    finally:
        if saved:
            C_OPS.set_isa(saved)
    expected = HASHES[path]
    assert sorted(got) == sorted(expected)
    differ = [key for key in expected if digest(got[key]) != expected[key]]
    assert not differ, f"{len(differ)} of {len(expected)} arrays differ, e.g. {differ[:5]}"
    assert rnncore.get_num_threads() == n_threads
