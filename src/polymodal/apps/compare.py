"""`polymodal compare`: several fusion methods and every unimodal baseline under the same budget and seeds.

Each model is trained once per seed with the config's data, encoders and training settings; only the fusion
(and, for baselines, the set of modalities) changes. If the config's fusion sets `hidden`, every method gets
that fused width. The table reports the task's metric as mean +/- std over seeds, parameters, training time
and inference latency per record; a bar chart with error bars is written next to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from polymodal.config import Component, Config
from polymodal.evaluation.contribution import held_out_dataset
from polymodal.evaluation.inference import predict_outputs
from polymodal.rundir import load_run
from polymodal.training.fit import train


@dataclass(frozen=True)
class Variant:
    """One model in the comparison: a name, the modalities it sees, its fusion."""

    name: str
    modalities: tuple[str, ...]
    fusion: str


def variants(config: Config, fusions: list[str], unimodal: bool = True) -> list[Variant]:
    out = [Variant(m, (m,), "concat") for m in config.modalities] if unimodal and len(config.modalities) > 1 else []
    return out + [Variant(f, tuple(config.modalities), f) for f in fusions]


def variant_config(config: Config, variant: Variant, seed: int, out: Path) -> Config:
    hidden = config.fusion.options.get("hidden")
    fusion = Component(name=variant.fusion, **({"hidden": hidden} if hidden is not None else {}))
    if variant.fusion == config.fusion.name:
        fusion = config.fusion
    return config.model_copy(update={
        "name": f"{variant.name}_seed{seed}",
        "modalities": {m: config.modalities[m] for m in variant.modalities},
        "fusion": fusion,
        "training": config.training.model_copy(update={"seed": seed, "progress_bar": False}),
        "output_dir": str(out / variant.name / f"seed{seed}"),
    })


def latency_ms(run_dir: Path, repeats: int = 3) -> float:
    """Milliseconds per record of the model's forward pass on the test split (batch 256, decoding excluded)."""
    run = load_run(run_dir)
    _, dataset = held_out_dataset(run)
    predict_outputs(run.model, run.processors, dataset)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        predict_outputs(run.model, run.processors, dataset)
    return 1000 * (time.perf_counter() - start) / (repeats * len(dataset))


def compare(config: Config, fusions: list[str], seeds: int, out: Path, unimodal: bool = True) -> pd.DataFrame:
    """Train every variant for every seed; write comparison.csv (per run), summary.csv and comparison.png."""
    from polymodal.tasks import build_task

    metric = build_task(config.target).monitor
    rows = []
    for variant in variants(config, fusions, unimodal):
        for seed in range(seeds):
            cfg = variant_config(config, variant, seed, out)
            result = train(cfg, overwrite=True)
            test = result.metrics["test"]
            rows.append({"model": variant.name, "seed": seed, metric: test[metric],
                         **{k: test[k] for k in ALSO_SHOWN if k in test and k != metric},
                         "params": result.params, "train_seconds": result.train_seconds,
                         "latency_ms": latency_ms(result.run_dir)})
            print(f"  {variant.name:<16} seed {seed}: {metric} {rows[-1][metric]:.4f}", flush=True)
    runs = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "comparison.csv", index=False)
    summary = summarize(runs, metric)
    summary.to_csv(out / "summary.csv", index=False)
    plot_summary(summary, metric, out / "comparison.png", set(config.modalities) - set(fusions))
    return summary


# Shown beside the task's selection metric when the task reports them (classification: macro-F1 next to accuracy).
ALSO_SHOWN = ("macro_f1", "mae")


def summarize(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    grouped = runs.groupby("model", sort=False)
    summary = grouped.agg(mean=(metric, "mean"), std=(metric, "std"), params=("params", "first"),
                          train_seconds=("train_seconds", "mean"), latency_ms=("latency_ms", "mean")).reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    for extra in (k for k in ALSO_SHOWN if k in runs.columns and k != metric):
        summary.insert(3, f"{extra}_mean", grouped[extra].mean().to_numpy())
    return summary.rename(columns={"mean": f"{metric}_mean", "std": f"{metric}_std"})


def format_summary(summary: pd.DataFrame, metric: str, seeds: int) -> str:
    extras = [c for c in summary.columns if c.endswith("_mean") and c != f"{metric}_mean"]
    lines = [f"{'model':<16}{metric + ' (mean +/- std, ' + str(seeds) + ' seeds)':>34}"
             + "".join(f"{c[:-5]:>10}" for c in extras) + f"{'params':>11}{'train_s':>9}{'ms/record':>11}"]
    for r in summary.to_dict("records"):
        mean, std = r[f"{metric}_mean"], r[f"{metric}_std"]
        lines.append(f"{r['model']:<16}{mean:>26.4f} +/- {std:.4f}" + "".join(f"{r[c]:>10.4f}" for c in extras)
                     + f"{r['params']:>11,}{r['train_seconds']:>9.1f}{r['latency_ms']:>11.4f}")
    return "\n".join(lines)


def plot_summary(summary: pd.DataFrame, metric: str, path: Path, baselines: set[str]) -> None:
    """Bars with error bars; unimodal baselines in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(summary) + 2), 3.5))
    colors = ["#999999" if m in baselines else "#4477aa" for m in summary["model"]]
    ax.bar(summary["model"], summary[f"{metric}_mean"], yerr=summary[f"{metric}_std"], capsize=4, color=colors)
    ax.set_ylabel(f"test {metric}")
    ax.set_title("mean +/- std over seeds (grey: unimodal)")
    ax.tick_params(axis="x", rotation=45)
    low = float((summary[f"{metric}_mean"] - summary[f"{metric}_std"]).min())
    ax.set_ylim(max(0.0, low - 0.05), None)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

