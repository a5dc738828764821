"""What each column of a table is: a modality, the target's task, id-like columns left out, leakage warnings."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from polymodal.modalities import modality, modality_types

log = logging.getLogger(__name__)

EXTENSIONS = {t: set(modality(t).extensions) for t in modality_types() if modality(t).extensions}  # file types
_LIST = re.compile(r"^\s*\[\s*-?[\d.eE+-]+(\s*,\s*-?[\d.eE+-]+)+\s*\]\s*$")


@dataclass
class Columns:
    """Columns by what they were taken for (file modalities, text, tabular, vectors) and what was left out."""

    files: dict[str, str] = field(default_factory=dict)  # column -> image | audio | video
    text: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    vector: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)


def _file_kind(values: pd.Series) -> str | None:
    """image/audio/video when (nearly) every value is a path with that kind's extension."""
    if not all(isinstance(v, str) for v in values):
        return None
    suffixes = values.map(lambda v: Path(v.strip()).suffix.lower())
    for kind, exts in EXTENSIONS.items():
        if suffixes.isin(exts).mean() >= 0.9:
            return kind
    return None


def _opens(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # noqa: BLE001  (any decoding failure means "not an image")
        return False


def _is_id(name: str, values: pd.Series, n: int) -> bool:
    """Every value unique and either named like an id, consecutive integers, or single tokens."""
    if values.nunique() < n or n < 10:
        return False
    lowered = name.lower()
    if lowered in ("id", "uid", "key", "index", "record") or lowered.endswith(("_id", "_key", "uuid")):
        return True
    if pd.api.types.is_integer_dtype(values):
        return bool((np.diff(np.sort(values.to_numpy())) == 1).all())
    return values.dtype == object and values.map(lambda v: isinstance(v, str) and " " not in v.strip()).all()


def column_kind(name: str, series: pd.Series, root: Path) -> str:
    """image | audio | video | text | numeric | categorical | vector | id | empty."""
    values = series.dropna()
    values = values[values.map(lambda v: not (isinstance(v, str) and not v.strip()))]
    if values.empty:
        return "empty"
    kind = _file_kind(values)
    if kind is not None:
        first = Path(str(values.iloc[0]).strip())
        return kind if kind != "image" or _opens(first if first.is_absolute() else root / first) else "text"
    if values.map(lambda v: isinstance(v, (list, tuple, np.ndarray)) or (isinstance(v, str) and bool(
            _LIST.match(v)))).all():
        return "vector"
    if _is_id(name, values, len(series)):
        return "id"
    if pd.api.types.is_bool_dtype(values) or (pd.api.types.is_numeric_dtype(values) and values.nunique() <= 2):
        return "categorical"
    if pd.api.types.is_numeric_dtype(values):
        return "numeric"
    strings = values.astype(str)
    words = strings.str.split().map(len).mean()
    few = strings.nunique() <= max(2, min(50, len(strings) // 5))
    return "categorical" if few and words < 4 else "text"


def infer_columns(frame: pd.DataFrame, root: Path, skip: set[str]) -> Columns:
    cols = Columns()
    for name in frame.columns:
        if name in skip:
            continue
        kind = column_kind(str(name), frame[name], root)
        target = {"text": cols.text, "numeric": cols.numeric, "categorical": cols.categorical,
                  "vector": cols.vector, "id": cols.ids, "empty": cols.empty}.get(kind)
        if target is None:
            cols.files[str(name)] = kind
        else:
            target.append(str(name))
    return cols


def infer_task(values: pd.Series, separator: str = "|") -> str:
    """multilabel for lists (or text cells of which at least 10% join labels with `separator`), regression for
    many distinct numbers, binary for two classes, multiclass otherwise."""
    values = values.dropna()
    if values.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
        return "multilabel"
    joined = values.astype(str).str.contains(separator, regex=False)
    if not pd.api.types.is_numeric_dtype(values) and joined.mean() >= 0.1:
        return "multilabel"
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > max(20, len(values) // 20):
        return "regression"
    return "binary" if values.nunique() == 2 else "multiclass"


def leakage(frame: pd.DataFrame, target: str, columns: list[str], threshold: float = 0.98) -> dict[str, float]:
    """Columns whose values alone (numbers in 20 quantile bins) give the training target almost perfectly:
    accuracy of the majority class per value, for columns with fewer distinct values than half the records."""
    found: dict[str, float] = {}
    y = frame[target].astype(str)
    for col in columns:
        x = frame[col]
        if pd.api.types.is_numeric_dtype(x) and x.nunique() > 20:
            x = pd.qcut(x, 20, duplicates="drop", labels=False)
        if x.nunique(dropna=False) * 2 > len(frame):
            continue
        majority = y.groupby(x.astype(str)).agg(lambda s: s.value_counts().iloc[0]).sum()
        if majority / len(frame) >= threshold and y.nunique() > 1:
            found[col] = float(majority / len(frame))
    return found
