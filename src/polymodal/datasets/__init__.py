"""Built-in datasets: generated or shipped with the package, deterministic, no downloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from polymodal.datasets.av_digits import materialize_av_digits


@dataclass(frozen=True)
class DatasetEntry:
    description: str
    materialize: Callable[..., Path]


DATASETS: dict[str, DatasetEntry] = {
    "av_digits": DatasetEntry(
        "audio-visual digits: degraded MNIST images paired with spoken digits (synthetic voices; human "
        "speakers held out in human.csv)", materialize_av_digits),
    "av_digits_fashion": DatasetEntry(
        "the same with Fashion-MNIST images (class k paired with the spoken digit k): harder",
        partial(materialize_av_digits, variant="fashion")),
}

__all__ = ["DATASETS", "DatasetEntry", "materialize_av_digits"]
