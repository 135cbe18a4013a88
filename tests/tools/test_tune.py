"""``rnncore bench --tune`` (rnncore/tools/tune.py): the sweep runs end to
end on tiny shapes, restores the derived blocking, and its arguments are
checked."""
import json
import subprocess
import sys

import pytest

from conftest import C_OPS

pytestmark = pytest.mark.skipif(C_OPS is None, reason="needs the C extension")


def test_tune_command(tmp_path):
    report = tmp_path / "tune.json"
    out = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--tune", "--hidden", "32",
                          "--batch", "3", "--steps", "2", "--rounds", "1", "--final-rounds", "1",
                          "--json", str(report)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("derived / best = ") == 2  # the kernel group and the gemm group
    got = json.loads(report.read_text())
    derived = {k: C_OPS.blocking()[k] for k in ("mr", "kchunk", "kc", "mc", "nc")}
    for group in got["groups"]:
        assert group["derived"] == derived
        assert group["derived_over_best"] > 0 and len(group["grid"]) > 1
        assert group["grid"][0]["score"] <= group["grid"][-1]["score"]
    kernel = got["groups"][0]
    assert {row["blocking"]["mr"] for row in kernel["grid"]} == set(C_OPS.blocking()["tile_rows"])


def test_tune_arguments(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--tune", "--rounds", "0"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode != 0 and "must be >= 1" in bad.stderr
    both = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--tune", "--train"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert both.returncode != 0 and "--tune excludes --train" in both.stderr
