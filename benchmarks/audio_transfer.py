"""Does the audio model transfer from synthetic to human voices? Audio-only AV-Digits models, one per setting of
the audio modality's robustness options (per-utterance normalization, SpecAugment, speed and frequency-warp
perturbation), scored on the synthetic validation split, the synthetic test split and the human speakers of
`human.csv`, split into a *dev* group (used to choose the defaults) and a held-out group (reported only).

    POLYMODAL_DATA=/tmp/data OMP_NUM_THREADS=1 nice python benchmarks/audio_transfer.py --epochs 8 --seeds 0 \
        --out runs/audio_transfer [--settings NAME ...] [--held-out]

Without `--held-out` the held-out speakers' accuracy is not computed nor printed (choices are made without it).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.apps.quickstart import av_digits_config
from polymodal.config import Config
from polymodal.datasets import DATASETS
from polymodal.datasets.av_digits import HUMAN_DEV_SPEAKERS, human_speakers

OFF = {"utterance_norm": "none", "spec_augment": False, "speed_perturb": 0.0, "freq_warp": 0.0}
ALL = {"utterance_norm": "mean_std", "spec_augment": True, "speed_perturb": 0.15, "freq_warp": 0.1}
SETTINGS: dict[str, dict[str, Any]] = {  # in the order they were tried
    "before (dataset statistics only)": OFF,
    "utterance mean": {**OFF, "utterance_norm": "mean"},
    "utterance mean_std": {**OFF, "utterance_norm": "mean_std"},
    "mean_std + spec_augment": {**OFF, "utterance_norm": "mean_std", "spec_augment": True},
    "mean_std + speed + warp": {**OFF, "utterance_norm": "mean_std", "speed_perturb": 0.15, "freq_warp": 0.1},
    "mean_std + all": ALL,
    "mean_std + all, speed 0.4": {**ALL, "speed_perturb": 0.4},
    "mean + speed + warp (the default)": {},
    "mean_std + speed 0.3 + warp 0.2": {**OFF, "utterance_norm": "mean_std", "speed_perturb": 0.3,
                                        "freq_warp": 0.2},
}


def config(name: str, out: Path, epochs: int, seed: int) -> Config:
    run_dir = out / f"{name.split(' (')[0].replace(' ', '_').replace('+', 'plus')}_s{seed}"
    cfg = av_digits_config("av_digits", ["audio"], "concat", run_dir, epochs, seed)
    audio = cfg.modalities["audio"].model_copy(update=SETTINGS[name])
    return cfg.model_copy(update={"modalities": {"audio": audio}})


def train_run(cfg: Config) -> None:
    from polymodal.training.fit import train
    import polymodal.evaluation.report as report

    if (cfg.run_dir() / "metrics.json").is_file():
        return
    report.write_report = lambda *args, **kwargs: None  # type: ignore[assignment]  # not part of this benchmark
    train(cfg)


def scores(cfg: Config, data: Path, speakers: pd.Series, held_out: bool) -> dict[str, float]:
    from polymodal.predictor import Predictor

    metrics = json.loads((cfg.run_dir() / "metrics.json").read_text())
    human = pd.read_csv(data / "human.csv")
    predicted = Predictor.load(cfg.run_dir()).predict(human, root=data)
    right = pd.Series(np.asarray(predicted).astype(str) == human["label"].astype(str).to_numpy(),
                      index=human["id"].to_numpy())
    dev = speakers.reindex(right.index).isin(HUMAN_DEV_SPEAKERS).to_numpy()
    out = {"val": metrics["val"]["accuracy"], "test": metrics["test"]["accuracy"],
           "human_dev": float(right[dev].mean())}
    if held_out:
        out["human_held_out"] = float(right[~dev].mean())
        out["human_all"] = float(right.mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("runs/audio_transfer"))
    parser.add_argument("--held-out", action="store_true")
    args = parser.parse_args()
    data = DATASETS["av_digits"].materialize()
    speakers = human_speakers()
    rows = []
    for name in args.settings:
        for seed in args.seeds:
            cfg = config(name, args.out, args.epochs, seed)
            train_run(cfg)
            rows.append({"setting": name, "seed": seed, **scores(cfg, data, speakers, args.held_out)})
            print(rows[-1], "load", os.getloadavg(), flush=True)
    frame = pd.DataFrame(rows)
    print(frame.groupby("setting", sort=False).agg(["mean", "std", "count"]).drop(columns="seed").round(3)
          .to_string())


if __name__ == "__main__":
    main()
