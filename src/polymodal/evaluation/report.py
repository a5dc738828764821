"""The run report: one self-contained HTML file (images embedded) and its Markdown twin.

Sections: metrics with bootstrap confidence intervals, learning curves, confusion matrix, unimodal scores and
the missing-pattern table (the model with only some modalities present), modality contributions (Shapley
values, interactions), imbalance diagnostics over training, robustness and the shifted-modality table (when
`robustness.csv` and `shifted_modality.csv` exist, from `polymodal robustness`), and cost. `write_report` runs
at the end of training; `polymodal report RUN_DIR` runs it again later (and can compute robustness first).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from polymodal.data.dataset import MultimodalDataset
from polymodal.evaluation.inference import frozen_features, predict_outputs
from polymodal.rundir import Run, load_run
from polymodal.tasks import Task

Block = str | pd.DataFrame | Path


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(log_csv: Path, out: Path) -> bool:
    """Loss (left) and validation metrics (right) per epoch from the training loop's CSV log."""
    if not log_csv.is_file():
        return False
    frame = pd.read_csv(log_csv).groupby("epoch").max(numeric_only=True)
    losses = [c for c in ("train_loss", "val_loss") if c in frame]
    scores = [c for c in frame.columns if c.startswith("val_") and c != "val_loss"]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, cols, title in ((axes[0], losses, "loss"), (axes[1], scores, "validation metrics")):
        for col in cols:
            ax.plot(frame.index, frame[col], marker="o", label=col)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if cols:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def plot_columns(log_csv: Path, prefixes: Sequence[str], out: Path) -> bool:
    """One panel per prefix (e.g. probe_acc_, grad_norm_), one line per modality, over epochs."""
    if not log_csv.is_file():
        return False
    frame = pd.read_csv(log_csv).groupby("epoch").max(numeric_only=True)
    groups = [(p, [c for c in frame.columns if c.startswith(p)]) for p in prefixes]
    groups = [(p, cols) for p, cols in groups if cols]
    if not groups:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.2), squeeze=False)
    for ax, (prefix, cols) in zip(axes[0], groups):
        for col in cols:
            ax.plot(frame.index, frame[col], marker="o", label=col[len(prefix):] or col)
        ax.set_title(prefix.rstrip("_"))
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def plot_confusion(matrix: np.ndarray, classes: list[str], out: Path) -> None:
    plt = _pyplot()
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


def plot_bars(values: dict[str, float], title: str, out: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * len(values), 3))
    ax.bar(list(values), list(values.values()), color="#4477aa")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def bootstrap_ci(task: Task, logits: torch.Tensor, target: torch.Tensor | None, embeddings: dict | None = None,
                 n: int = 200, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Each metric with a percentile bootstrap interval over records (resampled with replacement)."""
    point = task.metrics(logits, target, embeddings)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in point}
    size = len(logits)
    for _ in range(n):
        idx = torch.from_numpy(rng.integers(0, size, size))
        sub = None if embeddings is None else {m: e[idx] for m, e in embeddings.items()}
        for k, v in task.metrics(logits[idx], None if target is None else target[idx], sub).items():
            draws[k].append(v)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return pd.DataFrame([{"metric": k, "value": v, "ci_low": np.nanpercentile(draws[k], lo),
                          "ci_high": np.nanpercentile(draws[k], hi)} for k, v in point.items()])


def metric_section(run: Run, dataset: MultimodalDataset, split: str) -> Section:
    out, target = predict_outputs(run.model, run.processors, dataset)  # target is None for retrieval
    table = bootstrap_ci(run.task, run.task.scores(out), target, out.embeddings)
    metrics = json.loads((run.path / "metrics.json").read_text()) if (run.path / "metrics.json").is_file() else {}
    blocks: list[Block] = [f"{split} split, {len(dataset)} records; 95% intervals from 200 bootstrap resamples "
                           "of the records.", table.round(4)]
    splits = [s for s in ("train", "val", "test") if s in metrics]
    if splits:
        blocks += ["All splits:", pd.DataFrame({s: metrics[s] for s in splits}).T.round(4)]
    return Section("Metrics", blocks)


def training_section(run_dir: Path) -> Section:
    section = Section("Training")
    if plot_curves(run_dir / "logs" / "metrics.csv", run_dir / "curves.png"):
        section.blocks.append(run_dir / "curves.png")
    return section


def confusion_section(run: Run, dataset: MultimodalDataset) -> Section | None:
    confusion = getattr(run.task, "confusion", None)
    if confusion is None:
        return None
    out, target = predict_outputs(run.model, run.processors, dataset)
    plot_confusion(confusion(out.logits, target), run.task.classes, run.path / "confusion_matrix.png")  # type: ignore[attr-defined]
    return Section("Confusion matrix", [run.path / "confusion_matrix.png"])


def contribution_sections(run: Run, dataset: MultimodalDataset) -> list[Section]:
    from polymodal.evaluation.contribution import CoalitionGame, contribution

    result = contribution(run, dataset)
    game = CoalitionGame(run, dataset)
    metric = run.task.monitor
    rows = [{"present": ", ".join(sorted(s)) or "(none)", "missing": ", ".join(sorted(set(run.model.modalities) - s))
             or "(none)", metric: game.metrics(s)[metric]} for s in sorted(game.values(), key=len, reverse=True)]
    patterns = pd.DataFrame(rows)
    plot_bars(result.shapley, f"Shapley value of each modality ({metric})", run.path / "shapley.png")
    return [
        Section("Unimodal scores and missing patterns", [
            f"The model evaluated with only some modalities present (the others marked missing), {metric}:",
            patterns.round(4)]),
        Section("Modality contributions", [
            "Shapley values add up to the full score minus the score with no modality (positive: helps).",
            pd.DataFrame([result.shapley]).round(4), run.path / "shapley.png",
            "Interaction: synergy = joint gain - sum of unimodal gains (positive: worth more together; "
            "negative: redundant).", pd.DataFrame([result.summary]).round(4)]),
    ]


def imbalance_section(run_dir: Path) -> Section | None:
    out = run_dir / "imbalance.png"
    if not plot_columns(run_dir / "logs" / "metrics.csv", ("probe_acc_", "grad_norm_", "confidence_"), out):
        return None
    return Section("Imbalance diagnostics", ["Per-modality linear-probe accuracy, encoder gradient norm and "
                                             "confidence over training.", out])


def robustness_section(run_dir: Path) -> Section | None:
    summary = run_dir / "robustness_summary.csv"
    if not summary.is_file():
        return None
    blocks: list[Block] = [pd.read_csv(summary).round(4)]
    blocks += [p for p in (run_dir / "robustness_severity.png", run_dir / "robustness_missing.png") if p.is_file()]
    return Section("Robustness", blocks)


def shifted_section(run_dir: Path) -> Section | None:
    path = run_dir / "shifted_modality.csv"
    if not path.is_file():
        return None
    intro = ("One modality shifted (a corruption at each severity, or a held-out domain): the run's score, the best "
             "score of a model blind to that modality (`unaffected`), the AUROC of the modality's reliability "
             "distance for telling the shifted records from clean ones, and the share of shifted (`flagged`) and of "
             "clean records (`false_alarms`) over its out-of-distribution line.")
    return Section("Shifted modality", [intro, pd.read_csv(path).round(4)])


def cost_section(run: Run, dataset: MultimodalDataset) -> Section:
    from polymodal.evaluation.cost import measure_cost

    cost = measure_cost(run, dataset, batch_size=32)  # every encoder runs here: a small batch keeps it seconds
    return Section("Cost", [pd.DataFrame([cost]).T.rename(columns={0: "value"})])


def write_report(run_dir: str | Path, robustness: bool = False) -> Path:
    """Write report.html (self-contained) and report.md for a run; returns the HTML path."""
    from polymodal.evaluation.contribution import held_out_dataset

    run = load_run(run_dir)
    if robustness:
        from polymodal.evaluation.robustness import run_robustness
        from polymodal.evaluation.shifted import run_shifted

        run_robustness(run.path)
        run_shifted(run.path)
    split, raw = held_out_dataset(run)
    dataset = frozen_features(run.config, run.model, run.processors, raw)  # frozen encoders: stored outputs
    sections = [metric_section(run, dataset, split), training_section(run.path), confusion_section(run, dataset),
                *(contribution_sections(run, dataset) if len(run.model.modalities) > 1 and run.task.num_outputs
                  and run.task.scalar_predictions else []),
                imbalance_section(run.path), robustness_section(run.path), shifted_section(run.path),
                cost_section(run, raw)]
    present = [s for s in sections if s is not None]
    title = f"polymodal run {run.config.name}"
    intro = (f"Task {run.config.target.task}; modalities " + ", ".join(f"{m} ({s.type})" for m, s in
             run.config.modalities.items()) + f"; fusion {run.config.fusion.name}.")
    (run.path / "report.md").write_text(to_markdown(title, intro, present, run.path))
    html_path = run.path / "report.html"
    html_path.write_text(to_html(title, intro, present))
    return html_path


def to_markdown(title: str, intro: str, sections: list[Section], base: Path) -> str:
    lines = [f"# {title}", "", intro]
    for section in sections:
        lines += ["", f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, pd.DataFrame):
                lines += [markdown_table(block), ""]
            elif isinstance(block, Path):
                lines += [f"![{block.stem}]({block.relative_to(base)})", ""]
            else:
                lines += [block, ""]
    return "\n".join(lines) + "\n"


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table; the index becomes the first column unless it is the default 0..N-1."""
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    cells = [[str(c) for c in frame.columns]] + [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([lines[0], "|" + "---|" * len(frame.columns), *lines[1:]])


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


CSS = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
       "img{max-width:100%;display:block;margin:.5em 0}h2{border-bottom:1px solid #ddd}")
CHECK = ("window.addEventListener('load',()=>{const i=[...document.images];const ok=i.filter(x=>x.complete&&"
         "x.naturalWidth>0).length;document.body.dataset.images=ok+'/'+i.length;"
         "document.body.dataset.sections=document.querySelectorAll('section').length;});")


def to_html(title: str, intro: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style><script>{CHECK}</script></head><body><h1>{html.escape(title)}</h1>"
             f"<p>{html.escape(intro)}</p>"]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, pd.DataFrame):
                parts.append(block.to_html(index=not isinstance(block.index, pd.RangeIndex), border=0))
            elif isinstance(block, Path):
                data = base64.b64encode(block.read_bytes()).decode()
                parts.append(f"<img alt='{html.escape(block.stem)}' src='data:image/png;base64,{data}'>")
            else:
                parts.append(f"<p>{html.escape(block)}</p>")
        parts.append("</section>")
    return "".join(parts) + "</body></html>"
