"""The C library builds and runs from a plain C program, without Python
(csrc/tests/test_forward.c), with and without OpenMP; the AMX kernel on
emulated tiles (csrc/tests/test_amx_emulated.c)."""
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CC = shutil.which("cc") or shutil.which("gcc")


@pytest.mark.skipif(CC is None or not (ROOT / "csrc").is_dir(), reason="needs a C compiler and csrc/")
@pytest.mark.parametrize("openmp", [True, False], ids=["openmp", "serial"])
def test_plain_c_program(tmp_path, openmp):
    src = ROOT / "csrc"
    objs = []
    flags = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{src / 'include'}"]
    flags.append("-fopenmp" if openmp else "-fopenmp-simd")  # as setup.py builds
    defines = []
    # as setup.py: each path whose source this compiler builds (NEON: AArch64 only, no flags)
    for isa, isa_flags in (("avx2", ["-mavx2", "-mfma"]), ("avx512", ["-mavx512f", "-mavx2", "-mfma"]),
                           ("neon", [])):
        obj = tmp_path / f"{isa}.o"
        build = subprocess.run([CC, *flags, *isa_flags, "-c", str(src / "src" / "isa" / f"kernels_{isa}.c"),
                                "-o", str(obj)], capture_output=True, text=True)
        if build.returncode == 0:  # e.g. not on x86-64
            objs.append(str(obj))
            defines.append(f"-DRNC_HAVE_{isa.upper()}")
    # the int8 products, as setup.py's INT8_ISA_SOURCES
    for isa, isa_flags in (("avx2", ["-mavx2", "-mfma"]),
                           ("avx512vnni", ["-mavx512f", "-mavx512bw", "-mavx512vnni", "-mavx2", "-mfma"]),
                           ("amx", ["-mamx-tile", "-mamx-int8", "-mavx512f", "-mavx512bw", "-mavx512vnni",
                                    "-mavx2", "-mfma"]),
                           ("neon", []), ("neon_dotprod", ["-march=armv8.2-a+dotprod"])):
        obj = tmp_path / f"q{isa}.o"
        build = subprocess.run([CC, *flags, *isa_flags, "-c", str(src / "src" / "isa" / f"qkernels_{isa}.c"),
                                "-o", str(obj)], capture_output=True, text=True)
        if build.returncode == 0:
            objs.append(str(obj))
            defines.append(f"-DRNC_HAVE_Q{isa.upper()}")
    sources = sorted(str(p) for p in (src / "src").glob("*.c")) + [str(src / "src" / "isa" / "kernels_generic.c")]
    exe = tmp_path / "test_forward"
    build = subprocess.run([CC, *flags, *defines, str(src / "tests" / "test_forward.c"), *sources, *objs,
                            "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 failure(s)" in run.stdout
    # "CPU paths: avx2 generic (compiled: ...)": the paths this CPU and RNNCORE_DISABLE_ISA leave
    paths = run.stdout.splitlines()[0].split("(")[0].split()[2:]
    if "-DRNC_HAVE_QAVX2" in defines and "avx2" in paths:  # the int8 check ran on the avx2 int8 path
        assert " avx2_7bit,avx2 (with avx2)" in run.stdout, run.stdout


@pytest.mark.skipif(CC is None or not (ROOT / "csrc").is_dir(), reason="needs a C compiler and csrc/")
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the AMX kernel is x86-64 source")
def test_amx_kernel_on_emulated_tiles(tmp_path):
    """The AMX int8 product's own source, its tile instructions emulated in
    C (csrc/tests/test_amx_emulated.c), against the generic product on every
    group of packed weights: no CPU here or in CI need have AMX."""
    src = ROOT / "csrc"
    sources = sorted(str(p) for p in (src / "src").glob("*.c")) + [str(src / "src" / "isa" / "kernels_generic.c")]
    exe = tmp_path / "test_amx_emulated"
    build = subprocess.run([CC, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fopenmp-simd",
                            f"-I{src / 'include'}", str(src / "tests" / "test_amx_emulated.c"), *sources,
                            "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "180 case(s), 0 failure(s)" in run.stdout, run.stdout
