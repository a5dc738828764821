"""Sources: tables (CSV, Parquet, JSONL, DataFrame) and folders of files by class, split into train/val/test."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polymodal.config import DataConfig, SplitConfig
from polymodal.data.formats import FORMATS
from polymodal.data.formats.coco import read_coco
from polymodal.data.splits import SPLITS, Table, split_frame, table_root

_READERS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".json": "jsonl"}


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
    if data.format in FORMATS:  # a dataset layout: corpus folders, COCO/VQA JSON, MOSI sequences
        return FORMATS.get(data.format)(data, label_field)
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
