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
    assert out.stdout.count("derived / best = ") == 3  # the kernel, gemm and prefetch groups
    got = json.loads(report.read_text())
    derived = {k: C_OPS.blocking()[k] for k in ("mr", "kchunk", "kc", "mc", "nc", "prefetch")}
    for group in got["groups"]:
        assert group["derived"] == derived
        assert group["derived_over_best"] > 0 and len(group["grid"]) > 1
        assert group["grid"][0]["score"] <= group["grid"][-1]["score"]
    kernel, _, prefetch = got["groups"]
    assert {row["blocking"]["mr"] for row in kernel["grid"]} == set(C_OPS.blocking()["tile_rows"])
    assert {row["blocking"]["prefetch"] for row in prefetch["grid"]} == {0, 8, 16, 32, 64}
    assert prefetch["shapes"] == ["lstm_fwd_n1_h32", "gru_fwd_n1_h32"]


def test_tune_arguments(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--tune", "--rounds", "0"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode != 0 and "must be >= 1" in bad.stderr
    both = subprocess.run([sys.executable, "-m", "rnncore", "bench", "--tune", "--train"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert both.returncode != 0 and "--tune excludes --train" in both.stderr


def test_seconds_per_call_never_reads_zero():
    """A call shorter than the timer resolves is timed in longer batches, and
    a timer that never moves still gives a positive time (score() takes its log)."""
    from rnncore.tools.tune import seconds_per_call
    ticks = iter(range(10**7))
    coarse = lambda: next(ticks) // 1000 * 1e-3  # a 1 ms clock, advancing per read
    calls = []
    t = seconds_per_call(lambda: calls.append(1), coarse, min_seconds=1e-3)
    assert t > 0 and len(calls) > 1
    assert seconds_per_call(lambda: None, lambda: 0.0, min_seconds=1e-3) > 0
