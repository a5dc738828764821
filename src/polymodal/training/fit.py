"""`train(config)`: data -> fitted processors -> model -> Lightning fit -> run directory.

Pretraining and fine-tuning: a self-supervised run is a run with task `retrieval` (it reads no labels; add a
`reconstruction` objective to pretrain the fusion too). A labelled run with `training.init_from: RUN_DIR` then
reuses that run's fitted processor state and starts from its matching encoder, fusion and objective weights.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger

from polymodal.config import Config, SplitConfig
from polymodal.data.dataset import (
    Decoded,
    MultimodalDataset,
    build_pipeline,
    decode,
    fit_raw,
    make_loader,
    raise_on_fatal,
)
from polymodal.data.sources import SPLITS, Table, load_splits, split_frame
from polymodal.data.streaming import StreamingDataset
from polymodal.evaluation.inference import predict_outputs
from polymodal.evaluation.reliability import calibrate_run
from polymodal.features.cache import feature_device, use_feature_cache
from polymodal.model import MultimodalModel, build_model, count_parameters
from polymodal.processors import Processor
from polymodal.run import METRICS, init_processors, init_weights, save_pipeline, save_weights, write_json
from polymodal.tasks import Task
from polymodal.training.module import PolymodalModule

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished training run reports."""

    run_dir: Path
    metrics: dict[str, dict[str, float]]
    params: int
    train_seconds: float
    epochs: int
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class Prepared:
    """Fitted processors, task, and decoded datasets per split."""

    processors: dict[str, Processor]
    task: Task
    datasets: dict[str, MultimodalDataset]
    skipped: dict[str, int]
    stream: StreamingDataset | None = None  # the training split when `data.streaming` (then not in `datasets`)


def prepare(config: Config) -> Prepared:
    """Read the splits, fit processors on train only, decode every split (raising on fatal problems).

    With `training.init_from`, the processors take that run's fitted state instead (only the task is fitted).
    """
    if config.data.streaming:
        return prepare_streaming(config)
    tables = ensure_val(load_splits(config.data, _label_field(config)), config)
    processors, task = build_pipeline(config)
    init_from = config.training.init_from
    if init_from is None:
        fit_raw(tables["train"], processors, task)
    else:
        task.fit(task.values(tables["train"].frame))
        init_processors(config, processors, init_from)
    decoded: dict[str, Decoded] = {}
    for split, table in tables.items():
        decoded[split] = decode(table, processors, task, fit=split == "train" and init_from is None)
        raise_on_fatal(decoded[split])
        if len(decoded[split].rows) == 0:
            raise ValueError(f"the {split} split has no usable records")
    ragged = {m: p.ragged for m, p in processors.items()}
    datasets = {s: MultimodalDataset(d, ragged) for s, d in decoded.items()}
    return Prepared(processors, task, datasets, {s: d.skipped for s, d in decoded.items()})


def prepare_streaming(config: Config) -> Prepared:
    """Processors fitted on the first `data.fit_records` training records; train streamed, val/test in memory."""
    from polymodal.data.streaming import prepare_stream

    processors, task = build_pipeline(config)
    init_from = config.training.init_from
    init = None if init_from is None else (lambda procs: init_processors(config, procs, init_from))
    data = prepare_stream(config, processors, task, init)
    ragged = {m: p.ragged for m, p in processors.items()}
    datasets = {s: MultimodalDataset(d, ragged) for s, d in data.decoded.items()}
    return Prepared(processors, task, datasets, data.skipped, stream=data.train)


def _label_field(config: Config) -> str | None:
    f = config.target.field
    return f if isinstance(f, str) and config.target.task in ("binary", "multiclass") else None


def ensure_val(tables: dict[str, Table], config: Config) -> dict[str, Table]:
    """Carve a validation split (15%, seeded, stratified) out of train when none is given."""
    if "val" in tables:
        return tables
    train = tables["train"]
    parts = split_frame(train.frame, SplitConfig(ratios=(0.85, 0.15, 0.0), seed=config.data.split.seed),
                        _label_field(config))
    return {**tables, **{s: Table(parts[s], train.root, s) for s in ("train", "val")}}


def make_trainer(config: Config, run_dir: Path, monitor: str, mode: str,
                 extra: Sequence[pl.Callback] = ()) -> pl.Trainer:
    cfg = config.training
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode, save_last=True),
        *extra,
    ]
    if cfg.patience is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience))
    if cfg.progress_bar:
        callbacks.append(TQDMProgressBar(leave=False))
    return pl.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision, gradient_clip_val=cfg.grad_clip, accumulate_grad_batches=cfg.accumulate_grad_batches,
        deterministic=cfg.deterministic, callbacks=callbacks, enable_progress_bar=cfg.progress_bar,
        logger=CSVLogger(str(run_dir), name="logs", version=""), enable_model_summary=False, log_every_n_steps=1,
        num_sanity_val_steps=0,
    )


def train(config: Config, resume: bool = False, callbacks: Sequence[pl.Callback] = ()) -> TrainResult:
    """Train the model a config describes and write its run directory (`callbacks`: extra Lightning callbacks,
    e.g. the pruning callback of `polymodal tune`)."""
    run_dir = config.run_dir()
    pl.seed_everything(config.training.seed, workers=True, verbose=False)
    prep = prepare(config)
    model = build_model(config, prep.processors, prep.task.num_outputs)
    if config.training.init_from is not None:
        loaded = init_weights(model, config.training.init_from)
        log.info("initialized %d tensors from %s", len(loaded), config.training.init_from)
    save_pipeline(run_dir, config, prep.processors, prep.task)
    module = PolymodalModule(model, prep.task, prep.processors, config.training,
                             {o.name: o.weight for o in config.objectives},
                             {m: spec.train for m, spec in config.modalities.items()})
    monitor = config.training.monitor or f"val_{prep.task.monitor}"
    trainer = make_trainer(config, run_dir, monitor, prep.task.mode, callbacks)
    last = run_dir / "checkpoints" / "last.ckpt"
    cfg = config.training
    train_data = prep.stream if prep.stream is not None else prep.datasets["train"]
    data = use_feature_cache(config, model.encoders, prep.processors,  # frozen encoders: stored features
                             {"train": train_data, "val": prep.datasets["val"]}, device=feature_device(cfg))
    loaders = [make_loader(data["train"], cfg.batch_size, True, cfg.num_workers, cfg.seed),
               make_loader(data["val"], cfg.batch_size, False, cfg.num_workers)]
    log_csv = run_dir / "logs" / "metrics.csv"
    resuming = resume and last.is_file()
    previous = pd.read_csv(log_csv) if resuming and log_csv.is_file() else None
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")  # ours is exact
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # frozen encoders
        trainer.fit(module, *loaders, ckpt_path=str(last) if resuming else None)
    seconds = time.perf_counter() - start
    if previous is not None and trainer.global_rank == 0:
        merge_log(log_csv, previous)
    if trainer.global_rank != 0:
        return TrainResult(run_dir, {}, count_parameters(model), seconds, trainer.current_epoch)
    load_best(module, trainer)
    save_weights(run_dir, model)
    metrics = evaluate_splits(model, prep)
    calibrate_run(run_dir, model, prep.processors, prep.datasets["val"], config.target.task)  # reliability.json
    write_json(run_dir / METRICS, {"params": count_parameters(model), "train_seconds": seconds,
                                   "epochs": trainer.current_epoch, "skipped": prep.skipped, **metrics})
    from polymodal.evaluation.report import write_report

    write_report(run_dir)
    return TrainResult(run_dir, metrics, count_parameters(model), seconds, trainer.current_epoch, prep.skipped)


def merge_log(log_csv: Path, previous: pd.DataFrame) -> None:
    """Lightning's CSV logger starts a fresh file on resume: put the epochs before the resume point back."""
    current = pd.read_csv(log_csv) if log_csv.is_file() else previous.iloc[:0]
    first = current["epoch"].min() if len(current) else float("inf")
    pd.concat([previous[previous["epoch"] < first], current]).to_csv(log_csv, index=False)


def load_best(module: PolymodalModule, trainer: pl.Trainer) -> None:
    """Load the best checkpoint's weights (tensors only) into the module."""
    ckpt = trainer.checkpoint_callback
    path = getattr(ckpt, "best_model_path", "")
    if path and Path(path).is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)


def evaluate_splits(model: MultimodalModel, prep: Prepared) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        if split in prep.datasets:
            outputs, target = predict_outputs(model.cpu(), prep.processors, prep.datasets[split])
            out[split] = prep.task.metrics(prep.task.scores(outputs), target, outputs.embeddings)  # type: ignore[arg-type]
    return out
