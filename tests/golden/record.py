"""Record the hashes of tests/golden/grid.py's results per backend and CPU
path into tests/golden/hashes.json: ``python tests/golden/record.py`` (run
once, on the code before the package layout change: the recordings are the
old code's answers). Each configuration runs in its own process, selected by
environment, at 1 and 4 threads, which must agree bit for bit before
anything is written. A hash is sha256 over an array's dtype, shape and bytes
(grid.digest)."""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = {  # file stem -> environment
    "reference": {"RNNCORE_BACKEND": "reference"},
    "avx512": {"RNNCORE_BACKEND": "c"},
    "avx2": {"RNNCORE_BACKEND": "c", "RNNCORE_DISABLE_ISA": "avx512"},
    "generic": {"RNNCORE_BACKEND": "c", "RNNCORE_DISABLE_ISA": "avx512,avx2"},
}

CHILD = r"""
import json, sys, numpy as np, rnncore
sys.path.insert(0, sys.argv[1])
from grid import digest, run_grid
stem = sys.argv[2]
cfg = rnncore.config()
assert stem == "reference" or cfg["cpu_path"] == stem, (stem, cfg["cpu_path"])
runs = []
for n in (1, 4):
    rnncore.set_num_threads(n)
    runs.append(run_grid())
a, b = runs
assert a.keys() == b.keys()
differ = [k for k in a if a[k].tobytes() != b[k].tobytes()]
assert not differ, ("thread counts disagree", differ[:10])
print(json.dumps({k: digest(v) for k, v in a.items()}))
"""

if __name__ == "__main__":
    hashes = {}
    for stem, env in CONFIGS.items():
        out = subprocess.run([sys.executable, "-c", CHILD, str(HERE), stem],
                             env={**os.environ, **env}, check=True, cwd="/",
                             capture_output=True, text=True).stdout
        hashes[stem] = json.loads(out)
        print(stem, len(hashes[stem]), "arrays")
    (HERE / "hashes.json").write_text(json.dumps(hashes, indent=0, sort_keys=True) + "\n")
