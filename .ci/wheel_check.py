"""What a built rnncore wheel must hold (called by .ci/wheel):

  python .ci/wheel_check.py WHEEL SOURCE_TREE

* every module of the source's rnncore/ and its package data (the default
  model), the extension rnncore._core and the build's _build_info.py;
* the extension carries every CPU path the machine type has (x86-64: avx2,
  avx512 and generic; AArch64: neon and generic): their kernel tables are
  exported symbols of the .so, and _build_info lists them; likewise the
  int8 products' tables (x86-64: avx2, avx512vnni, generic; AArch64:
  generic);
* the C flags of the default build: no -march / -mtune (ISA flags only on
  the isa/ sources, chosen at run time), no -ffast-math, no sanitizer;
* metadata: name, version and dependencies as pyproject.toml says, the
  `rnncore` console script, and a platform tag for this interpreter and
  machine (cpXY-cpXY-linux_<machine>: not purelib, not "any").
Prints what it checked; exits 1 listing every problem.
"""
import ast
import platform
import re
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

ISAS_BY_MACHINE = {"x86_64": ["avx2", "avx512", "generic"], "aarch64": ["neon", "generic"]}
# the int8 products' tables (csrc/src/qkernels.h): rnc_qkernels_<isa>
INT8_ISAS_BY_MACHINE = {"x86_64": ["avx2", "avx512vnni", "generic"], "aarch64": ["generic"]}


def main(wheel_path, source):
    source = Path(source)
    problems = []
    wheel = zipfile.ZipFile(wheel_path)
    names = set(wheel.namelist())
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    dist_info = f"rnncore-{project['version']}.dist-info"

    # 1. files
    modules = sorted(str(p.relative_to(source)) for p in (source / "rnncore").rglob("*.py")
                     if p.name != "_build_info.py")
    missing = [m for m in modules if m not in names]
    if missing:
        problems.append(f"modules missing from the wheel: {missing}")
    data = sorted(str(p.relative_to(source)) for p in (source / "rnncore" / "models").glob("*.safetensors"))
    problems += [f"package data missing: {d}" for d in data if d not in names]
    ext = [n for n in names if re.fullmatch(r"rnncore/_core\..*\.so", n)]
    if len(ext) != 1:
        problems.append(f"expected one rnncore/_core extension, found {ext}")
    if "rnncore/_build_info.py" not in names:
        problems.append("rnncore/_build_info.py missing")
    print(f"wheel files: {len(modules)} modules, {len(data)} data file(s), extension {ext}")

    # 2. CPU paths in the extension and in the build record
    machine = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    wanted = ISAS_BY_MACHINE.get(machine, ["generic"])
    info = {}
    if "rnncore/_build_info.py" in names:
        tree = ast.parse(wheel.read("rnncore/_build_info.py"))
        info = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign)}
    if ext:
        so = wheel.read(ext[0])
        for isa in wanted:
            if f"rnc_kernels_{isa}\0".encode() not in so:
                problems.append(f"the extension has no {isa} kernels (rnc_kernels_{isa})")
        if (source / "csrc" / "src" / "qkernels.h").exists():
            for isa in INT8_ISAS_BY_MACHINE.get(machine, ["generic"]):
                if f"rnc_qkernels_{isa}\0".encode() not in so:
                    problems.append(f"the extension has no {isa} int8 kernels (rnc_qkernels_{isa})")
    if sorted(info.get("isas", [])) != sorted(wanted):
        problems.append(f"_build_info isas {info.get('isas')}, expected {wanted}")
    flags = info.get("c_flags", [])
    bad = [f for f in flags if f.startswith(("-march", "-mtune", "-mcpu", "-mavx", "-mfma", "-ffast-math",
                                             "-Ofast", "-fsanitize"))]
    if bad or info.get("sanitize"):
        problems.append(f"non-portable flags in the default build: {bad}")
    print(f"CPU paths compiled: {info.get('isas')} (expected on {machine}: {wanted}; int8: "
          f"{INT8_ISAS_BY_MACHINE.get(machine, ['generic'])}); "
          f"C flags: {' '.join(flags)}; OpenMP: {info.get('openmp_status')}")

    # 3. metadata and tags
    meta = wheel.read(f"{dist_info}/METADATA").decode()
    fields = [tuple(line.split(": ", 1)) for line in meta.splitlines() if ": " in line]
    get = lambda key: [v for k, v in fields if k == key]  # noqa: E731
    if get("Name") != ["rnncore"] or get("Version") != [project["version"]]:
        problems.append(f"metadata name/version {get('Name')} {get('Version')}")
    requires = [r for r in get("Requires-Dist") if "extra ==" not in r]
    want_requires = [re.sub(r"\s", "", r) for r in project["dependencies"]]
    if sorted(re.sub(r"\s", "", r) for r in requires) != sorted(want_requires):
        problems.append(f"Requires-Dist {requires}, pyproject says {project['dependencies']}")
    extras = set(get("Provides-Extra"))
    if extras != set(project["optional-dependencies"]):
        problems.append(f"extras {sorted(extras)}, pyproject says {sorted(project['optional-dependencies'])}")
    entry = wheel.read(f"{dist_info}/entry_points.txt").decode()
    if "rnncore = rnncore.tools.cli:main" not in entry:
        problems.append("console script rnncore missing from entry_points.txt")
    wheel_meta = wheel.read(f"{dist_info}/WHEEL").decode()
    tags = re.findall(r"^Tag: (.*)$", wheel_meta, re.M)
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    if tags != [f"{py}-{py}-{plat}"]:
        problems.append(f"tags {tags}, expected {py}-{py}-{plat}")
    if "Root-Is-Purelib: false" not in wheel_meta:
        problems.append("the wheel claims to be pure Python")
    if not Path(wheel_path).name.endswith(f"-{py}-{py}-{plat}.whl"):
        problems.append(f"file name {Path(wheel_path).name} does not carry the tag")
    print(f"metadata: rnncore {project['version']}, requires {requires}, extras {sorted(extras)}, "
          f"tags {tags}, Requires-Python {get('Requires-Python')}")

    for p in problems:
        print("wheel problem:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
