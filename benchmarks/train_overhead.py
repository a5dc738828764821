"""Whole-process cost of `polymodal train` against a hand-written PyTorch script doing the same job.

Problem: 10k records, two 32-d vector modalities, 4 classes (parquet), split 80/10/10, batch 128.
The hand-written script (`--bare`) reads the table, standardizes on train, trains modules of the same sizes
(two 2-layer MLP encoders, concat + presence flags, 2-layer MLP, linear head; AdamW, clipping, warmup +
cosine) with a DataLoader for the same epochs, validates every epoch, keeps the best-validation weights and
prints test accuracy. `polymodal train` runs the same config, with its report, with `--no-report`, and with
`--no-report` and the imbalance diagnostics off (`training.imbalance.diagnostics: false`: no linear probes or
gradient norms, which the hand-written script does not compute either). Each is a fresh process, run interleaved
(A, B, C, D, A, B, C, D, ...); the script prints each run with the load average, the medians and their ratios to
the hand-written script.

    python benchmarks/train_overhead.py [--repeats 3] [--epochs 20] [--records 10000] [-- extra train args]

"Training pass" is the time of the epochs (training + validation): `train_seconds` in the run's metrics.json
for polymodal, the loop of the script for the hand-written side; on both sides it starts after the optimizer
is built (building the first torch optimizer in a process imports `torch._dynamo`, ~1.5 s: part of the process
time on both sides).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
data: {{source: {data}, split: {{ratios: [0.8, 0.1, 0.1]}}}}
modalities:
  a: {{type: vector, encoder: {{name: vector_mlp, out_dim: 64, hidden: 64}}}}
  b: {{type: vector, encoder: {{name: vector_mlp, out_dim: 64, hidden: 64}}}}
target: {{field: label, task: multiclass}}
fusion: {{name: concat, hidden: 64}}
training: {{epochs: {epochs}, batch_size: 128, patience: null, progress_bar: false, deterministic: false,
            imbalance: {{diagnostics: {diagnostics}}}}}
output_dir: {out}
"""


def make_data(path: Path, n: int) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, n)
    x = rng.normal(size=(4, 64))[y] + rng.normal(scale=2.0, size=(n, 64))
    pd.DataFrame({"a": list(x[:, :32].astype(np.float32)), "b": list(x[:, 32:].astype(np.float32)),
                  "label": y}).to_parquet(path)


def bare(data: str, epochs: int) -> None:
    """The hand-written script: everything a user would write by hand for this job."""
    start = time.perf_counter()
    import numpy as np
    import pandas as pd
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    frame = pd.read_parquet(data)
    xa, xb = (torch.from_numpy(np.stack(frame[c].to_numpy()).astype(np.float32)) for c in ("a", "b"))
    y = torch.from_numpy(frame["label"].to_numpy()).long()
    order = torch.randperm(len(y))
    n_train, n_val = int(0.8 * len(y)), int(0.1 * len(y))
    parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    mean_a, std_a = xa[parts[0]].mean(0), xa[parts[0]].std(0)
    mean_b, std_b = xb[parts[0]].mean(0), xb[parts[0]].std(0)
    xa, xb = (xa - mean_a) / std_a, (xb - mean_b) / std_b

    def mlp(i: int, h: int, o: int, p: float) -> nn.Sequential:
        return nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Dropout(p), nn.Linear(h, o))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc_a, self.enc_b = mlp(32, 64, 64, 0.1), mlp(32, 64, 64, 0.1)
            self.fusion, self.head = nn.Sequential(mlp(130, 64, 64, 0.2), nn.GELU()), nn.Linear(64, 4)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            flags = torch.ones(len(a), 2)
            return self.head(self.fusion(torch.cat([self.enc_a(a), self.enc_b(b), flags], 1)))

    model = Net()
    loaders = [DataLoader(TensorDataset(xa[p], xb[p], y[p]), batch_size=128, shuffle=i == 0)
               for i, p in enumerate(parts)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    total = epochs * len(loaders[0])
    warmup = total // (2 * epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / (warmup + 1) if s < warmup else
                                              0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / (total - warmup)))))

    def accuracy(loader: DataLoader) -> float:
        model.eval()
        with torch.no_grad():
            hits = sum(int((model(a, b).argmax(1) == t).sum()) for a, b, t in loader)
        return hits / len(loader.dataset)  # type: ignore[arg-type]

    loop = time.perf_counter()
    best, best_state = -1.0, None
    for _ in range(epochs):
        model.train()
        for a, b, t in loaders[0]:
            loss = nn.functional.cross_entropy(model(a, b), t)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        acc = accuracy(loaders[1])
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
    loop = time.perf_counter() - loop
    model.load_state_dict(best_state)  # type: ignore[arg-type]
    print(json.dumps({"test_accuracy": accuracy(loaders[2]), "loop_seconds": loop,
                      "in_process_seconds": time.perf_counter() - start}))


def run_bare(data: Path, epochs: int) -> dict[str, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--bare", str(data), "--epochs", str(epochs)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return {"process": time.perf_counter() - start, "loop": result["loop_seconds"],
            "accuracy": result["test_accuracy"]}


def run_polymodal(config: Path, out: Path, extra: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "polymodal.cli", "train", str(config), "--out", str(out), *extra],
                   check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    return {"process": seconds, "loop": metrics["train_seconds"], "accuracy": metrics["test"]["accuracy"]}


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.bare:
        return bare(args.bare, args.epochs)
    extra = [a for a in extra if a != "--"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root / "data.parquet", args.records)
        configs = {d: root / f"config_{d}.yaml" for d in ("true", "false")}
        for d, path in configs.items():
            path.write_text(CONFIG.format(data=root / "data.parquet", epochs=args.epochs, out=root / "run",
                                          diagnostics=d))
        variants = {"polymodal train": (configs["true"], extra),
                    "polymodal train --no-report": (configs["true"], [*extra, "--no-report"]),
                    "polymodal train --no-report, diagnostics off": (configs["false"], [*extra, "--no-report"])}
        loads, hand = [os.getloadavg()], []
        poly: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for i in range(args.repeats):
            hand.append(run_bare(root / "data.parquet", args.epochs))
            print(f"repeat {i}: hand-written {hand[-1]['process']:.2f} s (loop {hand[-1]['loop']:.2f}); load "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
            for k, (name, (config, flags)) in enumerate(variants.items()):
                poly[name].append(run_polymodal(config, root / f"run{i}_{k}", flags))
                print(f"  {name}: {poly[name][-1]['process']:.2f} s (loop {poly[name][-1]['loop']:.2f}); load "
                      f"{os.getloadavg()[0]:.2f}", flush=True)
        loads.append(os.getloadavg())
    print(f"records {args.records}, epochs {args.epochs}, batch 128, {args.repeats} repeats, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; load average (1 min) before {loads[0][0]:.2f}, "
          f"after {loads[1][0]:.2f}")
    print(f"hand-written script: process {median(hand, 'process'):.2f} s, loop {median(hand, 'loop'):.2f} s, "
          f"test accuracy {median(hand, 'accuracy'):.4f}")
    for name, runs in poly.items():
        print(f"{name}: process {median(runs, 'process'):.2f} s = "
              f"{median(runs, 'process') / median(hand, 'process'):.2f}x (goal <= 1.2x); training pass "
              f"{median(runs, 'loop'):.2f} s = {median(runs, 'loop') / median(hand, 'loop'):.2f}x (goal < 1x); "
              f"test accuracy {median(runs, 'accuracy'):.4f}")


if __name__ == "__main__":
    main()
