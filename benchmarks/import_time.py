"""Start-up cost of the command line and of `import polymodal.model`, as ratios to `python -c "import torch"`.

Each round runs every case once, in order, for the source trees given (e.g. main's and this branch's), so slow
and fast moments of a shared machine fall on all of them alike (interleaved: A, B, A, B). The figure kept is the
median wall time over rounds divided by the median of the `import torch` baseline; the load average is printed
beside it. `-X importtime` then names the heaviest packages `import polymodal.model` pulls in per tree.

    OMP_NUM_THREADS=1 python benchmarks/import_time.py --src before=/path/to/main/src --src after=src --rounds 5
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "import torch": ["-c", "import torch"],
    "polymodal --help": ["-c", "from polymodal.cli import main; main(['--help'])"],
    "polymodal schema": ["-c", "from polymodal.cli import main; main(['schema'])"],
    "polymodal list fusions": ["-c", "from polymodal.cli import main; main(['list', 'fusions'])"],
    "polymodal list": ["-c", "from polymodal.cli import main; main(['list'])"],
    "import polymodal.model": ["-c", "import polymodal.model"],
    "polymodal validate": ["-c", "import sys; from polymodal.cli import main; main(['validate', sys.argv[1]])",
                           "CONFIG"],
}
HEAVY = ("transformers", "matplotlib", "pandas", "scipy", "soundfile", "pytorch_lightning", "torchmetrics",
         "tokenizers", "PIL")


def tiny_config(folder: Path) -> Path:
    """A 40-record tabular table and a config over it, for `polymodal validate`."""
    rows = ["x,y"] + [f"{i % 7},{'ab'[i % 2]}" for i in range(40)]
    (folder / "data.csv").write_text("\n".join(rows) + "\n")
    config = folder / "config.yaml"
    config.write_text("data: {source: data.csv}\nmodalities: {t: {type: tabular, numeric: [x]}}\n"
                      "target: {field: y, task: binary}\n")
    return config


def run_once(src: str, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    return time.perf_counter() - start


def measure(trees: dict[str, str], rounds: int, cases: list[str]) -> dict[tuple[str, str], list[float]]:
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for case in cases:
            args = [str(CONFIG) if a == "CONFIG" else a for a in CASES[case]]
            for label, src in trees.items():
                times.setdefault((label, case), []).append(run_once(src, args))
    return times


def heavy_imports(src: str) -> dict[str, float]:
    """Cumulative import time (s) of each heavy package that `import polymodal.model` loads."""
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import polymodal.model"], env=env,
                         capture_output=True, text=True, check=False).stderr
    out: dict[str, float] = {}
    for line in err.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if m and m.group(2) in HEAVY:
            out[m.group(2)] = int(m.group(1)) / 1e6
    return out


def report(times: dict[tuple[str, str], list[float]], trees: dict[str, str], rounds: int, cases: list[str]) -> str:
    lines = [f"rounds: {rounds}; load average before/after: {LOAD_BEFORE} / {os.getloadavg()}", "",
             "| case | " + " | ".join(f"{t} median s | {t} / import torch" for t in trees) + " |",
             "|---|" + "---|---|" * len(trees)]
    for case in cases:
        cells = []
        for label in trees:
            base = statistics.median(times[(label, "import torch")])
            med = statistics.median(times[(label, case)])
            cells += [f"{med:.2f}", f"{med / base:.2f}x"]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    lines += ["", "heavy packages loaded by `import polymodal.model` (cumulative import time, s, one run):"]
    for label, src in trees.items():
        found = heavy_imports(src)
        lines.append(f"- {label}: " + (", ".join(f"{k} {v:.2f}" for k, v in found.items()) or "none"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", required=True, help="LABEL=PATH of a source tree (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", help="comma-separated subset of: " + ", ".join(CASES))
    args = parser.parse_args()
    cases = ["import torch", *(c for c in args.cases.split(",") if c != "import torch")] if args.cases else list(CASES)
    trees = dict(s.split("=", 1) for s in args.src)
    trees = {k: str(Path(v).resolve()) for k, v in trees.items()}
    print(report(measure(trees, args.rounds, cases), trees, args.rounds, cases))


LOAD_BEFORE = os.getloadavg()
CONFIG = tiny_config(Path(tempfile.mkdtemp(prefix="import_time_")))

if __name__ == "__main__":
    main()
