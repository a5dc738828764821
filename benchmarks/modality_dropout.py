"""Does training with modality dropout make AV-Digits robust to a missing modality?

Trains the concat fusion twice with the same budget and seed, once plainly and once with per-record modality
dropout, then scores each on the test split clean and with the image or the audio missing for every record.

    python benchmarks/modality_dropout.py [--rate 0.3] [--epochs 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pandas as pd

from polymodal.apps.quickstart import av_digits_config
from polymodal.evaluation.contribution import CoalitionGame, split_dataset
from polymodal.rundir import load_run
from polymodal.training.fit import train


def scores(run_dir: Path) -> dict[str, float]:
    run = load_run(run_dir)
    game = CoalitionGame(run, split_dataset(run, "test"))
    return {"clean": game.value(frozenset({"image", "audio"})), "image missing": game.value(frozenset({"audio"})),
            "audio missing": game.value(frozenset({"image"}))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/modality_dropout")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = {}
    for name, rate in (("plain", 0.0), (f"dropout {args.rate}", args.rate)):
        cfg = av_digits_config("av_digits", ["image", "audio"], "concat", Path(args.out) / name.replace(" ", "_"),
                               args.epochs, args.seed)
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"modality_dropout": rate})})
        rows[name] = scores(train(cfg).run_dir)
    table = pd.DataFrame(rows).T
    print("test accuracy of concat fusion on AV-Digits (missing = absent for every test record)")
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
