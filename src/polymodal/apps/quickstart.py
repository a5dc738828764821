"""`polymodal quickstart`: unimodal baselines vs fusion on the built-in AV-Digits dataset."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import torch

from polymodal.config import Config
from polymodal.data.dataset import MultimodalDataset, decode, raise_on_fatal
from polymodal.data.sources import read_table
from polymodal.data.splits import Table
from polymodal.datasets import DATASETS
from polymodal.evaluation.inference import predict_outputs
from polymodal.factory import parse_config
from polymodal.rundir import load_run
from polymodal.training.fit import Prepared, prepare, train

COLUMNS = ["model", "accuracy", "macro_f1", "params", "train_seconds"]
MODELS: dict[str, tuple[list[str], str]] = {
    "image": (["image"], "concat"),
    "audio": (["audio"], "concat"),
    "concat": (["image", "audio"], "concat"),
    "late": (["image", "audio"], "late"),
}


class Outcome(NamedTuple):
    """One trained model's row of the table and its accuracy on the human-voice records."""

    row: list[Any]
    human_accuracy: float


class Job(NamedTuple):
    """What every model's training shares (inherited by forked worker processes, not pickled)."""

    dataset: str
    out: Path
    epochs: int
    seed: int
    report: bool
    decoded: Prepared
    human: MultimodalDataset


_JOB: Job | None = None  # set in the parent before forking; read by train_one in the workers


# The quickstart's audio front-end: 15 ms between windows and 24 mel bands instead of the recipe's 10 ms and 32,
# 0.46x the audio CNN's training step. In distribution within noise of the recipe; on real human voices the
# fused models score 0.6-6 points lower (3 seeds, benchmarks/results/shifted_modality.md), so the configs and the
# benchmarks keep the recipe.
QUICK_AUDIO = {"hop_ms": 15, "n_mels": 24}


def av_digits_config(dataset: str, modalities: list[str], fusion: str, out: Path, epochs: int, seed: int,
                     quick: bool = False) -> Config:
    """The recipe for AV-Digits (also shipped as configs/av_digits_concat.yaml); `quick`: with QUICK_AUDIO."""
    specs: dict[str, Any] = {
        "image": {"type": "image", "field": "image", "size": 28, "channels": 1,
                  "encoder": {"name": "image_cnn", "width": 16, "out_dim": 64}},
        "audio": {"type": "audio", "field": "audio", "sample_rate": 8000, "n_mels": 32, "max_seconds": 1.0,
                  "encoder": {"name": "audio_cnn", "width": 16, "out_dim": 64}, **(QUICK_AUDIO if quick else {})},
    }
    return parse_config({
        "name": out.name,
        "data": {"builtin": dataset},
        "modalities": {m: specs[m] for m in modalities},
        "target": {"field": "label", "task": "multiclass"},
        "fusion": {"name": fusion, "hidden": 128},
        "training": {"epochs": epochs, "batch_size": 64, "lr": 3e-3, "patience": None, "seed": seed,
                     "progress_bar": False},
        "output_dir": str(out),
    })


def quickstart(out: Path, epochs: int = 8, seed: int = 0, variant: str = "mnist", report: bool = False
               ) -> pd.DataFrame:
    """Train every model in MODELS, print the comparison table, write `out/comparison.csv`.

    The table is decoded once for all four runs. Their reports are written with `report=True`, else on demand
    (`polymodal report OUT/MODEL`): each report runs its model again (intervals, contributions, cost, plots)."""
    dataset = "av_digits" if variant == "mnist" else f"av_digits_{variant}"
    data_root = DATASETS[dataset].materialize()
    print(f"{dataset} at {data_root}")
    processes, threads = plan_processes(torch.get_num_threads(), len(MODELS))
    print(f"training {len(MODELS)} models in {processes} process(es), {threads} torch thread(s) each")
    recipe = av_digits_config(dataset, ["image", "audio"], "concat", out / "data", epochs, seed, quick=True)
    decoded = prepare(recipe)
    human = decode_table(data_root / "human.csv", decoded)
    outcomes: dict[str, Outcome] = {}
    for name, outcome in train_all(Job(dataset, out, epochs, seed, report, decoded, human), processes, threads):
        outcomes[name] = outcome
        print(f"  trained {name:<7} test accuracy {outcome.row[1]:.4f} in {outcome.row[4]:.1f} s", flush=True)
    table = pd.DataFrame([outcomes[name].row for name in MODELS], columns=COLUMNS)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    print(format_table(table, {name: o.human_accuracy for name, o in outcomes.items()}))
    if not report:
        print(f"reports: polymodal report {out / 'concat'} (and likewise for the other runs)")
    return table


def plan_processes(threads: int, models: int) -> tuple[int, int]:
    """(processes, torch threads each) for a budget of `threads`: small models gain more from training side by
    side, one thread each, than from sharing threads within one model. With two or more threads, one process
    per model: the models differ in length (the image model takes a third to a half of the others' time), and processes
    that share the cores keep every core busy until the last model ends, where a process per core would leave
    cores idle behind the longest. One process where fork is unavailable."""
    if threads < 2 or not can_fork():
        return 1, max(1, threads)
    return models, max(1, threads // models)


def can_fork() -> bool:
    """Whether worker processes can be forked safely (Linux; macOS's fork is unsafe with system libraries)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def train_all(job: Job, processes: int, threads: int) -> Iterator[tuple[str, Outcome]]:
    """Train every model in `processes` forked processes (in this one when 1); yield them as they finish."""
    global _JOB
    _JOB, parent_threads = job, torch.get_num_threads()
    try:
        if processes == 1:
            for name in MODELS:
                yield name, train_one(name)
            return
        torch.set_num_threads(1)  # no thread pool in the parent when it forks (libgomp's pool does not survive)
        context = multiprocessing.get_context("fork")  # children inherit the decoded table, not a pickled copy
        with ProcessPoolExecutor(processes, mp_context=context, initializer=torch.set_num_threads,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(train_one, name): name for name in MODELS}
            for future in as_completed(futures):
                yield futures[future], future.result()
    finally:
        _JOB = None
        torch.set_num_threads(parent_threads)


def train_one(name: str) -> Outcome:
    """Train MODELS[name] on the shared decoded table; evaluate it on the human-voice records."""
    assert _JOB is not None, "quickstart() sets the shared job before training"
    job = _JOB
    modalities, fusion = MODELS[name]
    config = av_digits_config(job.dataset, modalities, fusion, job.out / name, job.epochs, job.seed, quick=True)
    result = train(config, overwrite=True, report=job.report, prepared=job.decoded.select(modalities))
    test = result.metrics["test"]
    human = accuracy_on(job.out / name, job.human.select(modalities))
    return Outcome([name, test["accuracy"], test["macro_f1"], result.params, result.train_seconds], human)


def decode_table(path: Path, prepared: Prepared) -> MultimodalDataset:
    """A labelled table decoded once for every model (the processors' fitted statistics apply per batch)."""
    decoded = decode(Table(read_table(path), path.parent, path.name), prepared.processors, prepared.task)
    raise_on_fatal(decoded)
    return MultimodalDataset(decoded, {m: p.ragged for m, p in prepared.processors.items()})


def accuracy_on(run_dir: Path, dataset: MultimodalDataset) -> float:
    """The accuracy of the run in `run_dir` on decoded records (what `Predictor.evaluate` computes from a file)."""
    run = load_run(run_dir)
    out, target = predict_outputs(run.model, run.processors, dataset)
    return run.task.metrics(run.task.scores(out), target, out.embeddings)["accuracy"]  # type: ignore[arg-type]


def format_table(table: pd.DataFrame, transfer: dict[str, float]) -> str:
    unimodal = table[table["model"].isin(["image", "audio"])]
    best_uni = unimodal.loc[unimodal["accuracy"].idxmax(), "model"]
    lines = [f"{'model':<10}{'accuracy':>10}{'macro_f1':>10}{'params':>10}{'train_s':>9}{'human_acc':>11}"]
    for r in table.itertuples():
        mark = " *" if r.model == best_uni else "  "
        lines.append(f"{r.model + mark:<10}{r.accuracy:>10.4f}{r.macro_f1:>10.4f}{r.params:>10,}"
                     f"{r.train_seconds:>9.1f}{transfer[r.model]:>11.4f}")
    best_fused = table[~table["model"].isin(["image", "audio"])]["accuracy"].max()
    gain = 100 * (best_fused - unimodal["accuracy"].max())
    lines.append(f"* best unimodal model. Best fusion vs best unimodal: {gain:+.1f} accuracy points. "
                 "human_acc: test images paired with real human speakers (never seen in training).")
    return "\n".join(lines)
