"""`train(config)`: data -> fitted processors -> model -> the training loop -> run directory.

Pretraining and fine-tuning: a self-supervised run is a run with task `retrieval` (it reads no labels; add a
`reconstruction` objective to pretrain the fusion too). A labelled run with `training.init_from: RUN_DIR` then
reuses that run's fitted processor state and starts from its matching encoder, fusion and objective weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polymodal.config import Config
from polymodal.data.checks import split_notes
from polymodal.data.dataset import (
    Decoded,
    MultimodalDataset,
    build_pipeline,
    decode,
    fit_raw,
    make_loader,
    raise_on_fatal,
    warn_unseen,
)
from polymodal.data.sources import load_splits
from polymodal.data.splits import SPLITS, ensure_val, label_field
from polymodal.data.streaming import StreamingDataset
from polymodal.evaluation.inference import predict_outputs
from polymodal.evaluation.reliability import calibrate_run
from polymodal.factory import build_model
from polymodal.features.cache import use_feature_cache
from polymodal.model import MultimodalModel, count_parameters
from polymodal.processors import Processor
from polymodal.rundir import (
    METRICS,
    finish_run,
    init_processors,
    init_weights,
    partial_dir,
    save_pipeline,
    save_weights,
    start_run,
    write_json,
    write_manifest,
)
from polymodal.tasks import Multilabel, Task
from polymodal.training.thresholds import tune_thresholds

if TYPE_CHECKING:
    from polymodal.training.distributed import Processes
    from polymodal.training.loop import Callback, Loop
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

    def select(self, modalities: Sequence[str]) -> Prepared:
        """The same decoded data for a config that uses only some of these modalities (same fields and specs):
        several runs over one table decode it once (e.g. the quickstart's unimodal baselines and fusions)."""
        if self.stream is not None:
            raise ValueError("a streamed training split is read as it is trained on; it cannot be shared")
        return Prepared({m: self.processors[m] for m in modalities}, self.task,
                        {s: d.select(modalities) for s, d in self.datasets.items()}, dict(self.skipped))


def prepare(config: Config) -> Prepared:
    """Read the splits, fit processors on train only, decode every split (raising on fatal problems).

    With `training.init_from`, the processors take that run's fitted state instead (only the task is fitted).
    """
    if config.data.streaming:
        return prepare_streaming(config)
    tables = ensure_val(load_splits(config.data, label_field(config)), config)
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
        warn_unseen(split, decoded[split])
        for note in split_notes(split, decoded[split], task):
            log.warning("%s", note)
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


def train(config: Config, resume: bool = False, callbacks: Sequence[Callback] = (),
          overwrite: bool = False, report: bool = True, prepared: Prepared | None = None) -> TrainResult:
    """Train the model a config describes and write its run directory (`callbacks`: extra `training.loop.Callback`
    hooks, e.g. the pruning of `polymodal tune`; `report=False` skips the report, e.g. for `fit`'s candidates,
    which `polymodal report RUN_DIR` can still write later; `prepared`: this config's data as `prepare(config)`
    returns it, decoded once for several runs).

    The run is written into a temporary folder and moved into place when complete; an existing run directory is
    replaced only with `overwrite`. `resume` continues an interrupted (or finished) run from its last checkpoint,
    exactly as it would have gone on. With `training.devices: N` (or under torchrun / SLURM) every process runs
    this function; rank 0 writes the run."""
    from polymodal.training import distributed

    procs = distributed.start(config.training)
    try:
        return train_process(config, procs, resume, callbacks, overwrite, report, prepared)
    finally:
        distributed.finish(procs)


def train_process(config: Config, procs: Processes, resume: bool, callbacks: Sequence[Callback], overwrite: bool,
                  report: bool, prepared: Prepared | None) -> TrainResult:
    """`train` in one process of the run (the only one, or one rank of several)."""
    from polymodal.training.guards import LIKELY_CAUSES, NonFiniteError, first_nonfinite
    from polymodal.training.loop import Loop, monitored, seed_everything
    from polymodal.training.module import PolymodalModule

    run_dir = config.run_dir()
    work = start_run(run_dir, resume, overwrite) if procs.chief else partial_dir(run_dir)
    seed_everything(config.training.seed)
    prep = prepared if prepared is not None else prepare(config)
    model = build_model(config, prep.processors, prep.task.num_outputs)
    if config.training.init_from is not None:
        loaded = init_weights(model, config.training.init_from)
        log.info("initialized %d tensors from %s", len(loaded), config.training.init_from)
    if procs.chief:
        save_pipeline(work, config, prep.processors, prep.task)
    module = PolymodalModule(model, prep.task, prep.processors, config.training,
                             {o.name: o.weight for o in config.objectives},
                             {m: spec.train for m, spec in config.modalities.items()})
    loop = Loop(module, config.training, procs, work, *monitored(config.training, prep.task), callbacks)
    cfg = config.training
    train_data = prep.stream if prep.stream is not None else prep.datasets["train"]
    data = use_feature_cache(config, model.encoders, prep.processors,  # frozen encoders: stored features
                             {**prep.datasets, "train": train_data}, device=procs.device)
    loop.fit(make_loader(data["train"], cfg.batch_size, True, cfg.num_workers, cfg.seed),
             make_loader(data["val"], cfg.batch_size, False, cfg.num_workers), resume=resume)
    seconds = loop.seconds  # the epochs; the set-up (optimizer, moving the model) is in the process's time
    if not procs.chief:
        return TrainResult(run_dir, {}, count_parameters(model), seconds, loop.current_epoch)
    load_best(module, loop)
    module.to(torch.float32)  # a `*-true` precision trained in another dtype: the run is saved in float32
    bad = first_nonfinite(model)
    if bad is not None:
        raise NonFiniteError(f"training ended with weight {bad!r} not finite; nothing was saved as a finished run. "
                             f"{LIKELY_CAUSES}")
    if isinstance(prep.task, Multilabel):  # per-label thresholds tuned on validation (saved with the task)
        tune_thresholds(model.cpu(), prep.task, prep.processors, data["val"])
        save_pipeline(work, config, prep.processors, prep.task)
    calibrate_run(work, model, prep.processors, data["val"], config.target.task)  # reliability; fusion's gates
    save_weights(work, model)
    metrics = evaluate_splits(model, prep, data)
    write_json(work / METRICS, {"params": count_parameters(model), "train_seconds": seconds,
                                "epochs": loop.current_epoch, "skipped": prep.skipped, **metrics})
    write_manifest(work)
    if report:
        from polymodal.evaluation.report import write_report

        write_report(work)
    finish_run(work, run_dir)
    return TrainResult(run_dir, metrics, count_parameters(model), seconds, loop.current_epoch, prep.skipped)


def load_best(module: PolymodalModule, loop: Loop) -> None:
    """Load the best epoch's checkpoint weights (tensors only) into the module."""
    from polymodal.training.checkpoint_refs import load_checkpoint_state

    if loop.best_path.is_file():
        load_checkpoint_state(module, torch.load(loop.best_path, map_location="cpu", weights_only=True))


def evaluate_splits(model: MultimodalModel, prep: Prepared, data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Metrics of every in-memory split (`data`: the datasets as trained on, cached features included)."""
    out: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        if split in prep.datasets:
            outputs, target = predict_outputs(model.cpu(), prep.processors, data[split])
            out[split] = prep.task.metrics(prep.task.scores(outputs), target, outputs.embeddings)  # type: ignore[arg-type]
    return out
