"""Record the hashes of tests/golden/grid.py's results per backend and CPU
path into tests/golden/hashes.json: ``python tests/golden/record.py`` (run
once, on the code before the package layout change: the recordings are the
old code's answers). Each configuration runs in its own process, selected by
environment, at 1 and 4 threads, which must agree bit for bit before
anything is written. A hash is sha256 over an array's dtype, shape and bytes
(grid.digest). ``python tests/golden/record.py avx2 generic`` re-records
only the named configurations and keeps the others' recorded hashes (a
change of summation order on some CPU paths, recorded on a machine that may
lack the others)."""
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
    stems = sys.argv[1:] or list(CONFIGS)
    unknown = sorted(set(stems) - set(CONFIGS))
    if unknown:
        sys.exit(f"unknown configurations {unknown}; known: {sorted(CONFIGS)}")
    path = HERE / "hashes.json"
    hashes = json.loads(path.read_text()) if sys.argv[1:] else {}
    for stem in stems:
        env = CONFIGS[stem]
        out = subprocess.run([sys.executable, "-c", CHILD, str(HERE), stem],
                             env={**os.environ, **env}, check=True, cwd="/",
                             capture_output=True, text=True).stdout
        hashes[stem] = json.loads(out)
        print(stem, len(hashes[stem]), "arrays")
    path.write_text(json.dumps(hashes, indent=0, sort_keys=True) + "\n")
