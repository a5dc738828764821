"""The built-in emoji dataset and the image-annotation recipes: source checksum, deterministic materialization,
the columns other applications rely on, tag vocabulary pruning, tagging and retrieval end to end."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from polymodal.config import ConfigError, DataConfig, TargetConfig
from polymodal.data.sources import load_splits
from polymodal.datasets import DATASETS
from polymodal.datasets.emoji import emoji_frame, load_emoji_source, materialize_emoji
from polymodal.factory import load_config, parse_config
from polymodal.tasks import build_task, mean_average_precision, precision_at_k

CONFIGS = Path(__file__).parents[1] / "configs"
COLUMNS = ["id", "image", "codepoints", "name", "keywords", "name_de", "name_fr", "name_es", "keywords_de",
           "keywords_fr", "keywords_es", "group", "subgroup", "split"]


@pytest.fixture(scope="module")
def emoji_root() -> Path:
    return materialize_emoji()  # under POLYMODAL_DATA (a temporary folder in tests): `builtin: emoji` reuses it


def test_source_arrays() -> None:
    src = load_emoji_source()
    n = len(src["codepoints"])
    assert n > 1800 and src["images"].shape == (n, 32, 32, 3) and src["images"].dtype == np.uint8
    assert src["languages"].tolist() == ["en", "de", "fr", "es"]
    first = {k: str(src[k][0]) for k in ("codepoints", "name_en", "name_de", "name_fr")}
    assert first == {"codepoints": "1F600", "name_en": "grinning face", "name_de": "grinsendes Gesicht",
                     "name_fr": "visage rieur"}
    assert not any("1F3FB" in c or "1F3FF" in c for c in src["codepoints"].astype(str))  # no skin-tone variants


def test_records_columns_and_splits(emoji_root: Path) -> None:
    records = pd.read_csv(emoji_root / "records.csv")
    assert list(records.columns) == COLUMNS
    assert not records.isna().any().any()
    assert records.loc[0, "name"] == "grinning face" and "grin" in records.loc[0, "keywords"].split("|")
    counts = records["split"].value_counts()
    assert set(counts.index) == {"train", "val", "test"} and counts["train"] > 4 * counts["test"]
    assert (records.groupby("group")["split"].nunique() == 3).all()  # every group in every split
    image = Image.open(emoji_root / records.loc[0, "image"])
    assert image.size == (32, 32) and image.mode == "RGB"


def test_materialization_is_deterministic_and_seeded(emoji_root: Path, tmp_path: Path) -> None:
    again = materialize_emoji(tmp_path / "again")
    assert pd.read_csv(again / "records.csv").equals(pd.read_csv(emoji_root / "records.csv"))
    for name in ("images/e0000.png", "images/e1234.png"):
        assert (again / name).read_bytes() == (emoji_root / name).read_bytes()
    src = load_emoji_source()
    assert emoji_frame(src, seed=0).equals(emoji_frame(src, seed=0))
    assert not emoji_frame(src, seed=1)["split"].equals(emoji_frame(src, seed=0)["split"])


def test_checksum_mismatch_is_an_error(tmp_path: Path) -> None:
    data = resources.files("polymodal.datasets") / "data"
    shutil.copyfile(str(data / "emoji.npz"), tmp_path / "emoji.npz")
    (tmp_path / "emoji.sha256").write_text("0" * 64 + "  emoji.npz\n")
    with pytest.raises(RuntimeError, match="does not match its checksum.*scripts/build_emoji.py"):
        materialize_emoji(tmp_path / "out", data_dir=tmp_path)


def test_builtin_registry_and_recipes_validate(emoji_root: Path) -> None:
    assert "emoji" in DATASETS
    tables = load_splits(DataConfig(builtin="emoji"), None)
    assert sum(len(t) for t in tables.values()) == len(load_emoji_source()["codepoints"])
    tagging, retrieval = load_config(CONFIGS / "annotation.yaml"), load_config(CONFIGS / "annotation_retrieval.yaml")
    assert tagging.target.task == "multilabel" and tagging.target.min_count >= 2
    assert retrieval.target.task == "retrieval" and set(retrieval.modalities) == {"image", "name"}


def test_min_count_prunes_the_vocabulary_and_ignores_rare_labels() -> None:
    task = build_task(TargetConfig(field="tags", task="multilabel", min_count=2))
    task.fit(["a|b", "a|c", "b|a|a", "d"])
    assert task.classes == ["a", "b"]
    assert task.encode("a|c|unseen").tolist() == [1.0, 0.0]
    strict = build_task(TargetConfig(field="tags", task="multilabel"))
    strict.fit(["a|b"])
    with pytest.raises(Exception, match="'z' does not occur in the training split.*min_count"):
        strict.encode("z")
    with pytest.raises(ValueError, match="target.min_count"):
        TargetConfig(field="y", task="multiclass", min_count=3)


def test_tagging_metrics_on_known_scores() -> None:
    target = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.7, 0.6, 0.1], [0.5, 0.5, 0.5]])
    # label 0: positives ranked 1st and 2nd -> AP 1; label 1: positives ranked 1st and 3rd -> (1 + 2/3) / 2;
    # label 2 has no positive and is left out of the mean.
    assert mean_average_precision(scores, target) == pytest.approx((1 + (1 + 2 / 3) / 2) / 2)
    assert precision_at_k(scores, target, 1) == pytest.approx(2 / 3)  # record 3 has no label: not counted
    assert precision_at_k(scores, target, 2) == pytest.approx((1 + 1 + 2) / 6)
    assert mean_average_precision(scores[:, 1:2], target[:, 1:2]) == pytest.approx((1 + 2 / 3) / 2)


def subset(root: Path, out: Path, per_split: int = 24) -> Path:
    """A few emojis of two visually distinct groups (flags, smileys), with the original split."""
    records = pd.read_csv(root / "records.csv")
    keep = records[records["group"].isin(["Flags", "Smileys & Emotion"])]
    keep = keep.groupby(["split", "group"]).head(per_split // 2)
    keep = keep.assign(image=[str(root / p) for p in keep["image"]])
    out.mkdir(parents=True, exist_ok=True)
    keep.to_csv(out / "records.csv", index=False)
    return out / "records.csv"


def tiny_config(source: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    image = {"type": "image", "size": 16, "encoder": {"name": "image_cnn", "width": 8, "blocks": 2, "out_dim": 16}}
    return {
        "data": {"source": str(source), "split": {"column": "split"}, "allow_outside_root": True},  # absolute paths
        "modalities": {"image": image},
        "target": {"field": "keywords", "task": "multilabel", "min_count": 3},
        "fusion": {"name": "concat", "hidden": 16},
        "training": {"epochs": 2, "batch_size": 16, "progress_bar": False, "lr": 3e-3},
        "output_dir": str(out),
    } | overrides


def test_tagging_trains_predicts_and_reports_the_tagging_metrics(emoji_root: Path, tmp_path: Path) -> None:
    from polymodal.predictor import Predictor
    from polymodal.training.fit import train

    source = subset(emoji_root, tmp_path / "data")
    result = train(parse_config(tiny_config(source, tmp_path / "tag")))
    assert set(result.metrics["test"]) == {"micro_f1", "macro_f1", "map", "precision_at_1", "precision_at_5"}
    predictor = Predictor.load(tmp_path / "tag")
    train_rows = pd.read_csv(source).query("split == 'train'")
    counts = pd.Series([k for s in train_rows["keywords"] for k in set(s.split("|"))]).value_counts()
    assert set(predictor.classes) == set(counts[counts >= 3].index) and "flag" in predictor.classes
    proba = predictor.predict_proba(pd.read_csv(source).head(3))
    assert proba.shape == (3, len(predictor.classes)) and ((proba >= 0) & (proba <= 1)).all().all()


def test_retrieval_image_and_name_both_directions(emoji_root: Path, tmp_path: Path) -> None:
    from polymodal.training.fit import train

    source = subset(emoji_root, tmp_path / "data")
    config = tiny_config(source, tmp_path / "ret", target={"task": "retrieval"}, objectives=[
        {"name": "contrastive", "embed_dim": 16}])
    config["modalities"]["name"] = {"type": "text", "max_length": 8, "encoder": {"name": "text_gru", "out_dim": 16,
                                                                                  "embed_dim": 8}}
    metrics = train(parse_config(config)).metrics["test"]
    for direction in ("image_to_name", "name_to_image"):
        assert {f"{direction}_r{k}" for k in (1, 5, 10)} <= set(metrics)
        assert 0.0 <= metrics[f"{direction}_r1"] <= metrics[f"{direction}_r10"] <= 1.0
    assert metrics["mean_recall"] == pytest.approx(np.mean([v for k, v in metrics.items()
                                                            if "_r" in k and "median" not in k]))


def test_bad_min_count_in_a_recipe_names_the_key(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "x.csv", tmp_path / "run")
    config["target"]["min_count"] = 0
    with pytest.raises(ConfigError, match="target.min_count"):
        parse_config(config)
