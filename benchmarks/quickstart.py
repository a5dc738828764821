"""Wall time and peak memory of `polymodal quickstart`, run as a child process on a cold dataset cache.

    python benchmarks/quickstart.py [--out runs/quickstart]   (--out keeps the run directories)

Prints the quickstart's own table, then wall seconds and the child's peak resident memory (ru_maxrss).
Targets (issue 2): under 3 minutes on 2 CPU cores, peak memory under 2 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="keep the quickstart's run directories here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "POLYMODAL_DATA": str(Path(tmp) / "data")}
        out = args.out or str(Path(tmp) / "qs")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "polymodal.cli", "quickstart", "--out", out],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    print(proc.stdout)
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"cores: {os.cpu_count()}  wall: {wall:.1f} s (target < 180 s)  "
          f"peak RSS: {peak_mb:.0f} MB (target < 2048 MB)")


if __name__ == "__main__":
    main()
