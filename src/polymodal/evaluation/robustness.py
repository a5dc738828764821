"""Robustness of a trained run to corrupted and missing modalities: curves, areas, relative/effective robustness.

`run_robustness(run_dir)` (the `polymodal robustness` command) evaluates a run on its test split (or any labelled
table) under
- every corruption of every modality (`evaluation.corruptions`) at severities 0..5, one modality at a time;
- each modality missing for a random 0, 10, ..., 90% of the records;
- every pattern of missing modalities (all 2^N - 1 non-empty subsets dropped, for N <= 6; sampled above);
and summarizes each curve (score vs level normalised to 0..1) by
- `auc`: the trapezoid area under it; a curve that never drops has auc = its clean score;
- `relative_robustness`: auc / clean score (MultiBench's relative robustness, normalised so a flat curve gives
  1); for metrics where lower is better (rmse) it is clean / auc, so higher always means more robust;
- `effective_robustness`: the mean, over the corrupted levels, of score - trend(level), where the trend starts at
  the model's clean score and falls with the slope of a least-squares line through a baseline's curve
  (MultiBench's effective robustness: performance beyond what the baseline's degradation predicts). The
  baseline is another run (e.g. a unimodal model) evaluated on the same data and corruptions; a baseline that
  does not read the corrupted modality is unaffected by it (a flat trend). Without a baseline run, the trend
  is the model's own average curve of that kind across modalities (and corruptions). Sign flipped for
  lower-is-better metrics, so positive always means more robust than the trend.
All numbers come from the run and the data given, nothing from stored tables.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.dataset import Decoded, MultimodalDataset, decode, raise_on_fatal
from polymodal.data.sources import Table, read_table, table_root
from polymodal.errors import RecordError
from polymodal.evaluation.corruptions import CORRUPTIONS, corrupt, record_rng
from polymodal.evaluation.inference import frozen_features, output_metrics, predict_outputs
from polymodal.features.cache import carry_features
from polymodal.processors import Processor
from polymodal.rundir import Run, load_run
from polymodal.tasks import Task

RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CURVES = ("corruption", "missing_rate")
MAX_EXHAUSTIVE = 6
RESULTS, SUMMARY = "robustness.csv", "robustness_summary.csv"
SEVERITY_PNG, MISSING_PNG = "robustness_severity.png", "robustness_missing.png"


# ---- corrupted and incomplete datasets ---------------------------------------------------------------------

def raw_values(table: Table, processor: Processor, decoded: Decoded, modality: str) -> list[Any]:
    """`decode_raw` of each decoded record's value of one modality (None where it is missing)."""
    values = processor.values(table.frame)
    position = {int(row): i for i, row in enumerate(table.frame.index)}
    return [processor.decode_raw(values[position[row]], table.root) if ok else None
            for row, ok in zip(decoded.rows, decoded.present[modality])]


def corrupted_dataset(decoded: Decoded, processors: Mapping[str, Processor], raws: Mapping[str, list[Any]],
                      corruption: Mapping[str, tuple[str, int]], seed: int = 0) -> MultimodalDataset:
    """The dataset of `decoded` with each named modality's raw values (`raw_values`) corrupted and re-prepared.

    Every record's generator is `record_rng(seed, row)`, and each modality starts from it afresh, so paired
    modalities get the same draws. A corrupted value its processor rejects (e.g. text left without tokens)
    counts as missing.
    """
    items, present = dict(decoded.items), dict(decoded.present)
    for m, (name, severity) in corruption.items():
        if severity == 0:
            continue
        proc, new_items, new_present = processors[m], [], []
        for row, raw, item in zip(decoded.rows, raws[m], decoded.items[m]):
            try:
                new_items.append(item if raw is None else proc.features(
                    corrupt(proc, name, raw, severity, record_rng(seed, row))))
                new_present.append(raw is not None)
            except RecordError:
                new_items.append(proc.blank())
                new_present.append(False)
        items[m], present[m] = new_items, new_present
    return MultimodalDataset(replace(decoded, items=items, present=present), _ragged(processors))


def decode_corrupted(table: Table, processors: Mapping[str, Processor], task: Task | None,
                     corruption: Mapping[str, tuple[str, int]], seed: int = 0) -> MultimodalDataset:
    """Decode a table with corruptions applied to the raw signals: `{modality: (corruption name, severity)}`."""
    decoded = decode(table, processors, task)
    raise_on_fatal(decoded)
    raws = {m: raw_values(table, processors[m], decoded, m) for m in corruption}
    return corrupted_dataset(decoded, processors, raws, corruption, seed)


def random_missing(dataset: MultimodalDataset, modality: str, rate: float, seed: int = 0) -> MultimodalDataset:
    """A copy with `modality` marked missing for round(rate * N) records, chosen by a per-record draw.

    The records dropped at a rate are a subset of those dropped at any higher rate (same seed).
    """
    u = np.array([record_rng(seed, int(row)).random() for row in dataset.rows])
    drop = np.zeros(len(u), dtype=bool)
    drop[np.argsort(u, kind="stable")[: int(round(rate * len(u)))]] = True
    out = copy.copy(dataset)
    out.present = {**dataset.present, modality: dataset.present[modality] & ~drop}
    return out


def missing_patterns(modalities: Sequence[str], limit: int = MAX_EXHAUSTIVE, samples: int = 63,
                     seed: int = 0) -> list[frozenset[str]]:
    """Sets of modalities to drop: every non-empty subset (2^N - 1 patterns, including dropping all) when
    N <= `limit`. Above, there are too many: each single modality dropped, all but each one dropped, all
    dropped, and random other subsets up to `samples` patterns in all (seeded).
    """
    mods = list(modalities)
    if len(mods) <= limit:
        return [frozenset(c) for r in range(1, len(mods) + 1) for c in combinations(mods, r)]
    chosen = {frozenset([m]) for m in mods} | {frozenset(mods) - {m} for m in mods} | {frozenset(mods)}
    rng = np.random.default_rng(seed)
    while len(chosen) < min(samples, 2 ** len(mods) - 1):
        pick = rng.random(len(mods)) < 0.5
        if pick.any():
            chosen.add(frozenset(m for m, p in zip(mods, pick) if p))
    return sorted(chosen, key=lambda s: (len(s), sorted(mods.index(m) for m in s)))


# ---- evaluation ----------------------------------------------------------------------------------------------

def evaluate_dataset(run: Run, dataset: MultimodalDataset, drop: frozenset[str] = frozenset(),
                     batch_size: int = 256) -> dict[str, float]:
    output, target = predict_outputs(run.model, run.processors, dataset, batch_size, drop)
    assert target is not None
    return output_metrics(run.task, output, target)


def evaluate_robustness(run: Run, table: Table, severities: Iterable[int] = range(6),
                        rates: Iterable[float] = RATES, seed: int = 0,
                        corruptions: Mapping[str, Sequence[str]] | None = None,
                        batch_size: int = 256) -> pd.DataFrame:
    """Scores of a run on a labelled table, clean and under every corruption and missing-modality setting.

    Args:
        run: a loaded run (`load_run`).
        table: labelled records.
        severities: corruption severities (0 = clean).
        rates: fractions of records missing a modality.
        seed: draws per record are a function of (seed, record), so reruns are identical.
        corruptions: per modality, the corruption names to apply (default: all of its type; [] skips one).
        batch_size: inference batch size.

    Returns:
        One row per setting: `kind` (clean, corruption, missing_rate, missing_pattern), `modality` (for a
        pattern: the dropped modalities joined by +), `corruption` (name, `random` or `drop`), `level`
        (severity, rate, or number of dropped modalities), `x` (level / max level), `metric` (the task's
        main metric), `score` (its value), then every metric of the task by name.
    """
    severities, rates = sorted(set(severities)), sorted(set(rates))
    unknown = set(corruptions or {}) - set(run.processors)
    if unknown:
        raise KeyError(f"corruptions name modalities {sorted(unknown)} that the run does not have; "
                       f"it has {', '.join(run.processors)}")
    decoded = decode(table, run.processors, run.task)
    raise_on_fatal(decoded)
    clean_set = MultimodalDataset(decoded, _ragged(run.processors))
    clean_set = frozen_features(run.config, run.model, run.processors, clean_set)
    clean = evaluate_dataset(run, clean_set, batch_size=batch_size)  # frozen encoders read the feature cache
    rows = [_row(run, "clean", "", "", 0, 0.0, clean)]
    for m, proc in run.processors.items():
        names = list(CORRUPTIONS.get(proc.kind, {})) if corruptions is None else list(corruptions.get(m, []))
        raws = {m: raw_values(table, proc, decoded, m)} if names else {}
        for name in names:
            for s in severities:
                metrics = clean if s == 0 else evaluate_dataset(run, carry_features(  # only m's encoder runs
                    clean_set, corrupted_dataset(decoded, run.processors, raws, {m: (name, s)}, seed), {m}),
                    batch_size=batch_size)
                rows.append(_row(run, "corruption", m, name, s, _fraction(s, severities), metrics))
    for m in run.processors:
        for r in rates:
            metrics = clean if r == 0 else evaluate_dataset(run, random_missing(clean_set, m, r, seed),
                                                            batch_size=batch_size)
            rows.append(_row(run, "missing_rate", m, "random", r, _fraction(r, rates), metrics))
    n = len(run.processors)
    for pattern in missing_patterns(list(run.processors), seed=seed):
        metrics = evaluate_dataset(run, clean_set, pattern, batch_size)
        name = "+".join(m for m in run.processors if m in pattern)
        rows.append(_row(run, "missing_pattern", name, "drop", len(pattern), len(pattern) / n, metrics))
    return pd.DataFrame(rows)


def _row(run: Run, kind: str, modality: str, corruption: str, level: float, x: float,
         metrics: Mapping[str, float]) -> dict[str, Any]:
    monitor = run.task.monitor
    return {"kind": kind, "modality": modality, "corruption": corruption, "level": level, "x": x,
            "metric": monitor, "score": metrics[monitor], **metrics}


def _fraction(level: float, levels: Sequence[float]) -> float:
    return level / max(levels) if max(levels) > 0 else 0.0


def _ragged(processors: Mapping[str, Processor]) -> dict[str, bool]:
    return {m: p.ragged for m, p in processors.items()}


# ---- summaries -------------------------------------------------------------------------------------------------

def _normalised(levels: Sequence[float]) -> np.ndarray:
    x = np.asarray(levels, dtype=np.float64)
    top = float(x.max()) if x.size else 0.0
    return x / top if top > 0 else x


def area_under_curve(levels: Sequence[float], scores: Sequence[float]) -> float:
    """Trapezoid area under score vs level, with levels divided by the largest one (so over 0..1)."""
    x, y = _normalised(levels), np.asarray(scores, dtype=np.float64)
    order = np.argsort(x)
    x, y = x[order], y[order]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def relative_robustness(levels: Sequence[float], scores: Sequence[float], mode: str = "max") -> float:
    """AUC / clean score (the score at the lowest level); clean / AUC when lower scores are better."""
    clean = float(np.asarray(scores, dtype=np.float64)[int(np.argmin(levels))])
    auc = area_under_curve(levels, scores)
    return auc / clean if mode == "max" else clean / auc


def trend_slope(levels: Sequence[float], scores: Sequence[float]) -> float:
    """Slope of the least-squares line through score vs normalised level (0 for fewer than two levels)."""
    x = _normalised(levels)
    return float(np.polyfit(x, np.asarray(scores, dtype=np.float64), 1)[0]) if len(set(x.tolist())) > 1 else 0.0


def effective_robustness(levels: Sequence[float], scores: Sequence[float], base_levels: Sequence[float],
                         base_scores: Sequence[float], mode: str = "max") -> float:
    """Mean over the corrupted levels of score - (clean score + baseline slope x level), levels normalised.

    The baseline's linear trend is anchored at this curve's clean score, so only how fast the scores fall
    counts, not the baseline's own clean score. Negated when lower scores are better.
    """
    x, y = _normalised(levels), np.asarray(scores, dtype=np.float64)
    clean = float(y[int(np.argmin(x))])
    corrupted = x > x.min()
    if not corrupted.any():
        return 0.0
    gap = float(np.mean(y[corrupted] - (clean + trend_slope(base_levels, base_scores) * x[corrupted])))
    return gap if mode == "max" else -gap


def _curves(results: pd.DataFrame) -> Any:
    return results[results["kind"].isin(CURVES)].groupby(["kind", "modality", "corruption"], sort=False)


def summarize(results: pd.DataFrame, baseline: pd.DataFrame | None = None, mode: str = "max") -> pd.DataFrame:
    """One row per curve of `evaluate_robustness` results: clean score, score at the highest level, auc, relative
    and effective robustness.

    `baseline` is another run's results on the same data; without it, each curve's trend is the mean curve of
    its kind in `results` (see the module docstring). `mode` is the task's: "max" or "min" (lower is better).
    """
    means = results[results["kind"].isin(CURVES)].groupby(["kind", "x"])["score"].mean()
    rows = []
    for (kind, modality, name), curve in _curves(results):
        curve = curve.sort_values("x")
        base_x, base_y = _baseline_curve(kind, modality, name, baseline, means)
        rows.append({
            "kind": kind, "modality": modality, "corruption": name, "metric": curve["metric"].iloc[0],
            "clean": curve["score"].iloc[0], "at_max_level": curve["score"].iloc[-1],
            "auc": area_under_curve(curve["x"], curve["score"]),
            "relative_robustness": relative_robustness(curve["x"], curve["score"], mode),
            "effective_robustness": effective_robustness(curve["x"], curve["score"], base_x, base_y, mode),
            "baseline": "own average" if baseline is None else "baseline run",
        })
    return pd.DataFrame(rows)


def _baseline_curve(kind: str, modality: str, name: str, baseline: pd.DataFrame | None,
                    means: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if baseline is None:
        own = means.loc[kind]
        return own.index.to_numpy(), own.to_numpy()
    match = baseline[(baseline["kind"] == kind) & (baseline["modality"] == modality)
                     & (baseline["corruption"] == name)].sort_values("x")
    if len(match):
        return match["x"].to_numpy(), match["score"].to_numpy()
    return np.array([0.0, 1.0]), np.zeros(2)  # the baseline does not read this modality: unaffected, flat


# ---- plots and the whole job ---------------------------------------------------------------------------------

def plot_robustness(results: pd.DataFrame, out: Path) -> list[Path]:
    """robustness_severity.png (score vs severity, one line per modality x corruption) and
    robustness_missing.png (score vs missing rate, one line per modality; score per dropped pattern)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = str(results["metric"].iloc[0])
    modalities = list(dict.fromkeys(results.loc[results["kind"].isin(CURVES), "modality"]))
    colour = {m: f"C{i % 10}" for i, m in enumerate(modalities)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen: dict[str, int] = {}
    for (_, modality, name), curve in _curves(results[results["kind"] == "corruption"]):
        style = ("-", "--", ":", "-.")[seen.setdefault(modality, 0) % 4]  # colour: modality; style: corruption
        seen[modality] += 1
        ax.plot(curve["level"], curve["score"], marker="o", color=colour[modality], linestyle=style,
                label=f"{modality}: {name}")
    _finish(ax, "severity", metric, "corruptions")
    fig.tight_layout()
    fig.savefig(out / SEVERITY_PNG, dpi=90)
    plt.close(fig)
    patterns = results[results["kind"] == "missing_pattern"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, max(4.5, 0.25 * len(patterns))),
                                      gridspec_kw={"width_ratios": [3, 2]})
    for (_, modality, _), curve in _curves(results[results["kind"] == "missing_rate"]):
        left.plot(curve["level"], curve["score"], marker="o", color=colour[modality], label=modality)
    _finish(left, "fraction of records missing the modality", metric, "random missing modality")
    right.barh(["drop " + p for p in patterns["modality"]], patterns["score"], color="tab:gray")
    right.invert_yaxis()
    right.set_xlabel(metric)
    right.set_title("missing patterns")
    fig.tight_layout()
    fig.savefig(out / MISSING_PNG, dpi=90)
    plt.close(fig)
    return [out / SEVERITY_PNG, out / MISSING_PNG]


def _finish(ax: Any, xlabel: str, metric: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def load_table(run: Run, data: str | Path | Table | None) -> Table:
    """A table from a path, or by default the run's own test split (split exactly as in training)."""
    if isinstance(data, Table):
        return data
    if data is not None:
        path = Path(data)
        return Table(read_table(path), table_root(path), path.name)
    from polymodal.data.sources import load_splits
    from polymodal.data.splits import label_field

    tables = load_splits(run.config.data, label_field(run.config))
    if "test" not in tables:
        raise ValueError(f"the data of run {str(run.path)!r} has no test split; pass `data` (a labelled table)")
    return tables["test"]


def run_robustness(run_dir: str | Path, data: str | Path | Table | None = None,
                   baseline: str | Path | None = None, out: str | Path | None = None,
                   seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate a run's robustness and write robustness.csv, robustness_summary.csv and two PNG plots.

    Args:
        run_dir: a trained run directory.
        data: a labelled table (csv, parquet, jsonl path); default: the run's test split.
        baseline: another run directory (e.g. a unimodal model) evaluated the same way on the same data, whose
            curves give the trend for effective robustness; default: the run's own average curve per kind.
        out: folder to write to; default: `run_dir`.
        seed: seed of the per-record draws (corruption parameters, which records miss a modality).

    Returns:
        (results, summary): every setting's scores (`evaluate_robustness`) and one row per curve (`summarize`).
    """
    run = load_run(run_dir)
    table = load_table(run, data)
    results = evaluate_robustness(run, table, seed=seed)
    base = None if baseline is None else evaluate_robustness(load_run(baseline), table, seed=seed)
    summary = summarize(results, base, run.task.mode)
    folder = Path(out) if out is not None else Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    results.to_csv(folder / RESULTS, index=False)
    summary.to_csv(folder / SUMMARY, index=False)
    plot_robustness(results, folder)
    return results, summary
