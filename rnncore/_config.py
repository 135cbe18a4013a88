"""What this build of rnncore is and does: version, backend, CPU paths,
OpenMP, threads."""
import platform

from . import _api


def config():
    """The build and runtime configuration as a dict (see :func:`show_config`)."""
    from . import __version__
    core = _api._core
    try:
        from . import _build_info as info
        build = {"openmp_status": info.openmp_status, "c_flags": " ".join(info.c_flags),
                 "compiler": info.compiler}
    except ImportError:
        build = {}
    return {
        "version": __version__,
        "backend": _api.backend(),
        "extension": "loaded" if core is not None else f"missing ({_api._CORE_ERROR})",
        "compiled_cpu_paths": core.compiled_isas() if core else [],
        "cpu_paths": [i for i in core.compiled_isas() if core.isa_available(i)] if core else [],
        "cpu_path": core.isa() if core is not None and _api.backend() == "c" else "numpy",
        "openmp": bool(core is not None and core.has_openmp()),
        "num_threads": _api.get_num_threads(),
        "machine": platform.machine(),
        **build,
    }


def show_config():
    """Print version, backend, the CPU paths this build and machine offer and
    the one in use, OpenMP on/off and threads."""
    for key, value in config().items():
        if isinstance(value, list):
            value = ", ".join(value) or "none"
        if isinstance(value, bool):
            value = "on" if value else "off"
        print(f"{key:>14}: {value}")
