"""Package surface: backend selection by environment, show_config, the
command line, and the example in the package docstring."""
import doctest
import os
import subprocess
import sys

import numpy as np
import pytest

import rnncore


def run_python(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=300, cwd=os.path.dirname(os.path.dirname(rnncore.__file__)))


def test_reference_backend_forced_by_environment():
    code = ("import numpy as np, rnncore; print(rnncore.backend()); "
            "g = rnncore.GRU(3, 4, seed=0); print(float(g(np.ones((2, 1, 3), np.float32))[0].sum()))")
    ref = run_python(code, RNNCORE_BACKEND="reference")
    assert ref.returncode == 0, ref.stderr
    name, value = ref.stdout.split()
    assert name == "reference"
    gru = rnncore.GRU(3, 4, seed=0)
    assert abs(float(value) - float(gru(np.ones((2, 1, 3), np.float32))[0].sum())) < 1e-5


def test_unknown_backend_is_an_error():
    bad = run_python("import rnncore", RNNCORE_BACKEND="gpu")
    assert bad.returncode != 0 and "RNNCORE_BACKEND must be 'c' or 'reference'" in bad.stderr


def test_show_config(capsys):
    rnncore.show_config()
    out = capsys.readouterr().out
    for key in ("version", "backend", "cpu_paths", "openmp", "num_threads"):
        assert key in out
    cfg = rnncore.config()
    assert cfg["version"] == rnncore.__version__
    assert cfg["num_threads"] == rnncore.get_num_threads()


def test_command_line_info(tmp_path):
    # run outside the checkout, so that the installed package is the one imported
    out = subprocess.run([sys.executable, "-m", "rnncore", "--steps", "3", "--batch", "2",
                          "--hidden", "16", "--repeat", "2"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "backend" in out.stdout
    lines = [ln.split() for ln in out.stdout.splitlines() if ln.split()[:1] in (["lstm"], ["gru"], ["rnn_tanh"])]
    assert len(lines) == 3 and all(float(ln[-1]) < 1e-4 for ln in lines)
    bad = subprocess.run([sys.executable, "-m", "rnncore", "--steps", "0"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and "--steps must be >= 1" in bad.stderr


def test_docstring_example():
    failures, _ = doctest.testmod(rnncore, verbose=False)
    assert failures == 0


@pytest.mark.skipif(rnncore.backend() != "c", reason="needs the C extension")
def test_isa_can_be_disabled_by_environment():
    """Disabling the best paths selects the next one; every x86-64 build
    (and AArch64) build has the generic path, and this machine's best path
    is the default."""
    code = "import rnncore; print(rnncore.config()['cpu_path'])"
    paths = rnncore.config()["cpu_paths"]
    assert paths[-1] == "generic" and rnncore.config()["cpu_path"] == paths[0]
    cases = [("avx512", "avx2"), ("avx512,avx2,neon", "generic")]
    checked = 0
    for disabled, expected in cases:
        if expected not in paths:
            continue
        out = run_python(code, RNNCORE_DISABLE_ISA=disabled)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == expected
        checked += 1
    assert checked >= 1  # generic is always there, so at least one case ran


@pytest.mark.skipif(rnncore.backend() != "c", reason="needs the C extension")
def test_int8_paths_can_be_disabled_by_environment():
    """RNNCORE_DISABLE_ISA=amx leaves avx512vnni the int8 default, and
    naming avx512vnni turns off both (AMX's other rows run on VNNI);
    avx2_7bit leaves the 8-bit avx2 kernel (and 8-bit activations)."""
    from rnncore import _core
    code = ("from rnncore import _core; print(','.join(_core.qisa_candidates()), "
            "_core.qisa_act_max())")
    offered = _core.qisa_candidates()
    cases = [(d, g) for d, g in (("amx", {"amx"}), ("avx512vnni", {"amx", "avx512vnni"}),
                                 ("avx2_7bit", {"avx2_7bit"})) if d in offered]
    if not cases:
        pytest.skip(f"this CPU's int8 paths are {offered}: no VNNI, AMX or 7-bit AVX2 to disable")
    for disabled, gone in cases:
        out = run_python(code, RNNCORE_DISABLE_ISA=disabled)
        assert out.returncode == 0, out.stderr
        left = [p for p in offered if p not in gone]
        names, act_max = out.stdout.split()
        assert names.split(",") == left
        assert int(act_max) == (63 if left[0] == "avx2_7bit" else 127)
