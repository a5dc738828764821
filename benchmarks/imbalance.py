"""Imbalance remedies on `av_digits_imbalanced`: plain joint training vs each remedy, same budget and seeds.

    python benchmarks/imbalance.py                       # seeds 0 and 1, 12 epochs, one CPU thread
    python benchmarks/imbalance.py --seeds 0 --epochs 6 --methods joint ogm_ge --no-unimodal
    python benchmarks/imbalance.py --methods joint ogm_ge ogm_ge_continuous ogm_ge_step --no-unimodal  # OGM-GE forms

Every run is concat fusion over small CNN encoders (image_cnn and audio_cnn, width 8, 32 features) with the
same optimizer (AdamW), epochs, batch size and seed; only `training.imbalance` changes (joint = plain joint
training; ogm_ge = OGM-GE in the paper's form, Eq. 10 with the fused model's per-modality confidences;
ogm_ge_continuous = polymodal's first form, `ogm_form: continuous`; ogm_ge_step = the paper's form applied to the
parameter change, `ogm_scale: step`). Unimodal references (one
modality, same encoder) show what each modality reaches alone. Prints, and writes to OUT/imbalance.csv, per
variant (mean over seeds): fused test accuracy (best-validation checkpoint), each modality's linear-probe
accuracy (validation, final epoch; the imbalance diagnostic), OGM-GE's mean factor k per modality (`k_<m>`,
over the modulated steps) and train seconds; the load average before and after.
Results: benchmarks/results/imbalance.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polymodal.config import Config
from polymodal.factory import parse_config
from polymodal.training.fit import train

DATASET = "av_digits_imbalanced"
VARIANTS: dict[str, dict[str, Any]] = {  # table row -> training.imbalance
    "joint": {"method": "none"},
    "ogm_ge": {"method": "ogm_ge"},
    "ogm_ge_continuous": {"method": "ogm_ge", "ogm_form": "continuous"},
    "ogm_ge_step": {"method": "ogm_ge", "ogm_scale": "step"},
    "grad_blend": {"method": "grad_blend"},
    "aux_losses": {"method": "aux_losses"},
    "mmpareto": {"method": "mmpareto"},
}
SPECS: dict[str, dict[str, Any]] = {
    "image": {"type": "image", "size": 28, "channels": 1,
              "encoder": {"name": "image_cnn", "width": 8, "out_dim": 32}},
    "audio": {"type": "audio", "sample_rate": 8000, "n_mels": 32, "max_seconds": 1.0,
              "encoder": {"name": "audio_cnn", "width": 8, "out_dim": 32}},
}


def config(modalities: list[str], imbalance: dict[str, Any], out: Path, epochs: int, seed: int) -> Config:
    return parse_config({
        "name": out.name,
        "data": {"builtin": DATASET},
        "modalities": {m: SPECS[m] for m in modalities},
        "target": {"field": "label", "task": "multiclass"},
        "fusion": {"name": "concat", "hidden": 64},
        "training": {"epochs": epochs, "batch_size": 64, "lr": 3e-3, "patience": None, "seed": seed,
                     "progress_bar": False, "imbalance": imbalance},
        "output_dir": str(out),
    })


def run(name: str, modalities: list[str], imbalance: dict[str, Any], out: Path, epochs: int, seed: int
        ) -> dict[str, Any]:
    result = train(config(modalities, imbalance, out / f"{name.replace(' ', '_')}_s{seed}", epochs, seed))
    log = pd.read_csv(result.run_dir / "logs" / "metrics.csv")
    last = log[log["epoch"] == log["epoch"].max()].max(numeric_only=True)
    probes = {f"probe_{m}": last.get(f"probe_acc_{m}", float("nan")) for m in SPECS}
    coeffs = {f"k_{m}": log[f"ogm_coeff_{m}"].mean() if f"ogm_coeff_{m}" in log else float("nan") for m in SPECS}
    row = {"method": name, "seed": seed, "test_accuracy": result.metrics["test"]["accuracy"], **probes, **coeffs,
           "train_seconds": result.train_seconds}
    print(f"  {name:<11} seed {seed}: " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                    if isinstance(v, float) and k != "train_seconds")
          + f"  ({result.train_seconds:.0f} s)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-unimodal", action="store_true", help="skip the one-modality references")
    parser.add_argument("--out", type=Path, default=Path("runs/imbalance"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (more than the free cores "
                                                                   "slows these small models down many times)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}", flush=True)
    rows = []
    for seed in args.seeds:
        if not args.no_unimodal:
            rows += [run(f"{m} only", [m], {"method": "none"}, args.out, args.epochs, seed) for m in SPECS]
        rows += [run(m, list(SPECS), VARIANTS[m], args.out, args.epochs, seed) for m in args.methods]
    table = pd.DataFrame(rows).groupby("method", sort=False).mean(numeric_only=True).drop(columns="seed")
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "imbalance.csv")
    print(f"\n{DATASET}, concat fusion, {args.epochs} epochs, seeds {args.seeds} (mean); probes: validation, "
          "final epoch; test accuracy: best-validation checkpoint")
    print(markdown(table))
    print(f"load average after: {os.getloadavg()}")


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join([table.index.name, *table.columns]) + " |", "|" + "---|" * (len(table.columns) + 1)]
    for name, row in table.iterrows():
        cells = [f"{v:.1f}" if k == "train_seconds" else f"{v:.4f}" for k, v in row.items()]
        lines.append("| " + " | ".join([str(name), *cells]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
