"""Packed weights on 2 MB pages: one process-wide arena of 2 MB-aligned
anonymous mappings, advised MADV_HUGEPAGE, that the packed (fp32 and int8)
weights are carved from.

Why: at batch 1 a step reads every weight once from L2, and with 4 KB pages
a 1 MB weight spans 256 pages, more than the first-level TLB holds; on
2 MB pages it spans one. Measured (AMD EPYC Zen 5, 1 thread, T=100, N=1):
LSTM H=256 fp32 1.02-1.17 -> 0.91-0.97 ms, GRU H=512 int8 0.84-0.89 ->
0.76-0.79 ms; no change once the weights outgrow the L2.

Why an arena and not one mapping per array: a huge page is resident as a
whole once touched, so a mapping per 100 KB array would hold 2 MB of
memory for it. Arrays are packed back to back (64-byte aligned) into the
current chunk; a new chunk is mapped only when the next array does not
fit, so at most one partly used chunk exists. A chunk is unmapped when the
last array carved from it is freed (each array keeps its mapping alive).

Linux only (elsewhere, or with RNNCORE_HUGE_PAGES=0, plain NumPy memory);
where THP is off the mappings are ordinary 4 KB pages, which costs nothing.
"""
import mmap
import os
import threading

import numpy as np

__all__ = ["empty", "enabled", "mapped_bytes", "describe"]

PAGE = 2 << 20  # the x86-64 and arm64 (4 KB granule) transparent huge page
ALIGN = 64      # every array starts on a cache line
SMALLEST = 16 << 10  # below this an array stays in NumPy's heap: its TLB cost is nil

_lock = threading.Lock()
_chunk = None   # the mapping arrays are carved from now
_used = 0       # bytes of it handed out
_mapped = 0     # bytes of all chunks mapped so far (for show_config)


def _setting():
    raw = os.environ.get("RNNCORE_HUGE_PAGES", "1").strip().lower()
    if raw in ("0", "off", "no", "false"):
        return False
    if raw in ("", "1", "on", "yes", "true"):
        return True
    raise ValueError(f"RNNCORE_HUGE_PAGES must be 0 or 1, got {raw!r}")


def _supported():
    return (hasattr(mmap, "MADV_HUGEPAGE") and hasattr(mmap, "MAP_ANONYMOUS")
            and hasattr(mmap.mmap, "madvise"))


_ENABLED = _setting() and _supported()


def enabled():
    """Whether packed weights go on advised 2 MB-aligned mappings."""
    return _ENABLED


def mapped_bytes():
    """Bytes of all the chunks mapped so far (freed ones included)."""
    return _mapped


def _thp_mode():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return "unknown"
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else text.strip()


def describe():
    """Where packed weights live, for show_config()."""
    if not _ENABLED:
        why = "RNNCORE_HUGE_PAGES=0" if _supported() else "no madvise(MADV_HUGEPAGE) here"
        return f"NumPy heap ({why})"
    return (f"2 MB-aligned arena, MADV_HUGEPAGE (kernel THP mode: {_thp_mode()}), "
            f"{_mapped >> 20} MB mapped so far")


def _map(nbytes):
    """A fresh chunk of at least `nbytes`, starting on a 2 MB boundary."""
    global _mapped
    size = -(-nbytes // PAGE) * PAGE
    raw = mmap.mmap(-1, size + PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = np.frombuffer(raw, dtype=np.uint8)
    skip = (-base.ctypes.data) % PAGE
    chunk = base[skip:skip + size]
    try:
        raw.madvise(mmap.MADV_HUGEPAGE, skip, size)
    except OSError:  # e.g. THP compiled out: ordinary pages, still correct
        pass
    _mapped += size
    return chunk


def empty(count, dtype):
    """An uninitialised writable 1-D array of `count` items of `dtype`, on
    the arena when it is enabled and the array is big enough to gain."""
    dtype = np.dtype(dtype)
    nbytes = int(count) * dtype.itemsize
    if not _ENABLED or nbytes < SMALLEST:
        return np.empty(count, dtype=dtype)
    global _chunk, _used
    with _lock:
        start = -(-_used // ALIGN) * ALIGN
        if _chunk is None or start + nbytes > _chunk.size:
            fresh = _map(nbytes)
            # keep whichever chunk has more room left for the next arrays
            if _chunk is None or fresh.size - nbytes >= _chunk.size - start:
                _chunk, start = fresh, 0
            else:
                return fresh[:nbytes].view(dtype)
        _used = start + nbytes
        return _chunk[start:start + nbytes].view(dtype)
