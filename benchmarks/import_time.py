"""Start-up cost of the command line, `import polymodal.model` and task metrics, as ratios to `import torch`.

Each round runs every case once, in order, for the source trees given (e.g. main's and this branch's), so slow
and fast moments of a shared machine fall on all of them alike (interleaved: A, B, A, B). The figure kept is the
median wall time over rounds divided by the median of the `import torch` baseline; the load average is printed
beside it. `-X importtime` then names the heaviest packages `import polymodal.model` and the task-metrics case
pull in per tree. `polymodal evaluate` runs on a 1-epoch run trained once beforehand with the first tree.

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
    "task metrics": ["-c", "import torch; from polymodal.config import TargetConfig; from polymodal.tasks import "
                     "build_task\nfor kind, k in [('multiclass', 5), ('binary', 2), ('multilabel', 5)]:\n"
                     "    t = build_task(TargetConfig(field='y', task=kind)); t.fit([f'{i}|{(i + 1) % k}' if "
                     "kind == 'multilabel' else str(i) for i in range(k)])\n"
                     "    y = torch.randint(0, 2, (1000, k)).float() if kind == 'multilabel' else "
                     "torch.randint(0, k, (1000,))\n"
                     "    t.metrics(torch.randn(1000, t.num_outputs), y)"],
    "polymodal evaluate": ["-c", "import sys; from polymodal.cli import main; main(['evaluate', sys.argv[1]])", "RUN"],
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


def tiny_run(folder: Path, src: str) -> Path:
    """A run trained for one epoch on the tiny table (with `src`), for `polymodal evaluate`."""
    config = folder / "train.yaml"
    config.write_text(tiny_config(folder).read_text() + "training: {epochs: 1, progress_bar: false}\n")
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "polymodal.cli", "train", str(config), "--out", str(folder / "run"),
                    "--no-report"], env=env, stdout=subprocess.DEVNULL, check=True)
    return folder / "run"


def run_once(src: str, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)  # a case that fails is not timed
    return time.perf_counter() - start


def measure(trees: dict[str, str], rounds: int, cases: list[str]) -> dict[tuple[str, str], list[float]]:
    times: dict[tuple[str, str], list[float]] = {}
    run = tiny_run(CONFIG.parent, next(iter(trees.values()))) if "polymodal evaluate" in cases else None
    for _ in range(rounds):
        for case in cases:
            args = [str(CONFIG) if a == "CONFIG" else str(run) if a == "RUN" else a for a in CASES[case]]
            for label, src in trees.items():
                times.setdefault((label, case), []).append(run_once(src, args))
    return times


def heavy_imports(src: str, case: str) -> dict[str, float]:
    """Cumulative import time (s) of each heavy package that a case loads."""
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    err = subprocess.run([sys.executable, "-X", "importtime", *CASES[case]], env=env,
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
    for case in ("import polymodal.model", "task metrics"):
        lines += ["", f"heavy packages loaded by `{case}` (cumulative import time, s, one run):"]
        for label, src in trees.items():
            found = heavy_imports(src, case)
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
