"""Built-in datasets: generated or shipped with the package, deterministic, no downloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from polymodal.datasets.av_digits import IMBALANCED, materialize_av_digits
from polymodal.datasets.emoji import materialize_emoji
from polymodal.datasets.sentiment import materialize_sentiment
from polymodal.datasets.synthetic import materialize_interactions
from polymodal.datasets.translation import materialize_emoji_translation
from polymodal.datasets.video_digits import materialize_video_digits
from polymodal.datasets.vqa_shapes import materialize_vqa_shapes


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
    "vqa_shapes": DatasetEntry(
        "visual question answering on rendered scenes of coloured shapes: colour, shape, count, position and "
        "existence questions, answers balanced per question (neither question nor image alone suffices)",
        materialize_vqa_shapes),
    "sentiment": DatasetEntry(
        "spoken sentences (80 synthetic voices) scored for sentiment in [-3, 3] from human word valence ratings; "
        "some are spoken sarcastically, which flips the score (text + audio both needed)", materialize_sentiment),
    "emoji": DatasetEntry(
        "1,906 emoji pictures (32x32) with CLDR names and keywords in en/de/fr/es: image annotation (image -> "
        "keywords, image <-> name) and translation (name -> name_de / name_fr)", materialize_emoji),
    "video_digits": DatasetEntry(
        "mp4 clips of a moving MNIST digit with a spoken digit on the audio track; label = direction of motion x "
        "spoken digit (needs several frames and both streams)", materialize_video_digits),
    "emoji_translation": DatasetEntry(
        "emoji names English -> German/French with the emoji picture as context; in half of the records one "
        "English word is masked (`___`) so that only the picture can tell it (multimodal translation)",
        materialize_emoji_translation),
}

__all__ = ["DATASETS", "DatasetEntry", "materialize_av_digits", "materialize_emoji", "materialize_interactions"]
