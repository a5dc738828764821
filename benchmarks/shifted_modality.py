"""Which fusion stays right when one modality shifts, and does the reliability score notice?

AV-Digits with the recipe of configs/av_digits_concat.yaml, only the fusion changed (plus an image-only model,
concat with modality dropout 0.3, and `reliable` with its gates opened as an ablation), for several seeds. Per
run: in-distribution test accuracy, accuracy on the held-out human speakers (`human.csv`: test images paired
with real voices never seen in training), accuracy under each audio corruption at the highest severity, and the
AUROC of the per-modality reliability distance (calibrated on the validation split) for telling corrupted
records from clean ones, over every corruption of both modalities at the highest severity (and for the human
voices). The human voices are scored as a whole and in two groups of speakers: `human_dev`
(`av_digits.HUMAN_DEV_SPEAKERS`, the only ones used for choices) and `human_held_out` (the others, never used for
choices). Results are cached per run (`--out`), so
the script can be stopped, run in several processes at once (each claims the runs it trains), and rerun to
print the table.

    POLYMODAL_DATA=/tmp/data OMP_NUM_THREADS=1 nice python benchmarks/shifted_modality.py --epochs 8 \
        --seeds 0 1 2 --out runs/shifted [--models NAME ...] [--phase train|eval|table|all] [--skip-report] \
        [--skip-ablations]
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.config import Config
from polymodal.datasets import DATASETS
from polymodal.datasets.av_digits import HUMAN_DEV_SPEAKERS, human_speakers
from polymodal.apps.quickstart import av_digits_config

MODELS: dict[str, tuple[list[str], str, float]] = {  # name: modalities, fusion, modality dropout
    "image only": (["image"], "concat", 0.0),
    "tmc": (["image", "audio"], "tmc", 0.0),
    "qmf": (["image", "audio"], "qmf", 0.0),
    "concat": (["image", "audio"], "concat", 0.0),
    "concat + dropout 0.3": (["image", "audio"], "concat", 0.3),
    "late": (["image", "audio"], "late", 0.0),
    "gated": (["image", "audio"], "gated", 0.0),
    "attention": (["image", "audio"], "attention", 0.0),
    "reliable": (["image", "audio"], "reliable", 0.0),
}
# Ablations evaluated on another model's trained runs (no training of their own): name -> (model, change).
ABLATIONS: dict[str, tuple[str, str]] = {
    "reliable, gates open": ("reliable", "gates open"),  # temperatures kept, every w_m = 1: the plain product
    "reliable, quantile 0.8": ("reliable", "quantile 0.8"),  # gates refitted: w = 1/2 at the validation q80
    "reliable, quantile 0.99": ("reliable", "quantile 0.99"),
}


def config(name: str, out: Path, epochs: int, seed: int) -> Config:
    modalities, fusion, dropout = MODELS[name]
    run_dir = out / f"{name.replace(' ', '_').replace('+', 'plus')}_s{seed}"
    cfg = av_digits_config("av_digits", modalities, fusion, run_dir, epochs, seed)
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"modality_dropout": dropout})})


def train_run(cfg: Config, skip_report: bool) -> None:
    """Train unless done or claimed by another worker (a `.claim` folder, made atomically)."""
    from polymodal.training.fit import train

    claim = cfg.run_dir().parent / f"{cfg.run_dir().name}.claim"
    if (cfg.run_dir() / "metrics.json").is_file():
        return
    try:
        claim.mkdir(parents=True)
    except FileExistsError:
        return
    if skip_report:  # the run's HTML report is not part of this benchmark and costs minutes per run
        import polymodal.evaluation.report as report

        report.write_report = lambda *args, **kwargs: None  # type: ignore[assignment]
    train(cfg)


def change_gates(run: Any, change: str) -> None:
    """Open the reliable fusion's gates (weight 1, temperatures kept), or refit them at another quantile from
    the run's validation calibration (`quantile Q`)."""
    import torch

    from polymodal.evaluation.reliability import load_reliability

    refs = load_reliability(run.path)
    for m, gate in run.model.fusion.gates.items():
        if change == "gates open":
            gate.means = gate.means[:0]
        else:
            ref = refs[m].pooled  # the gate reads pooled features
            gate.fit(torch.as_tensor(ref.means), torch.as_tensor(ref.precision), torch.as_tensor(ref.distances),
                     float(change.split()[1]), run.model.fusion.sharpness)


def scores_file(cfg: Config, change: str | None = None) -> Path:
    return cfg.run_dir() / ("shifted.json" if change is None else f"shifted_{change.replace(' ', '_')}.json")


def human_frames(human: Path) -> dict[str, pd.DataFrame]:
    """`human.csv` whole (`human`), its dev speakers (`human_dev`, used for choices) and the others
    (`human_held_out`)."""
    frame = pd.read_csv(human)
    dev = human_speakers().reindex(frame["id"]).isin(HUMAN_DEV_SPEAKERS).to_numpy()
    return {"human": frame, "human_dev": frame[dev].reset_index(drop=True),
            "human_held_out": frame[~dev].reset_index(drop=True)}


def human_tables(human: Path) -> dict[str, Any]:
    from polymodal.data.sources import Table

    return {name: (Table(frame, human.parent, f"{name}.csv"), "audio") for name, frame in human_frames(human).items()}


def evaluate_run(cfg: Config, human: Path, change: str | None = None) -> dict[str, Any]:
    """The run's scores (cached as shifted.json in the run directory; shifted_<change>.json for an ablation)."""
    from polymodal.evaluation.robustness import load_table
    from polymodal.evaluation.shifted import dataset_of, score_and_distance, shifted_modality
    from polymodal.rundir import load_run

    cache = scores_file(cfg, change)
    if cache.is_file():
        return json.loads(cache.read_text())
    run = load_run(cfg.run_dir())
    if change is not None:
        change_gates(run, change)
    rows = shifted_modality(run, load_table(run, None), severities=[5],
                            held_out=human_tables(human) if "audio" in run.processors else {})
    test = json.loads((cfg.run_dir() / "metrics.json").read_text())["test"]["accuracy"]
    if change is not None:  # the run's metrics are those of the unchanged model
        test = score_and_distance(run, dataset_of(run, load_table(run, None)), {})[0]
    result = {"test": test, "rows": rows.to_dict("records")}
    cache.write_text(json.dumps(result, default=float))
    return result


HUMAN = ("human", "human_dev", "human_held_out")


def summary(result: dict[str, Any], human_acc: dict[str, float] | None) -> dict[str, float]:
    """One run's headline numbers."""
    rows = pd.DataFrame(result["rows"])
    out = {"test": result["test"]}
    if "audio" not in set(rows.modality):  # image only: it does not read the audio, so audio shifts leave it be
        return {**out, **(human_acc or {}), "audio_corrupt_mean": out["test"],
                "audio_corrupt_worst": out["test"], "auroc_corruptions": float(rows.auroc.mean()),
                **detection_rates(rows)}
    audio = rows[(rows.modality == "audio") & ~rows["shift"].isin(HUMAN)]
    for name in HUMAN:
        out[name] = float(rows[rows["shift"] == name].score.iloc[0]) if (rows["shift"] == name).any() else np.nan
    if (rows["shift"] == "human").any():  # the same run with the audio treated as missing for every record
        out["human_without_audio"] = float(rows[rows["shift"] == "human"].unaffected.iloc[0])
    out["audio_corrupt_mean"] = float(audio.score.mean())
    out["audio_corrupt_worst"] = float(audio.score.min())
    corrupted = rows[~rows["shift"].isin(HUMAN)]
    out["auroc_corruptions"] = float(corrupted.auroc.mean())
    out["auroc_audio"] = float(audio.auroc.mean())
    out["auroc_human"] = float(rows[rows["shift"] == "human"].auroc.iloc[0])
    return {**out, **detection_rates(rows)}


def detection_rates(rows: pd.DataFrame) -> dict[str, float]:
    """At the ood line: the share of corrupted records flagged (mean over the corruptions of both modalities), of
    human voices flagged, and of clean test records flagged (mean over the modalities). Older caches: none."""
    if "flagged" not in rows:
        return {}
    corrupted = rows[~rows["shift"].isin(HUMAN)]
    human = rows[rows["shift"] == "human"]
    return {"flagged_corruptions": float(corrupted.flagged.mean()),
            "flagged_human": float(human.flagged.iloc[0]) if len(human) else np.nan,
            "false_alarms": float(rows.groupby("modality").false_alarms.first().mean())}


def image_only_human(cfg: Config, human: Path) -> dict[str, float]:
    from polymodal.predictor import Predictor

    path = cfg.run_dir() / "human_groups.json"
    if not path.is_file():
        predictor = Predictor.load(cfg.run_dir())
        path.write_text(json.dumps({name: predictor.evaluate(frame, root=human.parent)["accuracy"]
                                    for name, frame in human_frames(human).items()}))
    return {name: float(value) for name, value in json.loads(path.read_text()).items()}


def table(frames: dict[str, list[dict[str, float]]]) -> str:
    cols = ["test", "human", "human_dev", "human_held_out", "human_without_audio", "audio_corrupt_mean",
            "audio_corrupt_worst", "auroc_corruptions", "auroc_audio", "auroc_human", "flagged_corruptions",
            "flagged_human", "false_alarms"]
    lines = ["| model | seeds | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name, runs in frames.items():
        frame = pd.DataFrame(runs)
        cells = [_cell(frame[c]) if c in frame else "-" for c in cols]
        lines.append(f"| {name} | {len(frame)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "-"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values.mean():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--out", default="runs/shifted")
    parser.add_argument("--phase", choices=["train", "eval", "table", "all"], default="all")
    parser.add_argument("--skip-report", action="store_true", help="do not write each run's HTML report")
    parser.add_argument("--skip-ablations", action="store_true", help="do not evaluate the ABLATIONS")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    human = DATASETS["av_digits"].materialize() / "human.csv"
    results: dict[str, list[dict[str, float]]] = {}
    for seed in args.seeds:
        for name in args.models:
            cfg = config(name, Path(args.out), args.epochs, seed)
            if args.phase in ("train", "all"):
                train_run(cfg, args.skip_report)
            if args.phase in ("eval", "all") and (cfg.run_dir() / "metrics.json").is_file():
                evaluate_run(cfg, human)
            if (cfg.run_dir() / "shifted.json").is_file():
                own = image_only_human(cfg, human) if name == "image only" else None
                results.setdefault(name, []).append(summary(json.loads((cfg.run_dir() / "shifted.json").read_text()),
                                                        own))
        for name, (model, change) in ({} if args.skip_ablations else ABLATIONS).items():
            cfg = config(model, Path(args.out), args.epochs, seed)
            if model in args.models and scores_file(cfg).is_file() and (
                    args.phase in ("eval", "all") or scores_file(cfg, change).is_file()):
                results.setdefault(name, []).append(summary(evaluate_run(cfg, human, change), None))
    print(table(results))
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
