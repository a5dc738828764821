"""The candidates `fit` trains: polymodal runs (one modality alone, all fused) and classical models (TF-IDF +
logistic regression on the text, gradient-boosted trees on the table), each scored on the same val/test records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymodal.config import Config, TabularSpec, TextSpec
from polymodal.data.dataset import MultimodalDataset, build_pipeline, decode, fit_raw, make_loader, raise_on_fatal
from polymodal.data.sources import Table
from polymodal.ensemble.classical import TfidfLinear, tabular_matrix, trees_from_sklearn
from polymodal.ensemble.rundir import Member
from polymodal.evaluation.inference import predict_outputs
from polymodal.features.cache import use_feature_cache
from polymodal.processors import Processor
from polymodal.tasks import Task

Tables = dict[str, Table]


@dataclass
class Scored:
    """A trained candidate, its logits on the validation and test records, and its training time."""

    member: Member
    logits: dict[str, Tensor]
    targets: dict[str, Tensor]
    seconds: float
    detail: str = ""


def datasets(tables: Tables, processors: dict[str, Processor], task: Task) -> dict[str, MultimodalDataset]:
    out = {}
    for split, table in tables.items():
        decoded = decode(table, processors, task)
        raise_on_fatal(decoded)
        out[split] = MultimodalDataset(decoded, {m: p.ragged for m, p in processors.items()})
    return out


def full_batch(dataset: MultimodalDataset, processors: dict[str, Processor]) -> Any:
    from polymodal.data.dataset import to_model_inputs

    batch = next(iter(make_loader(dataset, max(len(dataset), 1), shuffle=False)))
    return to_model_inputs(batch, processors, train=False)


def neural(name: str, config: Config, tables: Tables, out: Path) -> Scored:
    """Train `config` with polymodal (restricted to its modalities) and score it on val and test."""
    from polymodal.rundir import load_run
    from polymodal.training.fit import train

    start = time.perf_counter()
    result = train(config.model_copy(update={
        "name": name, "output_dir": str(out / name),
        "training": config.training.model_copy(update={"progress_bar": False})}), overwrite=True, report=False)
    run = load_run(result.run_dir)
    held = {s: t for s, t in tables.items() if s != "train"}
    data = use_feature_cache(run.config, run.model.encoders, run.processors, datasets(held, run.processors, run.task))
    outputs = {s: predict_outputs(run.model, run.processors, d) for s, d in data.items()}
    member = Member(name, run.config, run.processors, run.model)
    return Scored(member, {s: o.logits for s, (o, _) in outputs.items()},
                  {s: t for s, (_, t) in outputs.items()}, time.perf_counter() - start, f"{result.epochs} epochs")


def _pipeline(config: Config, modalities: dict[str, Any], tables: Tables) -> tuple[
        Config, dict[str, Processor], Task, dict[str, Any]]:
    """Processors fitted on train for a classical model's own modalities, and every split as one batch."""
    cfg = config.model_copy(update={"modalities": modalities})
    processors, task = build_pipeline(cfg)
    fit_raw(tables["train"], processors, task)
    decoded = {s: decode(t, processors, task, fit=s == "train") for s, t in tables.items()}
    for d in decoded.values():
        raise_on_fatal(d)
    ragged = {m: p.ragged for m, p in processors.items()}
    batches = {s: full_batch(MultimodalDataset(d, ragged), processors) for s, d in decoded.items()}
    return cfg, processors, task, batches


def _choose(fits: list[tuple[Any, Tensor]], score: Callable[[Tensor], float]) -> Any:
    """The fitted model whose validation logits score best."""
    return max(fits, key=lambda f: score(f[1]))[0]


def tfidf_linear(name: str, config: Config, columns: list[str], tables: Tables,
                 score: Callable[[Tensor, Tensor], float], grid: list[float]) -> Scored:
    """TF-IDF of every text column + logistic regression; C and class weighting chosen on validation."""
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    specs = {c: TextSpec(type="text", field=c, max_length=256, vocab_size=30000) for c in columns}
    cfg, processors, task, batches = _pipeline(config, specs, tables)
    module = TfidfLinear({m: p.encoder_inputs()["vocab_size"] for m, p in processors.items()}, task.num_outputs)
    module.fit_idf(module.counts(batches["train"]))
    x = {s: module.features(module.counts(b)).numpy() for s, b in batches.items()}
    y = batches["train"].target.numpy()
    fits = []
    for c in grid:
        for weight in (None, "balanced"):
            model = LogisticRegression(C=c, class_weight=weight, max_iter=2000).fit(x["train"], y)
            fits.append(((model, c, weight), _as_logits(torch.from_numpy(model.decision_function(x["val"])))))
    (model, c, weight) = _choose(fits, lambda logits: score(logits, batches["val"].target))
    module.linear.weight.data = torch.from_numpy(model.coef_).float()
    module.linear.bias.data = torch.from_numpy(model.intercept_).float()
    logits = {s: module(b) for s, b in batches.items() if s != "train"}
    targets = {s: b.target for s, b in batches.items() if s != "train"}
    return Scored(Member(name, cfg, processors, module), logits, targets, time.perf_counter() - start,
                  f"C={c}, class_weight={weight}")


def trees(name: str, config: Config, spec: TabularSpec, tables: Tables, score: Callable[[Tensor, Tensor], float],
          grid: list[dict[str, Any]]) -> Scored:
    """Histogram gradient boosting on the table's numbers and categories; settings chosen on validation."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    start = time.perf_counter()
    cfg, processors, task, batches = _pipeline(config, {"tabular": spec}, tables)
    x = {s: tabular_matrix(b, ["tabular"]).numpy() for s, b in batches.items()}
    y = batches["train"].target.numpy()
    fits = []
    for options in grid:
        model = HistGradientBoostingClassifier(early_stopping=False, random_state=0, **options).fit(x["train"], y)
        fits.append(((model, options), _as_logits(torch.from_numpy(model.decision_function(x["val"])))))
    model, options = _choose(fits, lambda logits: score(logits, batches["val"].target))
    module = trees_from_sklearn(model, ["tabular"])
    logits = {s: module(b) for s, b in batches.items() if s != "train"}
    targets = {s: b.target for s, b in batches.items() if s != "train"}
    return Scored(Member(name, cfg, processors, module), logits, targets, time.perf_counter() - start,
                  ", ".join(f"{k}={v}" for k, v in options.items()))


def _as_logits(decision: Tensor) -> Tensor:
    """scikit-learn's decision function in the task's logit layout (binary: one column)."""
    decision = decision.float()
    return decision[:, None] if decision.ndim == 1 else decision
