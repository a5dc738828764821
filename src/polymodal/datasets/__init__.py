"""Built-in datasets: generated or shipped with the package, deterministic, no downloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from polymodal.datasets.av_digits import IMBALANCED, materialize_av_digits
from polymodal.datasets.synthetic import materialize_interactions


@dataclass(frozen=True)
class DatasetEntry:
    description: str
    materialize: Callable[..., Path]
    table: str = "records.csv"


DATASETS: dict[str, DatasetEntry] = {
    "av_digits": DatasetEntry(
        "audio-visual digits: degraded MNIST images paired with spoken digits (synthetic voices; human "
        "speakers held out in human.csv)", materialize_av_digits),
    "av_digits_fashion": DatasetEntry(
        "the same with Fashion-MNIST images (class k paired with the spoken digit k): harder",
        partial(materialize_av_digits, variant="fashion")),
    "av_digits_imbalanced": DatasetEntry(
        "the same digits, imbalanced: clean-ish speech (15..25 dB SNR) with more heavily degraded images, so that "
        "audio dominates joint training (a test bed for imbalance remedies)",
        partial(materialize_av_digits, degradation=IMBALANCED)),
    "interactions_redundancy": DatasetEntry(
        "synthetic vectors m0, m1: every modality carries the binary label (each alone predicts it)",
        partial(materialize_interactions, regime="redundancy"), table="records.parquet"),
    "interactions_uniqueness": DatasetEntry(
        "synthetic vectors m0, m1: only m0 carries the label, m1 is a distractor",
        partial(materialize_interactions, regime="uniqueness"), table="records.parquet"),
    "interactions_synergy": DatasetEntry(
        "synthetic vectors m0, m1: label = XOR of one bit per modality (each alone at chance; late fusion fails)",
        partial(materialize_interactions, regime="synergy"), table="records.parquet"),
}

__all__ = ["DATASETS", "DatasetEntry", "materialize_av_digits", "materialize_interactions"]
