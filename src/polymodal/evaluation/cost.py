"""What a run costs: parameters (total and per part), FLOPs per record, latency, peak inference memory, training time.

Everything is measured on the model's forward pass over batches already decoded and normalized by the
processors (reading files and decoding are not included), on the device the model is on.

- FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward pass (a multiply-add counts 2). It counts
  the operations it knows (matrix products, convolutions, attention); elementwise work (activations,
  normalization) is not counted, and fused kernels it does not know (cuDNN recurrent layers on a GPU) are
  missed, so measure on CPU for recurrent encoders.
- Peak memory of inference: the most memory held by tensors allocated during one forward pass of a batch, on
  top of what was allocated before it (the weights and the inputs, reported apart as `weights_mb`). On CUDA
  this is `torch.cuda.max_memory_allocated`; on CPU it is replayed from the allocation and free events of
  `torch.profiler` (profile_memory=True) in time order. Process-level counters (ru_maxrss, tracemalloc) do
  not see this: the first never goes down, the second sees Python objects only.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from polymodal.data.batch import Batch
from polymodal.data.dataset import MultimodalDataset, to_model_inputs
from polymodal.model import MultimodalModel, count_parameters
from polymodal.rundir import METRICS, Run, load_run

MB = 2**20


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """`total` plus one count per part: `encoder_<modality>` for each encoder, then every other top-level
    submodule by name (`fusion`, `head`, `objectives` where it has weights). The parts add up to the total."""
    parts: dict[str, int] = {}
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleDict) and name == "encoders":
            parts.update({f"encoder_{m}": count_parameters(enc) for m, enc in child.items()})
        elif count_parameters(child) or name in ("fusion", "head"):
            parts[name] = count_parameters(child)
    return {"total": count_parameters(model), **parts}


@torch.no_grad()
def count_flops(module: nn.Module, *inputs: Any) -> int:
    """Floating-point operations of one call `module(*inputs)` (a multiply-add counts 2)."""
    with FlopCounterMode(display=False) as counter:
        module(*inputs)
    return int(counter.get_total_flops())


def flops_per_record(model: MultimodalModel, batch: Batch) -> float:
    """FLOPs of one forward pass over `batch`, divided by its number of records."""
    model.eval()
    return count_flops(model, batch) / batch.size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def latency_ms(model: MultimodalModel, batch: Batch, repeats: int = 20, warmup: int = 3,
               budget_s: float | None = 5.0) -> float:
    """Median wall-clock milliseconds of one forward pass over `batch` (after `warmup` passes).

    `budget_s`: stop repeating once the passes (warm-up included) have taken that long, after at least one warm-up
    and three timed passes, so that a large pretrained model is timed in seconds, not minutes (None: no limit).
    """
    model.eval()
    device = _device(model)
    times: list[float] = []
    spent = 0.0
    for i in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        model(batch)
        _sync(device)
        seconds = time.perf_counter() - start
        spent += seconds
        if i >= warmup or (budget_s is not None and spent > budget_s and i >= 1):
            times.append(1000 * seconds)
        if budget_s is not None and spent > budget_s and len(times) >= 3:
            break
    return statistics.median(times)


@torch.no_grad()
def peak_memory_bytes(model: MultimodalModel, batch: Batch) -> int:
    """Peak bytes of tensors allocated during one forward pass over `batch`, above those allocated before it."""
    model.eval()
    device = _device(model)
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        model(batch)
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    with _stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(batch)
    return replay_peak((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events())


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """The profiler's C++ side prints start/stop lines on file descriptor 2; keep them out of the user's output."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def replay_peak(events: Iterable[tuple[float, int]]) -> int:
    """The highest running total of (time, +allocated / -freed bytes) events taken in time order, from 0."""
    held = peak = 0
    for _, change in sorted(events, key=lambda e: e[0]):
        held += change
        peak = max(peak, held)
    return peak


def weights_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def train_seconds(run_dir: str | Path) -> float | None:
    """Training wall-clock seconds as the run recorded them in metrics.json (None if not recorded)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("train_seconds")
    return None if value is None else float(value)


def model_batch(run: Run, dataset: MultimodalDataset, size: int) -> Batch:
    """The first `size` records of `dataset` as model inputs on the model's device (normalized, no augmentation)."""
    batch = dataset.__getitems__(list(range(min(size, len(dataset)))))
    return to_model_inputs(batch.to(_device(run.model)), run.processors, train=False)


def measure_cost(run: Run, dataset: MultimodalDataset, batch_size: int = 256, repeats: int = 20) -> dict[str, Any]:
    """Every cost of one run, as one flat row.

    Keys: `params_total` and `params_<part>` (see `parameter_counts`), `flops_per_record`, `latency_ms_record`
    (a batch of one), `latency_ms_batch` (a batch of `batch` records: `batch_size`, or all of a smaller data
    set), `peak_memory_mb` (inference, beyond weights and inputs), `weights_mb`, `train_seconds` and `device`.
    """
    if len(dataset) == 0:
        raise ValueError("measure_cost needs at least one record")
    model = run.model.eval()
    batch, one = model_batch(run, dataset, batch_size), model_batch(run, dataset, 1)
    return {
        **{f"params_{k}": v for k, v in parameter_counts(model).items()},
        "flops_per_record": flops_per_record(model, batch),
        "latency_ms_record": latency_ms(model, one, repeats),
        "latency_ms_batch": latency_ms(model, batch, repeats),
        "batch": batch.size,
        "peak_memory_mb": peak_memory_bytes(model, batch) / MB,
        "weights_mb": weights_bytes(model) / MB,
        "train_seconds": train_seconds(run.path),
        "device": str(_device(model)),
    }


def cost_table(runs: Sequence[Run | str | Path], split: str = "test", batch_size: int = 256,
               repeats: int = 20) -> pd.DataFrame:
    """`measure_cost` for every run (loaded runs or run directories) on its own `split`, one row per run
    named by its directory."""
    from polymodal.evaluation.contribution import split_dataset

    rows = {}
    for item in runs:
        run = item if isinstance(item, Run) else load_run(item)
        name = run.path.name if run.path.name not in rows else str(run.path)
        rows[name] = measure_cost(run, split_dataset(run, split), batch_size, repeats)
    return pd.DataFrame.from_dict(rows, orient="index")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
