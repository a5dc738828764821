"""Resume exactness: train 6 epochs uninterrupted; train again, stop it right after the first checkpoint (a
callback raises, as a kill would), resume with `resume=True`; report the largest weight difference.

The setting of issue 12: 90 records of text + a number + a category, ratio split, batch 8, dropout in the fusion.
    PYTHONPATH=src python benchmarks/resume_exactness.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from polymodal.config import parse_config
from polymodal.training.fit import train
from polymodal.training.loop import Callback, Loop

WORDS = ["red apple", "green pear", "blue sky"]


class Interrupted(RuntimeError):
    pass


class StopAfterFirstCheckpoint(Callback):
    def on_train_epoch_start(self, loop: Loop, module: torch.nn.Module) -> None:
        if loop.current_epoch == 1:
            raise Interrupted("stopped after the first checkpoint")


def write_table(root: Path, n: int = 90) -> Path:
    rng = np.random.default_rng(0)
    rows = [{"title": f"{WORDS[i % 3]} number {rng.integers(5)}", "price": float(i % 3) + rng.normal(0, 0.5),
             "brand": "abc"[rng.integers(3)], "label": "xyz"[i % 3]} for i in range(n)]
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "data.csv", index=False)
    return root / "data.csv"


def config(table: Path, out: Path) -> dict:
    return {"name": out.name, "data": {"source": str(table), "split": {"ratios": [0.7, 0.15, 0.15], "seed": 0}},
            "modalities": {"title": {"type": "text", "encoder": {"name": "text_gru", "out_dim": 16, "embed_dim": 8}},
                           "specs": {"type": "tabular", "numeric": ["price"], "categorical": ["brand"],
                                     "encoder": {"name": "tabular_mlp", "out_dim": 16, "hidden": 16}}},
            "target": {"field": "label", "task": "multiclass"},
            "fusion": {"name": "concat", "hidden": 16, "dropout": 0.3},
            "training": {"epochs": 6, "batch_size": 8, "progress_bar": False, "lr": 3e-3},
            "output_dir": str(out)}


def main(out: Path) -> float:
    table = write_table(out / "data")
    train(parse_config(config(table, out / "straight")))
    try:
        train(parse_config(config(table, out / "resumed")), callbacks=[StopAfterFirstCheckpoint()])
    except Interrupted:
        pass
    train(parse_config(config(table, out / "resumed")), resume=True)
    a, b = load_file(str(out / "straight" / "model.safetensors")), load_file(str(out / "resumed" / "model.safetensors"))
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(f"max abs weight difference, resumed vs uninterrupted: {main(Path(sys.argv[1])):.3g}")
