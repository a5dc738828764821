"""Sources: tables (CSV, Parquet, JSONL, DataFrame) and folders of files by class, split into train/val/test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from polymodal.config import DataConfig, SplitConfig

SPLITS = ("train", "val", "test")
_READERS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".json": "jsonl"}


@dataclass
class Table:
    """Records of one split and the folder that relative file paths in them are resolved against."""

    frame: pd.DataFrame
    root: Path
    name: str

    def __len__(self) -> int:
        return len(self.frame)


def infer_format(path: Path) -> str:
    if path.is_dir():
        return "folder"
    fmt = _READERS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format of {str(path)!r} from its extension; set data.format to "
                         "one of csv, parquet, jsonl, folder")
    return fmt


def read_table(path: str | Path, fmt: str = "auto") -> pd.DataFrame:
    """Read one table (or build one from a folder tree) as a DataFrame with a fresh 0..N-1 index."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    fmt = infer_format(path) if fmt == "auto" else fmt
    if fmt == "csv":
        frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", keep_default_na=True)
    elif fmt == "parquet":
        frame = pd.read_parquet(path)
    elif fmt == "jsonl":
        frame = pd.read_json(path, lines=True)
    elif fmt == "folder":
        frame = folder_table(path)
    elif fmt == "coco":
        from polymodal.data.formats.coco import read_coco

        frame = read_coco(path)
    else:
        raise ValueError(f"unknown data format {fmt!r}; allowed: csv, parquet, jsonl, folder")
    return frame.reset_index(drop=True)


def folder_table(root: Path) -> pd.DataFrame:
    """One record per file in `root/<class>/...` (the ImageNet layout): columns `file` and `label`."""
    rows = [(str(f.relative_to(root)), d.name)
            for d in sorted(p for p in root.iterdir() if p.is_dir())
            for f in sorted(d.rglob("*")) if f.is_file() and not f.name.startswith(".")]
    if not rows:
        raise ValueError(f"folder {str(root)!r} has no class subfolders with files; expected root/<class>/<file>")
    return pd.DataFrame(rows, columns=["file", "label"])


def table_root(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def load_splits(data: DataConfig, label_field: str | None) -> dict[str, Table]:
    """The train/val/test tables a config describes (val and test may be absent with separate files); file paths
    in them resolve under `data.root` when set."""
    tables = _load_splits(data, label_field)
    if data.root is None:
        return tables
    return {s: Table(t.frame, Path(data.root), t.name) for s, t in tables.items()}


def _load_splits(data: DataConfig, label_field: str | None) -> dict[str, Table]:
    if data.streaming:  # train: the first `fit_records` records; val/test: whole (see polymodal.data.streaming)
        from polymodal.data.streaming import stream_tables

        return stream_tables(data)
    if data.format == "multi30k":  # a corpus folder: text files per language and split, image lists, images
        from polymodal.data.formats.multi30k import load_multi30k

        return load_multi30k(data.source, data.multi30k)  # type: ignore[arg-type]
    if data.format == "coco":  # COCO JSON: one row per image with captions and/or category tags
        from polymodal.data.formats.coco import load_coco_splits

        return load_coco_splits(data, label_field)
    if data.format in ("mosi_h5", "mosi_npz"):  # CMU-MOSI/MOSEI sequences: one row per segment
        from polymodal.data.formats.mosi import load_mosi_splits

        return load_mosi_splits(data, label_field)
    if data.format == "vqa":  # VQA v2 questions + annotations JSON: one row per question
        from polymodal.data.formats.vqa import load_vqa_splits

        return load_vqa_splits(data, label_field)
    if data.builtin is not None:
        from polymodal.datasets import DATASETS

        entry = DATASETS[data.builtin]
        path = entry.materialize() / entry.table
        parts = split_frame(read_table(path), SplitConfig(column="split"), label_field)
        return {s: Table(part, path.parent, s) for s, part in parts.items()}
    if data.train is not None:
        paths = {s: getattr(data, s) for s in SPLITS if getattr(data, s) is not None}
        return {s: Table(read_table(p, data.format), table_root(Path(p)), s) for s, p in paths.items()}
    path = Path(data.source)  # type: ignore[arg-type]
    frame = read_table(path, data.format)
    parts = split_frame(frame, data.split, label_field)
    return {s: Table(part, table_root(path), s) for s, part in parts.items()}


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
