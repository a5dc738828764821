"""Is the training harness the bottleneck? Epoch time of `polymodal` training vs a bare PyTorch loop.

Problem: 10k records, two 32-d vector modalities, 4 classes, vector_mlp encoders + concat fusion, batch 128.
Both loops train the same modules (same widths, AdamW, gradient clipping) on the same in-memory data; the
harness goes through the Dataset/Batch/processor path and Lightning's Trainer, the bare loop indexes tensors.
Prints the median training-epoch time of each (first epoch excluded as warm-up) and their ratio.

    python benchmarks/loop_overhead.py [--epochs 6] [--records 10000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from polymodal.data.dataset import make_loader
from polymodal.factory import build_model, parse_config
from polymodal.training.fit import make_trainer, prepare
from polymodal.training.module import PolymodalModule


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_validation_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # Lightning validates inside the training epoch, before on_train_epoch_end: stop the clock here
        self.times.append(time.perf_counter() - self.start)


def make_data(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, n)
    centers = rng.normal(size=(4, 64))
    x = centers[y] + rng.normal(scale=2.0, size=(n, 64))
    pd.DataFrame({"a": list(x[:, :32].astype(np.float32)), "b": list(x[:, 32:].astype(np.float32)),
                  "label": y}).to_parquet(root / "data.parquet")


def config(root: Path, epochs: int, diagnostics: bool = True):  # type: ignore[no-untyped-def]
    enc = {"name": "vector_mlp", "out_dim": 64, "hidden": 64}
    return parse_config({
        "data": {"source": str(root / "data.parquet"), "split": {"ratios": [0.8, 0.1, 0.1]}},
        "modalities": {"a": {"type": "vector", "encoder": enc}, "b": {"type": "vector", "encoder": enc}},
        "target": {"field": "label", "task": "multiclass"},
        "fusion": {"name": "concat", "hidden": 64},
        "training": {"epochs": epochs, "batch_size": 128, "patience": None, "progress_bar": False,
                     "deterministic": False, "imbalance": {"diagnostics": diagnostics}},
        "output_dir": str(root / "run"),
    })


def harness_epochs(root: Path, epochs: int, diagnostics: bool = True) -> list[float]:
    cfg = config(root, epochs, diagnostics)
    prep = prepare(cfg)
    model = build_model(cfg, prep.processors, prep.task.num_outputs)
    module = PolymodalModule(model, prep.task, prep.processors, cfg.training)
    trainer = make_trainer(cfg, root / "run", "val_accuracy", "max")
    timer = EpochTimer()
    trainer.callbacks.append(timer)
    trainer.fit(module, make_loader(prep.datasets["train"], 128, True), make_loader(prep.datasets["val"], 128, False))
    return timer.times


def bare_epochs(root: Path, epochs: int) -> list[float]:
    cfg = config(root, epochs)
    prep = prepare(cfg)
    model = build_model(cfg, prep.processors, prep.task.num_outputs)
    data = prep.datasets["train"]
    xa = torch.from_numpy(data.fixed["a"]["values"])
    xb = torch.from_numpy(data.fixed["b"]["values"])
    xa, xb = (xa - xa.mean(0)) / xa.std(0), (xb - xb.mean(0)) / xb.std(0)
    y = torch.from_numpy(data.targets)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    enc_a, enc_b, fusion, head = model.encoders["a"], model.encoders["b"], model.fusion, model.head
    ones = torch.ones(128, dtype=torch.bool)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(y)).split(128):
            fa, fb = enc_a({"values": xa[idx]}), enc_b({"values": xb[idx]})
            fused = fusion({"a": fa, "b": fb}, {"a": ones[: len(idx)], "b": ones[: len(idx)]}).fused
            loss = torch.nn.functional.cross_entropy(head(fused), y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--records", type=int, default=10000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, args.records)
        harness = statistics.median(harness_epochs(root, args.epochs)[1:])
        plain = statistics.median(harness_epochs(root, args.epochs, diagnostics=False)[1:])
        bare = statistics.median(bare_epochs(root, args.epochs)[1:])
    n_train = int(args.records * 0.8)
    print(f"records {args.records} (train {n_train}), batch 128, torch threads {torch.get_num_threads()}")
    print(f"bare PyTorch loop : {bare * 1000:8.1f} ms/epoch")
    print(f"polymodal harness, imbalance diagnostics off : {plain * 1000:8.1f} ms/epoch  "
          f"ratio {plain / bare:.2f}x (target <= 1.5x)")
    print(f"polymodal harness, diagnostics on (default)  : {harness * 1000:8.1f} ms/epoch  ratio {harness / bare:.2f}x")


if __name__ == "__main__":
    main()
