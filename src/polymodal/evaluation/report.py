"""Run report: learning curves and confusion matrix as PNG, a Markdown summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from polymodal.config import Config
from polymodal.evaluation.inference import predict_outputs
from polymodal.model import MultimodalModel, count_parameters

if TYPE_CHECKING:
    from polymodal.training.fit import Prepared


def plot_curves(log_csv: Path, out: Path) -> bool:
    """Loss and validation metrics per epoch from Lightning's CSV log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not log_csv.is_file():
        return False
    frame = pd.read_csv(log_csv).groupby("epoch").max(numeric_only=True)
    losses = [c for c in ("train_loss", "val_loss") if c in frame]
    scores = [c for c in frame.columns if c.startswith("val_") and c != "val_loss"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for col in losses:
        axes[0].plot(frame.index, frame[col], marker="o", label=col)
    for col in scores:
        axes[1].plot(frame.index, frame[col], marker="o", label=col)
    for ax, title in zip(axes, ("loss", "validation metrics")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def plot_confusion(matrix: np.ndarray, classes: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * k, 1.0 + 0.45 * k))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=90 if k > 6 else 0)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def write_report(run_dir: Path, config: Config, prep: Prepared, model: MultimodalModel) -> Path:
    """Write curves.png, confusion_matrix.png (classification) and report.md into the run directory."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lines = [f"# Run `{config.name}`", "",
             f"- task: {config.target.task}; modalities: "
             + ", ".join(f"{m} ({s.type})" for m, s in config.modalities.items()),
             f"- fusion: {config.fusion.name}; parameters: {count_parameters(model):,}",
             f"- training: {metrics['epochs']} epochs in {metrics['train_seconds']:.1f} s", "", "## Metrics", ""]
    splits = [s for s in ("train", "val", "test") if s in metrics]
    names = list(metrics[splits[0]]) if splits else []
    lines += ["| split | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {s} | " + " | ".join(f"{metrics[s][n]:.4f}" for n in names) + " |" for s in splits]
    if plot_curves(run_dir / "logs" / "metrics.csv", run_dir / "curves.png"):
        lines += ["", "## Learning curves", "", "![curves](curves.png)"]
    confusion = getattr(prep.task, "confusion", None)
    split = "test" if "test" in prep.datasets else "val"
    if confusion is not None:
        outputs, target = predict_outputs(model, prep.processors, prep.datasets[split])
        plot_confusion(confusion(outputs.logits, target), prep.task.classes, run_dir / "confusion_matrix.png")  # type: ignore[attr-defined]
        lines += ["", f"## Confusion matrix ({split})", "", "![confusion](confusion_matrix.png)"]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
