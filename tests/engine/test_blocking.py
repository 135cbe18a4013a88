"""GEMM blocking derived from the CPU (csrc/src/blocking.c): the caches and
registers reported, the RNNCORE_CACHE override and its bad values, every
path's tile fitting its register file, and results that do not depend on
the blocking: identical for every kchunk, KC, MC and NC (in process, with
rnc_set_blocking) and under three RNNCORE_CACHE settings (in subprocesses,
against the float64 reference too); the tile height regroups the sums of a
1-3 row tail only, within float32 rounding."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnncore
from conftest import C_OPS, ISAS, backend
from test_training import compare, random_case, run_train

pytestmark = pytest.mark.skipif(C_OPS is None, reason="needs the C extension")

HERE = Path(__file__).resolve().parent
# blocking-sensitive shapes: K = 130 and 200 > kchunk 16, 48 and 128,
# 4H = 800 columns > NC, T*N = 85 rows = 7 x 12 + 1 (a 1-row tail for the
# backward's dx GEMM at mr = 12), N = 17 and N = 1 (the step's 1-row tile)
SHAPES = [dict(T=5, N=17, I=130, H=200), dict(T=3, N=1, I=130, H=200)]
CELLS = ["RNN_TANH", "LSTM", "GRU", "GRU_RB", "LSTM_PEEPHOLE_CIFG"]

# the child of the three-settings test: C against the reference, then a
# digest of every C result, and the blocking it ran with
CHILD = r"""
import hashlib, json, sys
sys.path[:0] = sys.argv[1:3]
import numpy as np, rnncore
from conftest import backend
from test_blocking import SHAPES, CELLS, run_case, digest
from test_training import compare, random_case, run_train
h = hashlib.sha256()
for mode in CELLS:
    for shape in SHAPES:
        ours, ref = run_case(mode, shape, with_reference=True)
        compare(ours, ref, f"{mode} {shape}")
        digest(h, ours)
cfg = rnncore.config()
print(json.dumps({"digest": h.hexdigest(), "config": cfg}))
"""


def run_case(mode, shape, with_reference=False):
    rng = np.random.default_rng(5)
    layer, *rest = random_case(mode, rng, **shape, seed=1)
    with backend("c"):
        ours = run_train(layer, *rest)
    if not with_reference:
        return ours
    with backend("reference"):
        ref = run_train(layer, *rest)
    return ours, ref


def digest(h, results):
    for r in results:
        if isinstance(r, dict):
            for k in sorted(r):
                h.update(np.ascontiguousarray(r[k]).tobytes())
        elif r is not None:
            h.update(np.ascontiguousarray(r).tobytes())


def all_results():
    h = hashlib.sha256()
    for mode in CELLS:
        for shape in SHAPES:
            digest(h, run_case(mode, shape))
    return h.hexdigest()


@pytest.fixture
def restore_blocking():
    saved = C_OPS.isa()
    yield
    C_OPS.set_isa(saved)
    C_OPS.set_blocking()


def test_config_reports_caches_and_blocking(capsys):
    cfg = rnncore.config()
    b = C_OPS.blocking()
    assert cfg["cache_l1d"] == b["l1d"] >= 4096 and cfg["cache_l2"] == b["l2"] >= b["l1d"]
    assert cfg["cache_l3"] == b["l3"] >= b["l2"]
    assert cfg["gemm_tile"] == f"{b['mr']}x{b['tile_cols']}"
    for key in ("kchunk", "kc", "mc", "nc"):
        assert cfg[f"gemm_{key}"] == b[key] > 0
    assert b["kc"] % 128 == 0 and b["mc"] % b["mr"] == 0 and b["nc"] % 32 == 0
    why = "\n".join(cfg["blocking_why"])
    for word in ("tile", "kchunk", "KC", "MC", "NC", "L1d", "L2", "recurrent", "step walk"):
        assert word in why
    rnncore.show_config()
    out = capsys.readouterr().out
    assert "cache_l2" in out and "gemm_tile" in out and "fills L1d" in out


def run_python(code, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("RNNCORE_CACHE",)}
    full.update(env)
    # cwd "/": `python -c` puts the working directory first on sys.path, and
    # the source tree's rnncore has no extension when the package is installed
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=full, cwd="/")


BLOCKING = "import json, rnncore; c = rnncore.config(); print(json.dumps(c))"


def test_cache_override_with_suffixes_drives_the_choice():
    out = run_python(BLOCKING, RNNCORE_CACHE="32K,512K,32M")
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert (cfg["cache_l1d"], cfg["cache_l2"], cfg["cache_l3"]) == (32 << 10, 512 << 10, 32 << 20)
    assert cfg["cache_source"] == "RNNCORE_CACHE"
    # the rules at 32 KB L1d / 512 KB L2 (blocking.c), for the active tile
    mr = int(cfg["gemm_tile"].split("x")[0])
    kchunk = (32 << 10) // (4 * 32)  # the panel chunk fills L1d: 256 rows
    assert cfg["gemm_kchunk"] == kchunk
    assert cfg["gemm_kc"] == max(128, 2 * kchunk // 128 * 128)
    # MC: the packed A block fills an eighth of L2 (64 KB here), a multiple of mr
    assert cfg["gemm_mc"] == max(mr, (512 << 10) // 8 // (4 * cfg["gemm_kc"]) // mr * mr)
    # NC: the group fills a quarter of L3 (8 MB here), at most the 2 MB scratch
    assert cfg["gemm_nc"] == min(8 << 20, 2 << 20) // (cfg["gemm_kc"] * 128) * 32
    # ... or L2 where a quarter of L3 is smaller
    small = json.loads(run_python(BLOCKING, RNNCORE_CACHE="32K,512K,1M").stdout)
    assert small["gemm_nc"] == (512 << 10) // (small["gemm_kc"] * 128) * 32
    plain = run_python(BLOCKING, RNNCORE_CACHE="32768,524288,33554432")
    assert json.loads(plain.stdout)["gemm_kchunk"] == kchunk
    # the batch-1 tiles' prefetch: none, whatever the L1d (blocking.c says why)
    assert cfg["gemm_prefetch"] == 0 and "hardware prefetchers" in "\n".join(cfg["blocking_why"])
    big = json.loads(run_python(BLOCKING, RNNCORE_CACHE="48K,2M,32M").stdout)
    assert big["gemm_prefetch"] == 0 and "hardware prefetchers" in "\n".join(big["blocking_why"])


@pytest.mark.parametrize("value", ["abc", "32K,512K", "32K,512K,32M,1G", "0,512K,32M",
                                   "1M,512K,32M", "32K,-1,32M", "32Q,512K,32M", "", "99999999999999999999,1,1"])
def test_bad_cache_override_warns_and_falls_back(value):
    out = run_python(BLOCKING, RNNCORE_CACHE=value)
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert cfg["cache_source"].split(" ")[0] in ("cpuid", "sysconf", "default")
    if value:  # an empty value means no override
        assert "RNNCORE_CACHE" in out.stderr and "ignored" in out.stderr
        assert "ignored" in cfg["cache_source"]


@pytest.mark.parametrize("path", ISAS)
def test_every_path_tile_fits_its_registers(path, restore_blocking):
    C_OPS.set_isa(path)
    b = C_OPS.blocking()
    assert b["mr"] in b["tile_rows"] and b["vregs"] == {"avx512": 32, "avx2": 16, "generic": 16}[path]
    if path != "generic":  # tiles of mr x 2 vectors: accumulators + panel vectors + broadcast
        assert b["tile_cols"] == 2 * b["vector_floats"]
        assert 2 * b["mr"] + 2 + 1 <= b["vregs"]
        assert 48 % b["mr"] == 0
        spilling = [mr for mr in b["tile_rows"] if 2 * mr + 3 > b["vregs"]]
        assert all(mr > b["mr"] for mr in spilling)
    if path == "avx2":
        assert b["mr"] == 6 and 12 in b["tile_rows"]  # the AVX-512 tile height spills here


def test_set_blocking_rejects_out_of_range(restore_blocking):
    before = C_OPS.blocking()
    for bad in (dict(mr=7), dict(mr=-1), dict(kc=100), dict(kc=4096), dict(mc=before["mr"] + 1),
                dict(mc=100000), dict(nc=33), dict(nc=4096, kc=1024), dict(kchunk=5000),
                dict(prefetch=-1), dict(prefetch=257)):
        with pytest.raises(ValueError, match="blocking out of range"):
            C_OPS.set_blocking(**bad)
        assert C_OPS.blocking() == before


@pytest.mark.parametrize("path", ISAS)
def test_results_identical_for_every_block_size(path, restore_blocking):
    C_OPS.set_isa(path)
    derived = all_results()
    mr = C_OPS.blocking()["mr"]
    for blocks in (dict(kchunk=16, kc=128, mc=mr, nc=32, prefetch=256),
                   dict(kchunk=1024, kc=1024, mc=256 // mr * mr, nc=512, prefetch=0),
                   dict(kchunk=48, kc=384, nc=96, prefetch=8)):
        C_OPS.set_blocking(**blocks)
        assert all_results() == derived, blocks
    C_OPS.set_blocking()
    assert all_results() == derived


@pytest.mark.parametrize("path", [p for p in ISAS if p != "generic"])
def test_tile_height_changes_tails_only_within_rounding(path, restore_blocking):
    C_OPS.set_isa(path)
    base = {(m, i): run_case(m, s) for m in ("LSTM", "GRU") for i, s in enumerate(SHAPES)}
    for mr in C_OPS.blocking()["tile_rows"]:
        C_OPS.set_blocking(mr=mr)
        for (mode, i), ours in base.items():
            # a K-term float32 sum in another grouping: a few ulps of the terms' scale
            got = run_case(mode, SHAPES[i])
            for u, v in zip(got[:6], ours[:6]):
                if v is not None:
                    np.testing.assert_allclose(u, v, rtol=2e-5, atol=2e-6)
            for k in ours[6]:
                np.testing.assert_allclose(got[6][k], ours[6][k], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("caches", ["32K,512K,32M", "32K,1M,39424K", "16K,128K,2M"],
                         ids=["zen3", "xeon_cascade_lake", "small"])
def test_parity_under_other_cpus_caches(caches):
    """Forward and backward of each cell against the reference with the
    blocking another CPU's caches give, and bit-identical to this process's."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(HERE), str(HERE.parent)],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, RNNCORE_CACHE=caches), cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["config"]["cache_source"] == "RNNCORE_CACHE"
    assert got["digest"] == all_results()
