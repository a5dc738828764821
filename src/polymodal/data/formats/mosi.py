"""CMU-MOSI / CMU-MOSEI as tables: one row per opinion segment, one (T, D) array cell per feature sequence.

Two layouts as distributed in the field:

* `mosi_h5`: computational-sequence files of the CMU-MultimodalSDK (`.csd`, HDF5). Each file holds one root
  group named after the sequence (`glove_vectors`, `COVAREP`, `FACET 4.2`, `Opinion Segment Labels`...) with
  `data/<video_id>/features` (T, D) and `data/<video_id>/intervals` (T, 2) (start and end in seconds) and a
  `metadata` group. The label file has one row per segment: its score(s) and its interval. Each segment
  takes, from each feature file, the rows of the same video id whose intervals overlap the segment's
  (for files already aligned to the labels, whose ids are `<video_id>[<k>]`, that is the whole entry).
  Columns: `id` (`<video_id>[<k>]` for the k-th segment of a video, or the label id when the video has one
  segment), `video_id`, `start`, `end`, one column per feature file, `label` (the first label dimension;
  further ones as `label_1`, `label_2`...: MOSEI's emotions) and `split` when `data.mosi.folds` is given.
  A segment with no overlapping feature rows gets an empty cell (a missing modality).
* `mosi_npz`: the aligned arrays of the common pickles converted to npz: `text` (N, T, Dt), `audio`
  (N, T, Da), `vision` (N, T, Dv), `labels` (N, 1) and optionally `ids` (N,) and `split` (N,). One npz per
  split (`data.train` / `val` / `test`) or one for all (`data.source`, split by `data.split`).

All-zero time steps (the padding of the aligned arrays) are dropped unless `drop_zero_steps: false`.
(Plain Parquet tables with list-of-lists sequence cells need no format of their own: `format: parquet`.)
From a config:

    data: {source: CMU_MOSI/, format: mosi_h5, split: {column: split},
           mosi: {features: {text: CMU_MOSI_TimestampedWordVectors.csd, audio: CMU_MOSI_COVAREP.csd},
                  labels: CMU_MOSI_Opinion_Labels.csd, folds: folds.json}}
    modalities: {text: {type: sequence}, audio: {type: sequence}}
    target: {field: label, task: sentiment}

Malformed files stop with a `MosiError` naming the file, the key and the id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.config import DataConfig, MosiConfig
from polymodal.data.formats.base import FORMATS, split_tables
from polymodal.data.splits import Table

NPZ_FEATURES = {"text": "text", "audio": "audio", "vision": "vision"}


class MosiError(ValueError):
    """A MOSI/MOSEI file that cannot be read as a table; the message names the file, the key or id, and the fix."""


# --------------------------------------------------------------------------------------------- HDF5 (SDK)


class Sequence:
    """One computational-sequence file: its `data` group by video id."""

    def __init__(self, path: Path) -> None:
        import h5py

        if not path.is_file():
            raise FileNotFoundError(f"computational sequence {str(path)!r} does not exist")
        try:
            self.file = h5py.File(path, "r")
        except OSError as err:
            raise MosiError(f"{path}: not an HDF5 computational sequence ({err})") from None
        self.path = path
        roots = list(self.file.keys())
        if len(roots) != 1:
            raise MosiError(f"{path}: expected one root group named after the sequence, found {roots or 'none'}")
        self.name = roots[0]
        if "data" not in self.file[self.name]:
            raise MosiError(f"{path}: group {self.name!r} has no 'data' group (key {self.name}/data); a "
                            "computational sequence holds data/<video_id>/features and intervals")
        self.data = self.file[self.name]["data"]

    def entry(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(features (T, D), intervals (T, 2)) of one id, checked."""
        key = f"{self.name}/data/{video_id}"
        if video_id not in self.data:
            raise MosiError(f"{self.path}: no id {video_id!r} (key {key}); the label file has a segment of it. "
                            "Use feature files that cover the labelled videos")
        group = self.data[video_id]
        for part in ("features", "intervals"):
            if part not in group:
                raise MosiError(f"{self.path}: id {video_id!r} has no {part!r} (key {key}/{part})")
        features, intervals = np.asarray(group["features"]), np.asarray(group["intervals"], dtype=np.float64)
        features = features[:, None] if features.ndim == 1 else features
        if features.ndim != 2 or intervals.ndim != 2 or intervals.shape[1] != 2:
            raise MosiError(f"{self.path}: id {video_id!r}: features {features.shape} and intervals "
                            f"{intervals.shape} must be (T, D) and (T, 2) (key {key})")
        if len(features) != len(intervals):
            raise MosiError(f"{self.path}: id {video_id!r}: {len(features)} feature rows but {len(intervals)} "
                            f"intervals (keys {key}/features, {key}/intervals); they must match row for row")
        return features, intervals

    def close(self) -> None:
        self.file.close()


def read_mosi_h5(folder: str | Path, options: MosiConfig) -> pd.DataFrame:
    """One row per labelled segment of the computational sequences in `folder` (see the module docstring)."""
    folder = Path(folder)
    if not options.features or not options.labels:
        raise MosiError("data.mosi: format mosi_h5 needs 'features' (column -> .csd file) and 'labels' (the label "
                        f"file) in {folder}")
    labels = Sequence(folder / options.labels)
    sequences = {col: Sequence(folder / name) for col, name in options.features.items()}
    try:
        rows = [row for vid in sorted(labels.data.keys()) for row in _segments(vid, labels, sequences, options)]
    finally:
        for s in [labels, *sequences.values()]:
            s.close()
    frame = pd.DataFrame(rows)
    if options.folds is not None:
        frame["split"] = _folds(folder / options.folds, frame)
    return frame


def _segments(video_id: str, labels: Sequence, sequences: dict[str, Sequence],
              options: MosiConfig) -> list[dict[str, Any]]:
    scores, spans = labels.entry(video_id)
    feats = {col: seq.entry(video_id) for col, seq in sequences.items()}
    rows = []
    for k, (score, (start, end)) in enumerate(zip(scores, spans)):
        row: dict[str, Any] = {"id": video_id if len(spans) == 1 else f"{video_id}[{k}]", "video_id": video_id,
                               "start": float(start), "end": float(end)}
        for col, (values, times) in feats.items():
            inside = (times[:, 0] < end) & (times[:, 1] > start)  # (T,) rows overlapping the segment
            where = f"{sequences[col].path}: id {video_id!r} (key {sequences[col].name}/data/{video_id}/features)"
            row[col] = _clean(values[inside], options, where)
        row.update(_label_columns(score, f"{labels.path}: id {video_id!r} segment {k}"))
        rows.append(row)
    return rows


def _label_columns(score: np.ndarray, where: str) -> dict[str, float]:
    values = np.asarray(score, dtype=np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise MosiError(f"{where}: label {values.tolist()} is empty or not finite")
    return {("label" if i == 0 else f"label_{i}"): float(v) for i, v in enumerate(values)}


def _clean(values: np.ndarray, options: MosiConfig, where: str) -> np.ndarray | None:
    """(T, D) float32 without padding steps; None when nothing is left (a missing modality)."""
    try:
        x = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise MosiError(f"{where}: features are not numeric (dtype {values.dtype})") from None
    if not np.isfinite(x).all():
        if not options.nonfinite_to_zero:
            raise MosiError(f"{where}: features hold NaN or infinite values; set data.mosi.nonfinite_to_zero: "
                            "true to replace them by 0")
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if options.drop_zero_steps:
        x = x[np.abs(x).sum(axis=1) > 0]
    return x if len(x) else None


def _folds(path: Path, frame: pd.DataFrame) -> list[str]:
    try:
        folds = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MosiError(f"data.mosi.folds: cannot read {str(path)!r} as JSON ({err})") from None
    unknown = set(folds) - {"train", "val", "test"}
    if not isinstance(folds, dict) or unknown:
        raise MosiError(f"{path}: expected {{train: [video ids], val: [...], test: [...]}}; unknown keys {unknown}")
    split = {str(v): s for s, vids in folds.items() for v in vids}
    missing = sorted(set(frame["video_id"]) - set(split))
    if missing:
        raise MosiError(f"{path}: video ids {missing[:5]} have labels but are in no fold; add them to one")
    return [split[v] for v in frame["video_id"]]


# --------------------------------------------------------------------------------------------- aligned npz


def read_mosi_npz(path: str | Path, options: MosiConfig) -> pd.DataFrame:
    """One row per segment of an aligned-arrays npz (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOSI npz {str(path)!r} does not exist")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    label_key = options.labels or "labels"
    labels = _key(arrays, label_key, path)
    n = len(labels)
    ids = _ids(arrays, options.ids, n, path)
    rows: list[dict[str, Any]] = [{"id": i} for i in ids]
    for col, key in (options.features or NPZ_FEATURES).items():
        x = _key(arrays, key, path)
        if x.ndim != 3 or len(x) != n:
            raise MosiError(f"{path}: key {key!r} has shape {x.shape}; expected (N, T, D) with N = {n} "
                            f"(the rows of {label_key!r})")
        for i, row in enumerate(rows):
            row[col] = _clean(x[i], options, f"{path}: key {key!r}, id {ids[i]!r}")
    for i, row in enumerate(rows):
        row.update(_label_columns(labels[i], f"{path}: key {label_key!r}, id {ids[i]!r}"))
    frame = pd.DataFrame(rows)
    if "split" in arrays:
        frame["split"] = _key(arrays, "split", path).astype(str)
    return frame


def _key(arrays: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise MosiError(f"{path}: no key {key!r}; keys: {', '.join(sorted(arrays))} (set data.mosi.features / "
                        "labels to the keys that hold them)")
    return arrays[key]


def _ids(arrays: dict[str, np.ndarray], key: str, n: int, path: Path) -> list[str]:
    if key not in arrays:
        return [str(i) for i in range(n)]
    ids = arrays[key].reshape(len(arrays[key]), -1)[:, 0].astype(str)
    if len(ids) != n:
        raise MosiError(f"{path}: key {key!r} has {len(ids)} ids for {n} labels")
    return ids.tolist()


def read_mosi(path: str | Path, fmt: str, options: MosiConfig | None) -> pd.DataFrame:
    options = options or MosiConfig()
    return read_mosi_h5(path, options) if fmt == "mosi_h5" else read_mosi_npz(path, options)


@FORMATS.register("mosi_h5")
@FORMATS.register("mosi_npz")
def load_mosi_splits(data: DataConfig, label_field: str | None) -> dict[str, Table]:
    """The split tables of a `format: mosi_h5 | mosi_npz` config: one file (folder) per split, or one split by
    `data.split`."""
    return split_tables(data, label_field, lambda path, split: read_mosi(path, data.format, data.mosi))
