"""Decode a table once into memory-resident arrays; serve collated Batches by index."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler

from polymodal.config import Config
from polymodal.data.batch import Batch
from polymodal.data.splits import Table
from polymodal.errors import DataError, Problem, RecordError, UnknownLabel
from polymodal.processors import Processor, build_processor
from polymodal.processors.base import Arrays
from polymodal.tasks import Task, build_task

Reader = Callable[[Processor, Any, Path], Arrays]
NO_LABEL = "no label: the record is left out (records without a label are not used for training or evaluation)"

log = logging.getLogger(__name__)


@dataclass
class Decoded:
    """The outcome of reading one table: arrays of the usable records plus every problem met."""

    items: dict[str, list[Arrays]]
    present: dict[str, list[bool]]
    targets: list[np.ndarray]
    rows: list[int]
    problems: list[Problem] = field(default_factory=list)
    skipped: int = 0
    unlabelled: int = 0  # records left out because their label is empty (counted in `skipped` too)

    @property
    def fatal(self) -> list[Problem]:
        return [p for p in self.problems if p.fatal]

    @classmethod
    def concat(cls, parts: Sequence[Decoded]) -> Decoded:
        """One Decoded holding the records, problems and counts of several, in order (rows kept as they are)."""
        out = cls({m: [] for m in parts[0].items}, {m: [] for m in parts[0].items}, [], [])
        for part in parts:
            for m in out.items:
                out.items[m] += part.items[m]
                out.present[m] += part.present[m]
            out.targets += part.targets
            out.rows += part.rows
            out.problems += part.problems
            out.skipped += part.skipped
            out.unlabelled += part.unlabelled
        return out


def build_pipeline(config: Config) -> tuple[dict[str, Processor], Task]:
    """Unfitted processors (one per modality) and the task."""
    processors = {m: build_processor(spec, config.field_of(m)) for m, spec in config.modalities.items()}
    for proc in processors.values():
        proc.allow_outside_root = config.data.allow_outside_root
    return processors, build_task(config.target)


def fit_raw(table: Table, processors: Mapping[str, Processor], task: Task) -> None:
    """Fit what is learned from raw training values (label set, vocabularies, categories)."""
    task.fit(task.values(table.frame))
    for proc in processors.values():
        values = proc.values(table.frame)
        proc.fit([v for v in values if not proc.is_missing(v)], table.root)


def decode(table: Table, processors: Mapping[str, Processor], task: Task | None, fit: bool = False,
           keep_all: bool = False, read: Reader | None = None) -> Decoded:
    """Read every record; with `fit`, also fit normalization statistics on the decoded training items.

    With `keep_all` (prediction), records whose policy is `skip` are kept with the modality marked missing,
    so that outputs stay aligned with inputs. `read` replaces `proc.read(value, root)` (streaming sources pass
    one that also takes in-memory file bytes).
    """
    raw = {m: p.values(table.frame) for m, p in processors.items()}
    labels = task.values(table.frame) if task is not None else None
    out = Decoded({m: [] for m in processors}, {m: [] for m in processors}, [], [])
    for i, row in enumerate(table.frame.index):
        _decode_record(table, int(row), {m: v[i] for m, v in raw.items()},
                       None if labels is None else labels[i], processors, task, out, keep_all, read)
    if fit:
        for m, proc in processors.items():
            present_items = [it for it, ok in zip(out.items[m], out.present[m]) if ok]
            if present_items:
                proc.fit_items(present_items)
    _check_shapes(table, processors, out)
    return out


def _decode_record(table: Table, row: int, values: dict[str, Any], label: Any,
                   processors: Mapping[str, Processor], task: Task | None, out: Decoded, keep_all: bool,
                   read: Reader | None = None) -> None:
    items: dict[str, Arrays] = {}
    present: dict[str, bool] = {}
    for m, proc in processors.items():
        if proc.is_missing(values[m]):
            items[m], present[m] = proc.blank(), False
            out.problems.append(Problem(table.name, row, m, "empty: treated as a missing modality", fatal=False))
            continue
        try:
            item = proc.read(values[m], table.root) if read is None else read(proc, values[m], table.root)
            items[m], present[m] = item, True
            out.problems += [Problem(table.name, row, m, note, fatal=False) for note in proc.notes(values[m])]
        except RecordError as err:
            policy = proc.spec.on_error
            out.problems.append(Problem(table.name, row, m, f"{err} (on_error={policy})", fatal=policy == "error"))
            if policy == "skip" and not keep_all:
                out.skipped += 1
                return
            items[m], present[m] = proc.blank(), False
    target = np.zeros(0, dtype=np.float32)
    if task is not None and task.unlabelled(label):
        out.problems.append(Problem(table.name, row, "/".join(task.fields), NO_LABEL, fatal=False))
        out.unlabelled += 1
        out.skipped += 1
        return
    if task is not None:
        try:
            target = task.encode(label)
        except UnknownLabel as err:  # only outside training (the classes are the training split's)
            out.problems.append(Problem(table.name, row, "/".join(task.fields), f"{err}; {UNSEEN}", fatal=False))
            out.skipped += 1
            return
        except RecordError as err:
            out.problems.append(Problem(table.name, row, "/".join(task.fields), str(err)))
            return
    for m in processors:
        out.items[m].append(items[m])
        out.present[m].append(present[m])
    out.targets.append(target)
    out.rows.append(row)


def _check_shapes(table: Table, processors: Mapping[str, Processor], out: Decoded) -> None:
    for m, proc in processors.items():
        for k, (item, ok) in enumerate(zip(out.items[m], out.present[m])):
            if not ok:
                continue
            try:
                proc.check(item)
            except RecordError as err:
                out.problems.append(Problem(table.name, out.rows[k], m, f"{err} (inconsistent array shape)"))


UNSEEN = "record left out of the metrics"


def warn_unseen(split: str, decoded: Decoded) -> int:
    """Log how many records of a split carry a class the training split never had; returns the count."""
    count = sum(UNSEEN in p.message for p in decoded.problems)
    if count:
        log.warning("%d %s record(s) have a class never seen in training; they are left out of its metrics",
                    count, split)
    return count


def raise_on_fatal(decoded: Decoded) -> None:
    if decoded.fatal:
        raise DataError(decoded.fatal)


def blank_dataset(processors: Mapping[str, Processor]) -> MultimodalDataset:
    """One record with every modality missing (shapes for outputs of 0 records)."""
    decoded = Decoded({m: [p.blank()] for m, p in processors.items()}, {m: [False] for m in processors}, [], [0])
    return MultimodalDataset(decoded, {m: p.ragged for m, p in processors.items()})


class MultimodalDataset(Dataset[Batch]):
    """Decoded records in memory; `__getitems__` returns a collated Batch directly (no per-record Python)."""

    def __init__(self, decoded: Decoded, ragged: Mapping[str, bool]) -> None:
        self.ragged = dict(ragged)
        self.fixed: dict[str, dict[str, np.ndarray]] = {}
        self.features: dict[str, dict[str, np.ndarray]] = {}  # cached encoder outputs (see polymodal.features)
        self.lists: dict[str, dict[str, list[np.ndarray]]] = {}
        for m, items in decoded.items.items():
            keys = items[0].keys() if items else ()
            if self.ragged[m]:
                self.lists[m] = {k: [it[k] for it in items] for k in keys}
            else:
                self.fixed[m] = {k: np.stack([it[k] for it in items]) for k in keys}
        self.present = {m: np.asarray(p, dtype=bool) for m, p in decoded.present.items()}
        self.targets = np.stack(decoded.targets) if decoded.targets else np.zeros((0,))
        self.rows = np.asarray(decoded.rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, modalities: Sequence[str]) -> MultimodalDataset:
        """The same records with only the named modalities (arrays shared, not copied)."""
        out = copy.copy(self)
        keep = set(modalities)
        out.ragged = {m: r for m, r in self.ragged.items() if m in keep}
        out.fixed = {m: v for m, v in self.fixed.items() if m in keep}
        out.lists = {m: v for m, v in self.lists.items() if m in keep}
        out.features = {m: v for m, v in self.features.items() if m in keep}
        out.present = {m: v for m, v in self.present.items() if m in keep}
        return out

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = np.asarray(indices, dtype=np.int64)
        inputs: dict[str, dict[str, Tensor]] = {}
        for m, keys in self.fixed.items():
            inputs[m] = {k: torch.from_numpy(v[idx]) for k, v in keys.items()}
        for m, keys in self.lists.items():
            inputs[m] = pad_ragged({k: [v[i] for i in idx] for k, v in keys.items()})
        present = {m: torch.from_numpy(p[idx]) for m, p in self.present.items()}
        target = torch.from_numpy(self.targets[idx]) if self.targets.size else None
        features = {m: {k: torch.from_numpy(v[idx]) for k, v in keys.items()} for m, keys in self.features.items()}
        return Batch(inputs, present, target, torch.from_numpy(idx), features)


def pad_ragged(keys: dict[str, list[np.ndarray]]) -> dict[str, Tensor]:
    """Pad arrays of varying length along axis 0 into (B, T, ...) tensors plus a (B, T) mask (True = real)."""
    out: dict[str, Tensor] = {}
    mask: Tensor | None = None
    for k, arrays in keys.items():
        lengths = torch.tensor([a.shape[0] for a in arrays])
        t = int(lengths.max()) if len(arrays) else 1
        padded = torch.zeros((len(arrays), t, *arrays[0].shape[1:]), dtype=torch.from_numpy(arrays[0][:0]).dtype)
        for i, a in enumerate(arrays):
            padded[i, : a.shape[0]] = torch.from_numpy(a)
        out[k] = padded
        mask = torch.arange(t)[None, :] < lengths[:, None]  # (B, T)
    assert mask is not None
    out["mask"] = mask
    return out


def first(batch: Batch) -> Batch:
    """DataLoader collate function: `__getitems__` already returned a collated Batch."""
    return batch


def make_loader(dataset: MultimodalDataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                seed: int = 0) -> DataLoader[Batch]:
    if isinstance(dataset, IterableDataset):  # a StreamingDataset: batches, shuffles and shards itself
        return dataset.loader(batch_size, shuffle, num_workers, seed)  # type: ignore[attr-defined]
    generator = torch.Generator().manual_seed(seed)
    sampler = EpochShuffle(dataset, seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=first, num_workers=num_workers,
                      generator=generator, persistent_workers=num_workers > 0, drop_last=False)


class EpochShuffle(RandomSampler):
    """A shuffle drawn from (seed, epoch) alone (the training loop calls `set_epoch`): a resumed run sees, from the epoch
    it resumes at, the order the uninterrupted run saw."""

    def __init__(self, dataset: Dataset[Batch], seed: int) -> None:
        super().__init__(dataset)  # type: ignore[arg-type]
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        yield from torch.randperm(len(self.data_source), generator=torch.Generator().manual_seed(seed)).tolist()


def to_model_inputs(batch: Batch, processors: Mapping[str, Processor], train: bool) -> Batch:
    """Apply each processor's batch-level normalization (and augmentation when training)."""
    return replace(batch, inputs={m: processors[m].to_model(v, train) for m, v in batch.inputs.items()})
