"""The packed-weight arena (rnncore/engine/arena.py): 2 MB-aligned advised
chunks, arrays carved back to back without overlap, chunks released with
their last array, RNNCORE_HUGE_PAGES=0 and bad values, and identical
results either way."""
import gc
import mmap
import os
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest

import rnncore
from rnncore.engine import arena, runtime

needs_arena = pytest.mark.skipif(not arena.enabled(), reason="arena off here (not Linux, or "
                                 "RNNCORE_HUGE_PAGES=0): packed weights use NumPy's heap")


def mapping(a):
    """The mmap object under an arena array."""
    while isinstance(a, np.ndarray):
        a = a.base
    return a.obj if isinstance(a, memoryview) else a


def span(a):
    return a.ctypes.data, a.ctypes.data + a.nbytes


@needs_arena
def test_arrays_aligned_disjoint_and_writable():
    sizes = [arena.SMALLEST, 100_000, 3 << 20, 70_001, 2 << 20, 5]
    arrays = [arena.empty(n, np.uint8) for n in sizes] + [arena.empty(50_000, np.float32)]
    for a, n in zip(arrays, sizes + [50_000]):
        assert a.size == n and a.flags.writeable and a.flags.c_contiguous
        if a.nbytes >= arena.SMALLEST:
            assert a.ctypes.data % arena.ALIGN == 0
            assert isinstance(mapping(a), mmap.mmap)
    assert arrays[-1].dtype == np.float32
    spans = sorted(span(a) for a in arrays)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    for i, a in enumerate(arrays):  # every byte its own
        a.view(np.uint8)[:] = i
    for i, a in enumerate(arrays):
        assert (a.view(np.uint8) == i).all()


@needs_arena
def test_small_arrays_share_a_chunk():
    before = arena.mapped_bytes()
    arrays = [arena.empty(40_000, np.float32) for _ in range(40)]  # 6.4 MB in all
    assert arena.mapped_bytes() - before <= 6.4e6 + 2 * arena.PAGE
    assert len({id(mapping(a)) for a in arrays}) <= 5


@needs_arena
def test_chunks_start_on_2mb_and_are_released_with_their_last_array():
    a = arena.empty(5 << 20, np.uint8)  # bigger than any current chunk's room: a fresh chunk
    m = mapping(a)
    base = np.frombuffer(m, np.uint8).ctypes.data
    start = a.ctypes.data
    assert (start - base) < arena.PAGE and start % arena.PAGE == 0
    ref = weakref.ref(m)
    del a, m
    gc.collect()
    # the current chunk may be this one; a second big array moves the arena on
    b = arena.empty(7 << 20, np.uint8)
    del b
    gc.collect()
    assert ref() is None


@needs_arena
def test_layers_pack_into_the_arena():
    lstm = rnncore.LSTM(300, 300, num_layers=2, bidirectional=True)
    for name, packed in lstm._packed.items():
        assert packed.ctypes.data % arena.ALIGN == 0, name
        assert not packed.flags.writeable, name
        assert isinstance(mapping(packed), mmap.mmap), name
    q = rnncore.quantize(rnncore.GRU(256, 256), dtype="int8")
    x = np.random.default_rng(0).standard_normal((5, 2, 256)).astype(np.float32)
    assert np.isfinite(q(x)[0]).all()


@needs_arena
def test_concurrent_allocations_never_overlap():
    out, lock = [], threading.Lock()

    def work():
        mine = [arena.empty(30_000 + 64 * i, np.uint8) for i in range(50)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = sorted(span(a) for a in out)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))


SCRIPT = """
import numpy as np, rnncore
from rnncore.engine import arena
rng = np.random.default_rng(1)
out = []
for name in ("RNN", "LSTM", "GRU"):
    layer = getattr(rnncore, name)(200, 130, num_layers=2, seed=3)
    x = rng.standard_normal((7, 3, 200)).astype(np.float32)
    out.append(layer(x)[0])
    out.append(rnncore.quantize(layer, dtype="int8")(x)[0])
np.save(OUT, np.concatenate([o.ravel() for o in out]))
print(arena.describe())
"""


def run(tmp_path, setting):
    path = tmp_path / f"out_{setting}.npy"
    env = dict(os.environ, RNNCORE_HUGE_PAGES=setting)
    r = subprocess.run([sys.executable, "-c", SCRIPT.replace("OUT", repr(str(path)))], env=env,
                       capture_output=True, text=True, timeout=300)
    return r, path


@pytest.mark.skipif(runtime.c_ops() is None, reason="needs the C extension")
def test_same_results_with_and_without_the_arena(tmp_path):
    r0, p0 = run(tmp_path, "0")
    r1, p1 = run(tmp_path, "1")
    assert r0.returncode == 0 and r1.returncode == 0, r0.stderr + r1.stderr
    assert "NumPy heap (RNNCORE_HUGE_PAGES=0)" in r0.stdout
    if arena._supported():
        assert "2 MB-aligned arena" in r1.stdout
    np.testing.assert_array_equal(np.load(p0), np.load(p1))


def test_bad_setting_is_named():
    env = dict(os.environ, RNNCORE_HUGE_PAGES="maybe")
    r = subprocess.run([sys.executable, "-c", "import rnncore"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    assert "RNNCORE_HUGE_PAGES must be 0 or 1, got 'maybe'" in r.stderr


def test_show_config_says_where_packed_weights_live(capsys):
    rnncore.show_config()
    line = [s for s in capsys.readouterr().out.splitlines() if "packed_weights" in s]
    assert len(line) == 1
    assert ("2 MB-aligned arena" in line[0]) == arena.enabled()
