"""The Multi30K layout reader: splits, gzipped text, config validation, malformed folders, a run from config."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from polymodal.config import ConfigError, Multi30kConfig
from polymodal.data.formats.multi30k import Multi30kError, load_multi30k
from polymodal.data.sources import load_splits
from polymodal.factory import parse_config
from polymodal.predictor import Predictor
from polymodal.training.fit import train

EN = ["a red square", "a blue circle", "two green dots", "a red circle", "a blue square", "one green dot"]
DE = ["ein rotes Quadrat", "ein blauer Kreis", "zwei grüne Punkte", "ein roter Kreis", "ein blaues Quadrat",
      "ein grüner Punkt"]


def write_corpus(root: Path, sizes: dict[str, int] | None = None) -> Path:
    """A Multi30K-layout folder: <split>.en/.de, image_splits/<split>.txt, images/<name>.jpg (PNG bytes)."""
    sizes = sizes or {"train": 12, "val": 6, "test": 6}
    rng = np.random.default_rng(0)
    (root / "image_splits").mkdir(parents=True)
    (root / "images").mkdir()
    for split, n in sizes.items():
        names = [f"{split}{i}.jpg" for i in range(n)]
        for name in names:
            Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(root / "images" / name, "PNG")
        (root / f"{split}.en").write_text("\n".join(EN[i % 6] for i in range(n)) + "\n")
        (root / f"{split}.de").write_text("\n".join(DE[i % 6] for i in range(n)) + "\n")
        (root / "image_splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def test_reads_every_split_aligned_line_by_line(tmp_path: Path) -> None:
    tables = load_multi30k(write_corpus(tmp_path / "m30k"))
    assert set(tables) == {"train", "val", "test"}
    train_table = tables["train"]
    assert list(train_table.frame.columns) == ["image", "en", "de"] and len(train_table) == 12
    assert train_table.frame.loc[3, "en"] == EN[3] and train_table.frame.loc[3, "de"] == DE[3]
    assert (train_table.root / train_table.frame.loc[3, "image"]).is_file()


def test_gzipped_text_files_and_custom_split_names(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "m30k", {"train": 6, "test_2016_flickr": 6})
    data = (root / "train.de").read_bytes()
    (root / "train.de.gz").write_bytes(gzip.compress(data))
    (root / "train.de").unlink()
    options = Multi30kConfig(splits={"train": "train", "test": "test_2016_flickr"})
    tables = load_multi30k(root, options)
    assert set(tables) == {"train", "test"} and tables["train"].frame["de"].tolist() == DE


def test_line_count_mismatch_names_the_files_and_line(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "m30k")
    (root / "val.de").write_text("\n".join(DE[:4]) + "\n")
    with pytest.raises(Multi30kError, match=r"val\.en: 6, val\.de: 4.*val\.en' line 5 has no counterpart in .*val\.de"):
        load_multi30k(root)


def test_image_list_shorter_than_the_text(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "m30k")
    lines = (root / "image_splits" / "test.txt").read_text().splitlines()
    (root / "image_splits" / "test.txt").write_text("\n".join(lines[:5]) + "\n")
    with pytest.raises(Multi30kError, match=r"test\.txt: 5\).*test\.en' line 6 has no counterpart in .*test\.txt"):
        load_multi30k(root)


def test_missing_image_file_names_the_list_file_line_and_image(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "m30k")
    (root / "images" / "train7.jpg").unlink()
    with pytest.raises(Multi30kError, match=r"(?s)1 missing image.*train\.txt' line 8: image .*train7\.jpg' does not exist"):
        load_multi30k(root)


def test_missing_text_file_and_missing_folder(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "m30k")
    with pytest.raises(Multi30kError, match=r"train\.fr' does not exist"):
        load_multi30k(root, Multi30kConfig(languages=["en", "fr"]))
    with pytest.raises(Multi30kError, match="is not a folder"):
        load_multi30k(tmp_path / "nowhere")


def test_config_validation() -> None:
    base = {"modalities": {"en": {"type": "text"}}, "target": {"field": "de", "task": "generation"}}
    with pytest.raises(ConfigError, match="data.multi30k: only for data.format: multi30k"):
        parse_config({**base, "data": {"source": "x.csv", "multi30k": {}}})
    with pytest.raises(ConfigError, match="multi30k reads a corpus folder; set 'source'"):
        parse_config({**base, "data": {"train": "x.csv", "format": "multi30k"}})
    with pytest.raises(ConfigError, match=r"languages: \['en', 'en'\] lists a language twice"):
        parse_config({**base, "data": {"source": "d", "format": "multi30k", "multi30k": {"languages": ["en", "en"]}}})
    with pytest.raises(ConfigError, match=r"text: the pattern needs '\{lang\}'"):
        parse_config({**base, "data": {"source": "d", "format": "multi30k", "multi30k": {"text": "{split}.txt"}}})
    with pytest.raises(ConfigError, match="splits"):
        parse_config({**base, "data": {"source": "d", "format": "multi30k", "multi30k": {"splits": {"dev": "val"}}}})


def test_multimodal_translation_run_from_a_multi30k_config(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "m30k")
    raw = {
        "name": "m30k",
        "data": {"source": str(root), "format": "multi30k", "multi30k": {"languages": ["en", "de"]}},
        "modalities": {
            "en": {"type": "text", "vocab_size": 32, "encoder": {"name": "text_gru", "out_dim": 16, "embed_dim": 8}},
            "image": {"type": "image", "size": 8, "encoder": {"name": "image_cnn", "width": 8, "out_dim": 16, "blocks": 2}},
        },
        "target": {"field": "de", "task": "generation",
                   "generation": {"hidden": 16, "max_length": 8, "vocab_size": 300, "beam_size": 2}},
        "fusion": {"name": "concat", "hidden": 16},
        "training": {"epochs": 1, "batch_size": 8, "progress_bar": False},
        "output_dir": str(tmp_path / "run"),
    }
    config = parse_config(raw)
    assert set(load_splits(config.data, None)) == {"train", "val", "test"}
    result = train(config)
    assert {"bleu", "chrf", "cider"} <= set(result.metrics["test"])
    tables = load_multi30k(root)
    predictions = Predictor.load(result.run_dir).predict(tables["test"].frame, root=tables["test"].root)
    assert len(predictions) == 6 and all(isinstance(p, str) for p in predictions)
