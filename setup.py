"""Build of rnncore: the C library in csrc/ plus the Cython bridge in python/,
linked into one extension module, rnncore._core.

Environment switches:
  RNNCORE_NO_OPENMP=1  build serially even where OpenMP works.
  RNNCORE_NATIVE=1     add -march=native (local benchmarking only; never wheels).
  RNNCORE_SANITIZE=1   build with AddressSanitizer + UndefinedBehaviorSanitizer
                       (-O1, any finding aborts); run Python with libasan
                       preloaded, see .ci/run.

CPU paths: csrc/src/isa/kernels_<isa>.c are the only files compiled with ISA
flags; each is built when the compiler accepts its flags, and rnc_init()
picks one at run time (CPUID + XGETBV), so the default build stays portable.
"""
import os
import platform
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()
CSRC = Path("csrc")
# the portable kernels: the shared SIMD sources over portable C vectors, no ISA flags
C_SOURCES = sorted(str(p) for p in (CSRC / "src").glob("*.c")) + ["csrc/src/isa/kernels_generic.c"]
# ISA name -> (source, flags, machines it is built for); NEON is baseline on
# AArch64, so it needs no flags
ISA_SOURCES = {
    "avx2": ("csrc/src/isa/kernels_avx2.c", ["-mavx2", "-mfma"], ("x86_64", "amd64")),
    "avx512": ("csrc/src/isa/kernels_avx512.c", ["-mavx512f", "-mavx2", "-mfma"], ("x86_64", "amd64")),
    "neon": ("csrc/src/isa/kernels_neon.c", [], ("aarch64", "arm64")),
}
# the int8 products (csrc/src/isa/qkernels_<isa>.c), macro RNC_HAVE_Q<ISA>
INT8_ISA_SOURCES = {
    "avx2": ("csrc/src/isa/qkernels_avx2.c", ["-mavx2", "-mfma"], ("x86_64", "amd64")),
    "avx512vnni": ("csrc/src/isa/qkernels_avx512vnni.c",
                   ["-mavx512f", "-mavx512bw", "-mavx512vnni", "-mavx2", "-mfma"],
                   ("x86_64", "amd64")),
    "amx": ("csrc/src/isa/qkernels_amx.c",
            ["-mamx-tile", "-mamx-int8", "-mavx512f", "-mavx512bw", "-mavx512vnni", "-mavx2", "-mfma"],
            ("x86_64", "amd64")),
    "neon": ("csrc/src/isa/qkernels_neon.c", [], ("aarch64", "arm64")),
    "neon_dotprod": ("csrc/src/isa/qkernels_neon_dotprod.c", ["-march=armv8.2-a+dotprod"],
                     ("aarch64", "arm64")),
}
C_HEADERS = sorted(str(p) for p in CSRC.rglob("*.h")) + sorted(str(p) for p in CSRC.rglob("*.inc"))

BASE_FLAGS = ["-O3", "-std=c99", "-Wall", "-Wextra"]
OPTIONAL_FLAGS = ["-fopenmp-simd", "-fno-math-errno"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer", "-g"]

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n);
    return n >= 1 ? 0 : 1;
}
"""


def _env_on(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class BuildExt(build_ext):
    """Compiles csrc/ with probed flags, links it into rnncore._core and writes
    rnncore/_build_info.py."""

    def _compiles(self, flags, source="int main(void) { return 0; }\n", link=False, run=False):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(source)
            try:
                objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)
                if link or run:
                    exe = os.path.join(tmp, "probe")
                    self.compiler.link_executable(objs, exe, extra_postargs=flags)
                    if run:
                        subprocess.run([exe], check=True, capture_output=True, timeout=60)
            except Exception:
                return False
        return True

    def _openmp_flags(self):
        if _env_on("RNNCORE_NO_OPENMP"):
            return [], "disabled by RNNCORE_NO_OPENMP"
        candidates = [["-fopenmp"], ["-Xpreprocessor", "-fopenmp", "-lomp"]]
        for flags in candidates:
            if self._compiles(flags, OPENMP_PROBE, link=True, run=True):
                return flags, "enabled"
        print("WARNING: rnncore: the compiler cannot build and run an OpenMP program; "
              "building serially (results are the same, only slower).", file=sys.stderr)
        return [], "not supported by the compiler"

    def build_extensions(self):
        flags = list(BASE_FLAGS) + [f for f in OPTIONAL_FLAGS if self._compiles([f])]
        flags += ["-march=native"] if _env_on("RNNCORE_NATIVE") else []  # local benchmarking only
        sanitize = SANITIZE_FLAGS if _env_on("RNNCORE_SANITIZE") else []
        if sanitize:
            flags = [f for f in flags if f != "-O3"] + ["-O1"] + sanitize
        omp_flags, omp_status = self._openmp_flags()
        omp_compile = [f for f in omp_flags if not f.startswith("-l")]

        build_tmp = Path(self.build_temp) / "csrc"
        include = [str(CSRC / "include")]
        # (source, object dir, extra flags, macros): the ISA files the compiler
        # accepts the flags of (no macros), then the portable sources with a
        # macro per ISA built
        jobs, macros, isas = [], [], []
        machine = platform.machine().lower()
        for prefix, table in (("", ISA_SOURCES), ("Q", INT8_ISA_SOURCES)):
            for isa, (src, isa_flags, machines) in table.items():
                if machine not in machines or not self._compiles(isa_flags + ["-Werror"]):
                    continue
                jobs.append((src, build_tmp / (prefix.lower() + isa), isa_flags, None))
                macros.append((f"RNC_HAVE_{prefix}{isa.upper()}", "1"))
                if not prefix:
                    isas.append(isa)
        jobs += [(src, build_tmp, [], macros) for src in C_SOURCES]

        def compile_one(job):
            src, out, isa_flags, job_macros = job
            return self.compiler.compile([src], output_dir=str(out), include_dirs=include,
                                         macros=job_macros,
                                         extra_postargs=flags + isa_flags + omp_compile,
                                         depends=C_HEADERS)

        # one compiler process per core (the compiler object only spawns)
        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            objects = [obj for objs in pool.map(compile_one, jobs) for obj in objs]
        for ext in self.extensions:
            ext.extra_objects = objects + ext.extra_objects
            ext.extra_compile_args = ext.extra_compile_args + omp_compile + sanitize
            ext.extra_link_args = ext.extra_link_args + omp_flags + sanitize

        self._write_build_info(
            openmp=bool(omp_flags),
            openmp_status=omp_status,
            c_flags=flags + omp_compile,
            sanitize=bool(sanitize),
            isas=isas + ["generic"],
            compiler=" ".join(self.compiler.compiler_so[:1]),
        )
        super().build_extensions()

    def _write_build_info(self, **info):
        text = '"""Written by setup.py at build time."""\n' + "".join(
            f"{k} = {v!r}\n" for k, v in info.items())
        targets = [Path(self.build_lib) / "rnncore" / "_build_info.py"]
        if self.inplace:
            targets = [ROOT / "rnncore" / "_build_info.py"]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)


extension = Extension(
    "rnncore._core",
    sources=["python/_core.pyx"],
    include_dirs=[str(CSRC / "include")],
    # the C sources too: build_ext relinks only when a dependency is newer than
    # the extension, so with headers alone a change to a .c file recompiled
    # its object and kept (and copied back) the old extension
    depends=C_HEADERS + C_SOURCES + [v[0] for v in ISA_SOURCES.values()]
    + [v[0] for v in INT8_ISA_SOURCES.values()] + ["python/_crnncore.pxd"],
)

setup(
    ext_modules=cythonize(
        [extension],
        include_path=["python"],
        compiler_directives={"language_level": "3"},
    ),
    cmdclass={"build_ext": BuildExt},
)
