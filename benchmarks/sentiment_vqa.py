"""Text-only, audio-only and fused sentiment (built-in `sentiment`, also on its delivery-flipped subset) and
question-only, image-only and fused VQA accuracy (built-in `vqa_shapes`), from configs/sentiment.yaml and
configs/vqa.yaml with one seed. Usage: OMP_NUM_THREADS=1 python benchmarks/sentiment_vqa.py [sentiment|vqa] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from polymodal.config import Component, Config
from polymodal.datasets import DATASETS
from polymodal.factory import load_config
from polymodal.predictor import Predictor
from polymodal.training.fit import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def variant(config: Config, keep: tuple[str, ...], epochs: int | None, out: Path) -> Config:
    fusion = config.fusion if len(keep) > 1 else Component(name="concat", hidden=config.fusion.options["hidden"])
    training = config.training.model_copy(update={"progress_bar": False, **({"epochs": epochs} if epochs else {})})
    return config.model_copy(update={"modalities": {m: config.modalities[m] for m in keep}, "fusion": fusion,
                                     "training": training, "output_dir": str(out / "_".join(keep))})


def run(name: str, epochs: int | None, out: Path) -> list[dict[str, object]]:
    config = load_config(CONFIGS / f"{name}.yaml")
    names = list(config.modalities)
    rows = []
    for keep in [(m,) for m in names] + [tuple(names)]:
        start = time.perf_counter()
        result = train(variant(config, keep, epochs, out))
        row: dict[str, object] = {"model": " + ".join(keep), **result.metrics["test"],
                                  "train_s": round(time.perf_counter() - start, 1)}
        if name == "sentiment":
            row.update(flipped_subset(result.run_dir))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def flipped_subset(run_dir: Path) -> dict[str, float]:
    """MAE and sign accuracy on the test records whose sarcastic delivery flips the words' score."""
    root = DATASETS["sentiment"].materialize()
    test = pd.read_csv(root / "records.csv").query("split == 'test' and flipped")
    pred = torch.tensor(np.asarray(Predictor.load(run_dir).predict(test, root=root), dtype=np.float32))
    true = torch.tensor(test["score"].to_numpy(), dtype=torch.float32)
    return {"flipped_n": len(test), "flipped_mae": (pred - true).abs().mean().item(),
            "flipped_acc2": ((pred > 0) == (true > 0)).float().mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=["sentiment", "vqa"])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_sentiment_vqa"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = run(args.dataset, args.epochs, args.out / args.dataset)
    table = pd.DataFrame(rows).round(3).to_string(index=False)
    print(table)
    command = "OMP_NUM_THREADS=1 python " + " ".join(["benchmarks/sentiment_vqa.py", *sys.argv[1:]])
    results = Path(__file__).parent / "results" / f"sentiment_vqa_{args.dataset}.md"
    results.parent.mkdir(exist_ok=True)
    results.write_text(f"`{command}`\n\nOne seed, CPU, OMP_NUM_THREADS=1 (shared machine).\n\n```\n{table}\n```\n")


if __name__ == "__main__":
    main()
