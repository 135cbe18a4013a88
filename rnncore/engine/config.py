"""What this build of rnncore is and does: version, backend, CPU paths,
OpenMP, threads."""
import platform

from .._version import __version__
from . import quantized, runtime

try:
    from .. import _build_info  # written by setup.py
except ImportError:  # a source tree that was never built
    _build_info = None


def config():
    """The build and runtime configuration as a dict (see :func:`show_config`)."""
    c = runtime.c_ops()
    info = _build_info
    build = {} if info is None else {"openmp_status": info.openmp_status,
                                     "c_flags": " ".join(info.c_flags), "compiler": info.compiler}
    return {
        "version": __version__,
        "backend": runtime.backend(),
        "extension": "loaded" if c is not None else f"missing ({runtime.CORE_ERROR})",
        "compiled_cpu_paths": c.compiled_isas() if c else [],
        "cpu_paths": [i for i in c.compiled_isas() if c.isa_available(i)] if c else [],
        "cpu_path": c.isa() if c is not None and runtime.ops() is c else "numpy",
        "int8_cpu_path": c.qisa() if c is not None and runtime.ops() is c else "numpy",
        "int8_activations": quantized.activation_range(),
        "int8_fp32_fallback": quantized.fp32_fallback(),
        "openmp": bool(c is not None and c.has_openmp()),
        "num_threads": runtime.get_num_threads(),
        "machine": platform.machine(),
        **build,
        **_blocking(c),
    }


def _blocking(c):
    """The caches the GEMM blocking was derived from and what it chose
    (csrc/src/blocking.c), or nothing without the extension."""
    if c is None:
        return {}
    b = c.blocking()
    return {
        "cache_l1d": b["l1d"], "cache_l2": b["l2"], "cache_l3": b["l3"],
        "cache_source": b["cache_source"] + (f" ({b['cache_error']})" if b["cache_error"] else ""),
        "vector_registers": b["vregs"],
        "gemm_tile": f"{b['mr']}x{b['tile_cols']}",
        "gemm_kchunk": b["kchunk"], "gemm_kc": b["kc"], "gemm_mc": b["mc"], "gemm_nc": b["nc"],
        "gemm_prefetch": b["prefetch"],
        "blocking_why": b["why"].splitlines(),
    }


def _size(n):
    return f"{n // (1 << 20)} MB" if n % (1 << 20) == 0 else f"{n // 1024} KB" if n % 1024 == 0 \
        else f"{n} B"


def show_config():
    """Print version, backend, the CPU paths this build and machine offer and
    the one in use, OpenMP on/off and threads; the caches detected (or set by
    RNNCORE_CACHE) and the GEMM blocking derived from them, with the rule of
    each choice."""
    for key, value in config().items():
        if key == "blocking_why":
            print(f"{'why':>14}: " + f"\n{'':>16}".join(value))
            continue
        if key.startswith("cache_l"):
            value = _size(value)
        if isinstance(value, list):
            value = ", ".join(value) or "none"
        if isinstance(value, bool):
            value = "on" if value else "off"
        print(f"{key:>14}: {value}")
