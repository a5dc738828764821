"""Tables and splits: one split's records (`Table`), train/val/test splitting, and which field stratifies it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from polymodal.config import Config, SplitConfig

SPLITS = ("train", "val", "test")


@dataclass
class Table:
    """Records of one split and the folder that relative file paths in them are resolved against."""

    frame: pd.DataFrame
    root: Path
    name: str

    def __len__(self) -> int:
        return len(self.frame)


def table_root(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def split_frame(frame: pd.DataFrame, split: SplitConfig, label_field: str | None) -> dict[str, pd.DataFrame]:
    """Split by a column of train/val/test values, or at random (seeded, stratified by label)."""
    if split.column is not None:
        if split.column not in frame.columns:
            raise ValueError(f"data.split.column: no column {split.column!r} in the data; columns: "
                             f"{', '.join(map(str, frame.columns))}")
        values = frame[split.column].astype(str).str.strip().str.lower()
        unknown = sorted(set(values) - set(SPLITS))
        if unknown:
            raise ValueError(f"data.split.column {split.column!r} has values {unknown}; allowed: train, val, test")
        return {s: frame[values == s] for s in SPLITS if (values == s).any()}
    groups = _strata(frame, label_field if split.stratify else None)
    assignment = _assign(groups, split.ratios, split.seed)
    return {s: frame[assignment == i] for i, s in enumerate(SPLITS) if (assignment == i).any()}


def _strata(frame: pd.DataFrame, label_field: str | None) -> np.ndarray:
    if label_field is None or label_field not in frame.columns:
        return np.zeros(len(frame), dtype=np.int64)
    return pd.factorize(frame[label_field].astype(str))[0]


def _assign(groups: np.ndarray, ratios: tuple[float, float, float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fractions = np.asarray(ratios, dtype=float) / float(sum(ratios))
    out = np.empty(len(groups), dtype=np.int64)
    for g in np.unique(groups):
        idx = rng.permutation(np.flatnonzero(groups == g))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for i, part in enumerate(np.split(idx, cuts)):
            out[part] = i
    return out


def label_field(config: Config) -> str | None:
    """The field that stratifies random splits: the class label of a binary or multiclass target, else None."""
    f = config.target.field
    return f if isinstance(f, str) and config.target.task in ("binary", "multiclass") else None


def ensure_val(tables: dict[str, Table], config: Config) -> dict[str, Table]:
    """Carve a validation split (15%, seeded, stratified) out of train when none is given."""
    if "train" not in tables or len(tables["train"]) == 0:
        raise ValueError("the data has no training records (an empty table, a header only, or a split column "
                         "without 'train'); add records or point data.source / data.train at the right file")
    if "val" in tables:
        return tables
    train = tables["train"]
    parts = split_frame(train.frame, SplitConfig(ratios=(0.85, 0.15, 0.0), seed=config.data.split.seed),
                        label_field(config))
    return {**tables, **{s: Table(parts[s], train.root, s) for s in ("train", "val")}}
