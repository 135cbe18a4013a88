"""The package's import rule, read from the source (an ast walk, so imports
inside functions count too):

* no import cycle among rnncore's modules;
* layers point down: the reference and the extension import nothing of
  ours; the engine never imports the tasks (lm), interop, files or tools;
  lm and interop never import each other; distributed (the Dask jobs) sits
  above files and below tools: only tools import it; nothing imports tools;
* the extension ``rnncore._core`` is imported by rnncore.engine.c_ops only;
* imports inside functions are only of optional third-party packages, or the
  two named facades ``layer.to_torch()`` / ``layer.to_onnx()`` (the only
  edges that point up, and the only ones left out of the cycle check).
"""
import ast
import importlib.util
from pathlib import Path

import pytest

# the package the tests import (the source tree, or an installed wheel: .ci/wheel),
# found without importing it
PACKAGE = Path(importlib.util.find_spec("rnncore").submodule_search_locations[0])
OPTIONAL = {"torch", "onnx", "onnxruntime", "ml_dtypes", "keras", "h5py", "matplotlib", "dask",
            "distributed", "sacrebleu", "sentencepiece", "tokenizers"}
FACADES = {("rnncore.engine.layers", "rnncore.interop.pytorch"),
           ("rnncore.engine.layers", "rnncore.interop.onnx_export")}
EXTENSION = "rnncore._core"


def _modules():
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()
KNOWN = set(MODULES) | {EXTENSION, "rnncore._build_info"}


def _imports(name, path):
    """(target module, lazy) for every import of rnncore's or third-party
    code in module `name`; lazy: inside a function."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    lazy_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef,
                                                                  ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            subs = [f"{module}.{a.name}" for a in node.names]
            targets = [s for s in subs if s in KNOWN] or [module]
        else:
            continue
        found += [(t, id(node) in lazy_nodes) for t in targets]
    return found


EDGES = {name: _imports(name, path) for name, path in MODULES.items()}


def _ours(target):
    return target == "rnncore" or target.startswith("rnncore.")


def _layer(module):
    """The role a module of ours belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def test_the_walk_sees_the_package():
    assert {"rnncore.engine.layers", "rnncore.engine.c_ops", "rnncore.reference",
            "rnncore.lm.model", "rnncore.interop.onnx_import", "rnncore.files",
            "rnncore.tools.cli", "rnncore.distributed.jobs"} <= set(MODULES)
    assert ("rnncore.engine.c_ops", EXTENSION) in {(m, t) for m, e in EDGES.items() for t, _ in e}


def test_no_import_cycle():
    graph = {m: sorted({t for t, _ in edges if t in MODULES and t != m and (m, t) not in FACADES})
             for m, edges in EDGES.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


FORBIDDEN = {  # role -> roles it must never import
    "reference": {"root", "engine", "optim", "lm", "seq2seq", "interop", "files", "distributed",
                  "tools", "_core"},
    "engine": {"lm", "seq2seq", "interop", "files", "distributed", "tools"},
    "optim": {"engine", "lm", "seq2seq", "interop", "files", "distributed", "tools"},
    "lm": {"interop", "files", "distributed", "tools", "seq2seq"},
    "seq2seq": {"interop", "files", "distributed", "tools"},  # it samples tokens as lm does (lm.sampling)
    "interop": {"lm", "seq2seq", "files", "distributed", "tools"},
    "files": {"distributed", "tools"},
    "root": {"distributed", "tools"},
    "distributed": {"tools"},
}


@pytest.mark.parametrize("role", sorted(FORBIDDEN))
def test_imports_point_down(role):
    bad = [(m, t) for m, edges in EDGES.items() if _layer(m) == role
           for t, _ in edges if _ours(t) and _layer(t) in FORBIDDEN[role]
           and (m, t) not in FACADES]
    assert not bad, f"{role} imports upwards or sideways: {bad}"


def test_only_c_ops_imports_the_extension():
    users = sorted(m for m, edges in EDGES.items() for t, _ in edges if t == EXTENSION)
    assert users == ["rnncore.engine.c_ops"]


def test_lazy_imports_are_optional_packages_or_the_facades():
    bad = [(m, t) for m, edges in EDGES.items() for t, lazy in edges
           if lazy and (m, t) not in FACADES and t.split(".")[0] not in OPTIONAL]
    assert not bad, f"imports inside functions: {bad}"


def test_dask_is_imported_lazily():
    """rnncore.distributed imports without dask: every dask or distributed
    import of ours is inside a function."""
    eager = [(m, t) for m, edges in EDGES.items() for t, lazy in edges
             if not lazy and t.split(".")[0] in ("dask", "distributed")]
    assert not eager, f"dask imported at module level: {eager}"
    assert any(t.split(".")[0] == "distributed" for t, _ in EDGES["rnncore.distributed.jobs"])


def test_classify_sits_above_the_engine_and_below_files():
    """rnncore.classify (sequence classifiers) may use the engine and lm's
    Vocabulary; the engine, optim, lm, seq2seq and interop never import it, and it
    never imports interop, files or tools."""
    assert "rnncore.classify.model" in MODULES
    below = {"reference", "engine", "optim", "lm", "seq2seq", "interop"}
    bad = [(m, t) for m, edges in EDGES.items() for t, _ in edges if _ours(t) and (
        (_layer(m) in below and _layer(t) == "classify")
        or (_layer(m) == "classify" and _layer(t) in {"interop", "files", "tools"}))]
    assert not bad, f"classify imports upwards, or is imported from below: {bad}"
