"""Wall time and peak memory of `polymodal quickstart`, run as a child process on a cold dataset cache.

    python benchmarks/quickstart.py [--out runs/quickstart] [--yardstick] [--seed N] [--baseline SRC]

Prints the quickstart's own table, then wall seconds and the largest peak resident memory of one child process
(ru_maxrss of the children: with the models trained in forked processes, not the sum over them).
Targets (issue 2, issue 14): under 90 s on an idle 2-core machine, peak memory under 2 GB.

On a shared machine the wall time says more about the other jobs than about polymodal. `--yardstick` runs a
fixed piece of work before and after the quickstart, interleaved: the hand-written training script of
`train_overhead.py` (10k records, 5 epochs, one thread), and prints the quickstart's wall time as a multiple of
the yardstick's mean, with the load average. Measure the yardstick once on an idle machine to turn the ratio
into an idle-machine estimate.

`--baseline SRC` times another source tree (e.g. `/path/to/main/src`, put first on PYTHONPATH) the same way,
interleaved: this tree, the baseline, this tree, the baseline (`--rounds` pairs), and prints the ratio of the
mean wall times with the load averages.
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

HERE = Path(__file__).resolve().parent


def yardstick(tmp: Path) -> float:
    """Seconds of the hand-written training script (a fresh process, one thread) on a 10k-record table."""
    data = tmp / "yardstick.parquet"
    if not data.is_file():
        sys.path.insert(0, str(HERE))
        from train_overhead import make_data

        make_data(data, 10000)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / "train_overhead.py"), "--bare", str(data), "--epochs", "5"],
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, capture_output=True)
    return time.perf_counter() - start


def run_quickstart(data: Path, out: str, seed: int, src: str | None
                   ) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """The quickstart in a child process (with `src` first on PYTHONPATH if given); its wall and CPU seconds."""
    env = {**os.environ, "POLYMODAL_DATA": str(data)}
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    start, cpu = time.perf_counter(), child_cpu()
    proc = subprocess.run([sys.executable, "-m", "polymodal.cli", "quickstart", "--out", out, "--seed", str(seed)],
                          env=env, capture_output=True, text=True)
    return proc, time.perf_counter() - start, child_cpu() - cpu


def child_cpu() -> float:
    """CPU seconds of the finished child processes so far: less sensitive than wall time to other jobs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compare(baseline: str, seed: int, rounds: int) -> None:
    """This tree and `baseline` alternately on a warm dataset cache ($POLYMODAL_DATA if set, else built first);
    the ratio of their mean wall times."""
    walls: dict[str, list[float]] = {"this": [], "baseline": []}
    cpus: dict[str, list[float]] = {"this": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(os.environ.get("POLYMODAL_DATA") or Path(tmp) / "data")
        warm = "from polymodal.datasets import DATASETS; DATASETS['av_digits'].materialize()"
        subprocess.run([sys.executable, "-c", warm], env={**os.environ, "POLYMODAL_DATA": str(data)}, check=True)
        for r in range(rounds):
            for name, src in (("this", None), ("baseline", baseline)):
                load = os.getloadavg()[0]
                proc, wall, cpu = run_quickstart(data, str(Path(tmp) / name), seed, src)
                if proc.returncode != 0:
                    sys.exit(proc.stderr)
                walls[name].append(wall)
                cpus[name].append(cpu)
                print(f"round {r + 1} {name:<8} wall {wall:6.1f} s  cpu {cpu:6.1f} s  load (1 min) {load:.2f} -> "
                      f"{os.getloadavg()[0]:.2f}\n{proc.stdout}", flush=True)
    mean = {k: sum(v) / len(v) for k, v in walls.items()}
    cpu_mean = {k: sum(v) / len(v) for k, v in cpus.items()}
    print(f"this tree / baseline: wall {mean['this'] / mean['baseline']:.2f} (mean {mean['this']:.1f} s vs "
          f"{mean['baseline']:.1f} s), cpu {cpu_mean['this'] / cpu_mean['baseline']:.2f} (mean "
          f"{cpu_mean['this']:.1f} s vs {cpu_mean['baseline']:.1f} s) over {rounds} interleaved pair(s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="keep the quickstart's run directories here (default: a temporary folder)")
    parser.add_argument("--yardstick", action="store_true", help="also time a fixed workload before and after")
    parser.add_argument("--seed", type=int, default=0, help="the quickstart's seed")
    parser.add_argument("--baseline", help="another tree's src folder, timed interleaved with this one")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs with --baseline")
    args = parser.parse_args()
    if args.baseline:
        compare(args.baseline, args.seed, args.rounds)
        return
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        sticks = [yardstick(Path(tmp))] if args.yardstick else []
        proc, wall, cpu = run_quickstart(Path(tmp) / "data", args.out or str(Path(tmp) / "qs"), args.seed, None)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        loads.append(os.getloadavg()[0])
        if args.yardstick:
            sticks.append(yardstick(Path(tmp)))
    print(proc.stdout)
    print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    print(f"cores: {os.cpu_count()}  wall: {wall:.1f} s (target < 90 s idle)  cpu: {cpu:.1f} s  "
          f"peak RSS of the largest process: {peak_mb:.0f} MB "
          f"(target < 2048 MB)  load average (1 min) before {loads[0]:.2f}, after {loads[1]:.2f}")
    if sticks:
        mean = sum(sticks) / len(sticks)
        print(f"yardstick (hand-written script, 5 epochs, 1 thread): {', '.join(f'{s:.1f}' for s in sticks)} s; "
              f"quickstart = {wall / mean:.2f}x the yardstick")


if __name__ == "__main__":
    main()
