"""The candidates `fit` trains: polymodal runs (one modality alone, all fused) and classical models (TF-IDF +
logistic regression on the text, per column or as one text; gradient-boosted trees and a random forest on the
table), each scored on the same val/test records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.config import Config, TabularSpec, TextSpec
from polymodal.data.dataset import MultimodalDataset, build_pipeline, decode, fit_raw, make_loader, raise_on_fatal
from polymodal.data.sources import Table
from polymodal.apps.crossfit import CrossFit, PerLabel, cross_fit
from polymodal.ensemble.classical import TfidfLinear, forest_from_sklearn, tree_matrix, trees_from_sklearn
from polymodal.ensemble.rundir import Member
from polymodal.evaluation.inference import predict_outputs
from polymodal.features.cache import use_feature_cache
from polymodal.processors import Processor
from polymodal.tasks import Task

Tables = dict[str, Table]
PAIRS = 2**15  # hash buckets of word bigrams per text column in the TF-IDF candidate


@dataclass
class Scored:
    """A trained candidate, its logits on the validation and test records, and its training time.

    A cross-fitted (classical) candidate's validation logits are out-of-fold; its test logits come from the
    model refitted on train + validation."""

    member: Member
    logits: dict[str, Tensor]
    targets: dict[str, Tensor]
    seconds: float
    detail: str = ""
    oof: Tensor | None = None  # cross-fitted candidates: out-of-fold logits of every train + val record
    oof_target: Tensor | None = None


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


def _pipeline(config: Config, modalities: dict[str, Any], tables: Tables, shared: bool = False) -> tuple[
        Config, dict[str, Processor], Task, dict[str, Any]]:
    """Processors fitted on train for a classical model's own modalities, and every split as one batch
    (`shared`: the text processors get one vocabulary, see `share_vocabulary`)."""
    cfg = config.model_copy(update={"modalities": modalities})
    processors, task = build_pipeline(cfg)
    fit_raw(tables["train"], processors, task)
    if shared:
        share_vocabulary(processors, tables["train"])
    decoded = {s: decode(t, processors, task, fit=s == "train") for s, t in tables.items()}
    for d in decoded.values():
        raise_on_fatal(d)
    ragged = {m: p.ragged for m, p in processors.items()}
    batches = {s: full_batch(MultimodalDataset(d, ragged), processors) for s, d in decoded.items()}
    return cfg, processors, task, batches


def share_vocabulary(processors: dict[str, Processor], table: Table) -> None:
    """One BPE vocabulary learned on the training texts of every text processor, given to each of them."""
    from polymodal.processors.text import PAD, UNK, TextProcessor, train_bpe

    texts = [str(v) for p in processors.values() for v in p.values(table.frame) if not p.is_missing(v)]
    specs = [p.spec for p in processors.values() if isinstance(p, TextProcessor)]
    tokenizer = train_bpe(texts, specs[0].vocab_size, specs[0].lowercase, [PAD, UNK])
    for p in processors.values():
        p.tokenizer = tokenizer  # type: ignore[attr-defined]


def _pooled(x: dict[str, Any], batches: dict[str, Any]) -> tuple[Any, Tensor]:
    """Train and validation records stacked (train first): features and targets."""
    from scipy import sparse

    stack = sparse.vstack if sparse.issparse(x["train"]) else np.concatenate
    target = torch.cat([batches["train"].target, batches["val"].target])
    return stack([x["train"], x["val"]]), target


def _scored(name: str, cfg: Config, processors: dict[str, Processor], module: Any, fit: CrossFit,
            batches: dict[str, Any], target: Tensor, start: float, detail: str) -> Scored:
    """Validation logits out-of-fold (never fitted on the record they score), test logits from the refit."""
    n_train = len(batches["train"].target)
    logits = {"val": fit.oof[n_train:], "test": module(batches["test"]) if "test" in batches else None}
    targets = {s: batches[s].target for s in ("val", "test") if s in batches}
    return Scored(Member(name, cfg, processors, module), {s: v for s, v in logits.items() if v is not None},
                  targets, time.perf_counter() - start, detail, fit.oof, target)


def tfidf_linear(name: str, config: Config, columns: list[str], tables: Tables,
                 score: Callable[[Tensor, Tensor], float], grid: list[float], joint: bool = False) -> Scored:
    """TF-IDF of every text column (`joint`: of all of them as one text, one shared vocabulary) + a linear
    model (classification: logistic regression with C and class weighting (none / balanced); regression: ridge
    with alpha = 1 / C), chosen on 5-fold out-of-fold predictions over train + validation, then refitted on
    both."""
    from scipy import sparse

    start = time.perf_counter()
    specs = {c: TextSpec(type="text", field=c, max_length=256, vocab_size=30000) for c in columns}
    cfg, processors, task, batches = _pipeline(config, specs, tables, shared=joint)
    module = TfidfLinear({m: p.encoder_inputs()["vocab_size"] for m, p in processors.items()}, task.num_outputs,
                         pairs=PAIRS, joint=joint)
    module.fit_idf(module.counts(batches["train"]))
    x = {s: sparse.csr_matrix(module.features(module.counts(b)).numpy()) for s, b in batches.items()}
    xs, y = _pooled(x, batches)
    used = np.flatnonzero(xs.getnnz(axis=0))  # the columns some train or val record has (of ~64k per column)
    make, settings = _linear(task.name, grid)
    fit = cross_fit(make, settings, xs[:, used], _labels(y, task), task.num_outputs,
                    lambda logits: score(logits, y), classify(task), warm=classify(task))
    weight = torch.zeros(task.num_outputs, xs.shape[1])  # (K, F): a column no record has keeps weight 0, as in
    weight[:, used] = torch.from_numpy(np.asarray(fit.model.coef_)).float().reshape(task.num_outputs, -1)
    module.linear.weight.data = weight  # a fit over all columns (L2 gives it no reason to move off 0)
    module.linear.bias.data = torch.from_numpy(np.asarray(fit.model.intercept_)).float().reshape(-1)
    detail = ", ".join(f"{k}={v}" for k, v in fit.setting.items())
    return _scored(name, cfg, processors, module, fit, batches, y, start, f"{detail}, 5-fold cross-fitted")


def classify(task: Task) -> bool:
    return task.name in ("binary", "multiclass")


def _labels(y: Tensor, task: Task) -> np.ndarray:
    """Targets as scikit-learn takes them: class indices, one standardized number per record (regression), or
    a 0/1 matrix (multilabel)."""
    if task.name == "regression":
        return y.numpy().reshape(len(y), -1)[:, 0]
    return y.numpy().astype(np.int64)


def _linear(task: str, grid: list[float]) -> tuple[Callable[[dict[str, Any]], Any], list[dict[str, Any]]]:
    """The linear model and its settings: logistic regression (multilabel: one per label) or ridge."""
    from sklearn.linear_model import LogisticRegression, Ridge

    settings = [{"C": c, "class_weight": w} for w in (None, "balanced") for c in sorted(grid)]
    if task == "multilabel":
        return lambda g: PerLabel(lambda: LogisticRegression(max_iter=2000, **g)), settings
    if task != "regression":  # C ascending: each fit starts from the previous (smaller C) solution
        return lambda g: LogisticRegression(max_iter=2000, warm_start=True, **g), settings
    return lambda g: Ridge(**g), [{"alpha": 1 / c} for c in grid]


def trees(name: str, config: Config, spec: TabularSpec, tables: Tables, score: Callable[[Tensor, Tensor], float],
          grid: list[dict[str, Any]]) -> Scored:
    """Histogram gradient boosting on the table's numbers (missing ones left missing) and categories; the
    setting (and, for classes, class weighting) chosen on 5-fold out-of-fold predictions over train +
    validation, then refitted on both."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    def make(o: dict[str, Any], classes: bool) -> Any:
        model = HistGradientBoostingClassifier if classes else HistGradientBoostingRegressor
        return model(early_stopping=False, random_state=0, **o)

    return _tabular(name, config, spec, tables, score, grid, make,
                    lambda model, _: trees_from_sklearn(model, ["tabular"]))


def forest(name: str, config: Config, spec: TabularSpec, tables: Tables, score: Callable[[Tensor, Tensor], float],
           grid: list[dict[str, Any]]) -> Scored:
    """A random forest (`extra: True` in a setting: extremely randomized trees) on the same features as `trees`:
    averaged deep trees, which on a few hundred records over-fit less than boosting; the setting (and, for
    classes, class weighting) chosen on 5-fold out-of-fold predictions over train + validation, then refitted
    on both."""
    from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier,
                                  RandomForestRegressor)

    def make(o: dict[str, Any], classes: bool) -> Any:
        kinds = {(False, True): RandomForestClassifier, (False, False): RandomForestRegressor,
                 (True, True): ExtraTreesClassifier, (True, False): ExtraTreesRegressor}
        options = {k: v for k, v in o.items() if k != "extra"}
        return kinds[bool(o.get("extra")), classes](random_state=0, n_jobs=1, **options)

    return _tabular(name, config, spec, tables, score, grid, make,
                    lambda model, k: forest_from_sklearn(model, ["tabular"], k))


def _tabular(name: str, config: Config, spec: TabularSpec, tables: Tables, score: Callable[[Tensor, Tensor], float],
             grid: list[dict[str, Any]], make: Callable[[dict[str, Any], bool], Any],
             to_module: Callable[[Any, int], Any]) -> Scored:
    """A tree model `make(setting, classify)` on the table's `tree_matrix`, cross-fitted over `grid` (for
    classes: every setting unweighted, and the middle one balanced too; each setting costs 5 fits)."""
    start = time.perf_counter()
    cfg, processors, task, batches = _pipeline(config, {"tabular": spec}, tables)
    x = {s: tree_matrix(b, ["tabular"]).numpy() for s, b in batches.items()}
    xs, y = _pooled(x, batches)
    classes = classify(task)
    settings = [*grid, grid[len(grid) // 2] | {"class_weight": "balanced"}] if classes else grid
    fit = cross_fit(lambda o: make(o, classes), settings, xs, _labels(y, task), task.num_outputs,
                    lambda logits: score(logits, y), classes)
    module = to_module(fit.model, task.num_outputs)
    return _scored(name, cfg, processors, module, fit, batches, y, start,
                   ", ".join(f"{k}={v}" for k, v in fit.setting.items()) + ", 5-fold cross-fitted")
