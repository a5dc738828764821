"""Processor contract: raw field value -> arrays (decode once) -> tensors (normalize, augment per batch)."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from polymodal.data.missing import is_empty  # noqa: F401  (processors use it from here)
from polymodal.data.paths import is_inside
from polymodal.errors import RecordError

Arrays = dict[str, np.ndarray]
FLOAT32_MAX = float(np.finfo(np.float32).max)  # numbers beyond it become inf in the model's float32 tensors


OUTSIDE_ROOT_SETTING = "data.allow_outside_root: true"


def resolve_file(value: Any, root: Path, allow_outside: bool = False) -> Path:
    """A file path from a table cell, relative to the table's folder `root` unless absolute; must exist.

    Unless `allow_outside`, a path that leads out of `root` (`..`, an absolute path elsewhere, a symlink out) is
    refused before anything is opened, with the same message whether or not the file exists.
    """
    path = Path(str(value).strip())
    path = path if path.is_absolute() else root / path
    if not allow_outside and not is_inside(path, root):
        raise RecordError(f"path {str(value).strip()!r} leads outside the data folder {str(root)!r} and is refused "
                          f"(point data.root, or root= of the Predictor, at a folder holding the files, or set "
                          f"{OUTSIDE_ROOT_SETTING} to read files anywhere)")
    if not path.is_file():
        raise RecordError(f"file {str(path)!r} does not exist")
    return path


def file_source(value: Any, root: Path, allow_outside: bool = False) -> tuple[Path | io.BytesIO, str]:
    """What to open for a file-valued cell (the file's bytes, or a path as in `resolve_file`) and how to name it
    in errors. Bytes come from in-memory inputs such as an HTTP request's uploads."""
    if isinstance(value, (bytes, bytearray)):
        return io.BytesIO(bytes(value)), f"<{len(value)} bytes>"
    path = resolve_file(value, root, allow_outside)
    return path, repr(str(path))


class Processor(ABC):
    """Turns one modality's raw values into model inputs.

    Fitting happens on the training split only; the fitted state is plain JSON.
    Subclasses set `kind`, `ragged` (True if arrays vary in length along axis 0 and need padding + a mask)
    and implement `decode_raw` and `features` (or `read` directly), `blank` and `encoder_inputs`.
    Decoding is split in two so that corruptions (`polymodal.evaluation.corruptions`) act on the raw signal:
    `read(value, root) == features(decode_raw(value, root))`.
    """

    kind: ClassVar[str]
    ragged: ClassVar[bool] = False
    allow_outside_root: bool = False  # `data.allow_outside_root`: file paths may lead out of the table's folder

    def __init__(self, spec: Any, field: str) -> None:
        self.spec = spec
        self.field = field

    def values(self, frame: pd.DataFrame) -> list[Any]:
        """The raw value of this modality for every record of a table."""
        if self.field not in frame.columns:
            raise KeyError(f"column {self.field!r} is not in the data; columns: {', '.join(map(str, frame.columns))}")
        return frame[self.field].tolist()

    def fit(self, values: list[Any], root: Path) -> None:
        """Learn from raw training values (vocabularies, category sets). Default: nothing to learn."""

    def fit_items(self, items: list[Arrays]) -> None:
        """Learn from decoded training items (normalization statistics). Default: nothing to learn."""

    def read(self, value: Any, root: Path) -> Arrays:
        """Decode one non-empty raw value; raise RecordError with a clear reason if it cannot be used."""
        return self.features(self.decode_raw(value, root))

    def decode_raw(self, value: Any, root: Path) -> Any:
        """The raw signal of one non-empty value (pixels, waveform, string...). Default: the value itself."""
        return value

    def features(self, raw: Any) -> Arrays:
        """Arrays from what `decode_raw` returned (resize, tokenize, log-mel...)."""
        raise NotImplementedError(f"{type(self).__name__} implements `read` only; it has no `features` step")

    def notes(self, value: Any) -> list[str]:
        """Warnings about a usable value, such as a part left empty and filled in. Default: none."""
        return []

    def check(self, item: Arrays) -> None:
        """Raise RecordError if a decoded item does not fit what was fitted (e.g. another width)."""

    @abstractmethod
    def blank(self) -> Arrays:
        """Placeholder arrays for a missing value (never read by a mask-aware model)."""

    @abstractmethod
    def encoder_inputs(self) -> dict[str, Any]:
        """Constructor arguments an encoder derives from this processor (input width, vocabulary size...)."""

    def to_model(self, inputs: dict[str, Tensor], train: bool) -> dict[str, Tensor]:
        """Batch-level tensor work: normalization and train-time augmentation. Default: as is."""
        return inputs

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state` returned."""

    def is_missing(self, value: Any) -> bool:
        return is_empty(value)

    def stats(self, name: str, like: Tensor) -> Tensor:
        """The fitted statistics list `name` ("mean", "std") as a float32 tensor on `like`'s device, kept by this
        processor (and freed with it) so that batches do not copy it again; refreshed when the list is replaced."""
        values = getattr(self, name)
        kept = self.__dict__.setdefault("_device_stats", {})
        hit = kept.get((name, like.device))
        if hit is None or hit[0] is not values:
            hit = kept[(name, like.device)] = (values, torch.tensor(values, dtype=torch.float32, device=like.device))
        return hit[1]


def mean_std(stacked: np.ndarray, axis: tuple[int, ...]) -> tuple[list[float], list[float]]:
    """Per-feature mean and standard deviation (floored to avoid division by zero), as JSON-ready lists."""
    mean = stacked.mean(axis=axis, dtype=np.float64)
    std = np.maximum(stacked.std(axis=axis, dtype=np.float64), 1e-6)
    return np.atleast_1d(mean).tolist(), np.atleast_1d(std).tolist()
