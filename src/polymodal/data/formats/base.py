"""The registry of dataset layouts that are not one table (name -> `load(data, label_field)` -> tables by split),
and the split logic those layouts share."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.config import DataConfig
from polymodal.data.splits import SPLITS, Table, split_frame, table_root
from polymodal.registry import Registry

FORMATS: Registry[dict[str, Table]] = Registry("data format")


def split_tables(data: DataConfig, label_field: str | None, read: Callable[[Path, str | None], pd.DataFrame],
                 root: Callable[[Path, str | None], Path] | None = None) -> dict[str, Table]:
    """One file (or folder) per split in `data.train/val/test`, read with its split's name; or one in
    `data.source`, read with None and split by `data.split`. `root(path, split)`: the folder the records' file
    paths are relative to (default: the file's folder)."""
    where = root or (lambda path, split: table_root(path))
    if data.train is not None:
        paths = {s: Path(getattr(data, s)) for s in SPLITS if getattr(data, s) is not None}
        return {s: Table(read(p, s), where(p, s), s) for s, p in paths.items()}
    path = Path(data.source)  # type: ignore[arg-type]
    parts = split_frame(read(path, None), data.split, label_field)
    return {s: Table(part, where(path, None), s) for s, part in parts.items()}


def read_json(path: Path, what: str, error: type[ValueError]) -> Any:
    """The parsed JSON file at `path`: FileNotFoundError naming the `what` file if there is none, `error` if it is
    not valid JSON (each format then checks the document's shape)."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise error(f"{path}: not valid JSON ({err})") from None
