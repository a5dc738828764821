"""COCO-style JSON as a table: captions, instances tags, config use, and clear errors on malformed files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polymodal.config import CocoConfig, ConfigError
from polymodal.data.formats.coco import CocoError, read_coco
from polymodal.data.sources import load_splits, read_table
from polymodal.factory import parse_config


def write_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.full((8, 8, 3), 40 * (i % 5), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def captions_doc(n: int = 4) -> dict[str, Any]:
    images = [{"id": 100 + i, "file_name": f"{i:03d}.png", "width": 8, "height": 8} for i in range(n)]
    anns = [{"id": 10 * i + j, "image_id": 100 + i, "caption": f"picture {i} caption {j}"}
            for i in range(n - 1) for j in (2, 1)]  # the last image has no caption
    return {"images": images, "annotations": anns}


def instances_doc(n: int = 4) -> dict[str, Any]:
    doc = captions_doc(n)
    doc["categories"] = [{"id": 3, "name": "dog"}, {"id": 1, "name": "cat"}]
    doc["annotations"] = [{"id": 1, "image_id": 100, "category_id": 3}, {"id": 2, "image_id": 100, "category_id": 1},
                          {"id": 3, "image_id": 100, "category_id": 3}, {"id": 4, "image_id": 101, "category_id": 1}]
    return doc


def write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture()
def coco_dir(tmp_path: Path) -> Path:
    write_images(tmp_path / "images", 4)
    write(tmp_path / "ann" / "captions.json", captions_doc())
    write(tmp_path / "ann" / "instances.json", instances_doc())
    return tmp_path


def test_captions_file_becomes_one_row_per_image(coco_dir: Path) -> None:
    frame = read_coco(coco_dir / "ann" / "captions.json", CocoConfig(images="../images"))
    assert frame["image_id"].tolist() == [100, 101, 102, 103]
    assert frame["image"].tolist()[0] == "000.png"  # under the images folder, the table's root
    assert frame.loc[0, "captions"] == ["picture 0 caption 1", "picture 0 caption 2"]  # by annotation id
    assert frame.loc[0, "caption"] == "picture 0 caption 1"
    assert pd.isna(frame.loc[3, "caption"]) and frame.loc[3, "captions"] == []
    assert (frame["tags"] == "").all()


def test_instances_give_tags_in_category_order_and_merge_with_captions(coco_dir: Path) -> None:
    tags = read_coco(coco_dir / "ann" / "instances.json", CocoConfig(images="../images"))["tags"]
    assert tags.tolist() == ["cat|dog", "cat", "", ""]  # unique, category id order
    both = read_coco(coco_dir / "ann" / "captions.json", CocoConfig(images="../images", instances="instances.json"))
    assert both["tags"].tolist() == ["cat|dog", "cat", "", ""]
    assert both.loc[1, "caption"] == "picture 1 caption 1"


def test_config_format_coco_splits_and_trains_a_tagger(coco_dir: Path, tmp_path: Path) -> None:
    from polymodal.training.fit import train

    write_images(coco_dir / "images", 12)
    doc = instances_doc(12)
    doc["annotations"] = [{"id": i, "image_id": 100 + i, "category_id": (3, 1)[i % 2]} for i in range(12)]
    write(coco_dir / "ann" / "instances.json", doc)
    config = parse_config({
        "data": {"source": str(coco_dir / "ann" / "instances.json"), "format": "coco",
                 "coco": {"images": "../images"}, "split": {"ratios": [0.5, 0.25, 0.25]}},
        "modalities": {"image": {"type": "image", "size": 8, "encoder": {"name": "image_cnn", "width": 4,
                                                                          "blocks": 1, "out_dim": 8}}},
        "target": {"field": "tags", "task": "multilabel"},
        "fusion": {"name": "concat", "hidden": 8},
        "training": {"epochs": 1, "batch_size": 4, "progress_bar": False},
        "output_dir": str(tmp_path / "run"),
    })
    tables = load_splits(config.data, None)
    assert sum(len(t) for t in tables.values()) == 12 and tables["train"].root == coco_dir / "ann" / "../images"
    result = train(config)
    assert {"map", "micro_f1", "precision_at_1"} <= set(result.metrics["test"])


def test_one_file_per_split_with_split_placeholders(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("val", 2)):
        write_images(tmp_path / f"{split}2017", n)
        write(tmp_path / "ann" / f"captions_{split}.json", captions_doc(n))
        write(tmp_path / "ann" / f"instances_{split}.json", instances_doc(n))
    config = parse_config({
        "data": {"train": str(tmp_path / "ann" / "captions_train.json"),
                 "val": str(tmp_path / "ann" / "captions_val.json"), "format": "coco",
                 "coco": {"images": "../{split}2017", "instances": "instances_{split}.json"}},
        "modalities": {"image": {"type": "image"}}, "target": {"field": "tags", "task": "multilabel"}})
    tables = load_splits(config.data, None)
    assert {s: len(t) for s, t in tables.items()} == {"train": 4, "val": 2}
    assert tables["val"].frame["image"].tolist()[0] == "000.png"
    assert tables["val"].root == tmp_path / "ann" / "../val2017"
    assert tables["train"].frame["tags"].tolist()[:2] == ["cat|dog", "cat"]


def test_read_table_dispatches_and_config_checks_options(coco_dir: Path) -> None:
    write_images(coco_dir / "ann", 4)  # images next to the JSON: the default folder
    assert len(read_table(coco_dir / "ann" / "captions.json", "coco")) == 4
    with pytest.raises(ConfigError, match="data.coco: only for data.format: coco"):
        parse_config({"data": {"source": "x.csv", "coco": {"images": "img"}},
                      "modalities": {"a": {"type": "vector"}}, "target": {"field": "y", "task": "binary"}})


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.pop("images"), r"no 'images' list"),
    (lambda d: d["annotations"].append({"id": 99, "image_id": 555, "caption": "x"}),
     r"annotations\[6\] \(id 99\) refers to image_id 555, which is not in 'images'; fix the id or drop"),
    (lambda d: d["images"][2].pop("file_name"), r"images\[2\] \(id 102\) has no 'file_name'"),
    (lambda d: d["images"].append({"id": 101, "file_name": "001.png"}), r"image id 101 occurs twice"),
    (lambda d: d["annotations"].append({"id": 98, "image_id": 100}), r"\(id 98\) has neither 'caption' nor"),
])
def test_malformed_files_name_the_key_or_id(coco_dir: Path, mutate: Any, message: str) -> None:
    doc = captions_doc()
    mutate(doc)
    path = write(coco_dir / "ann" / "bad.json", doc)
    with pytest.raises(CocoError, match=message):
        read_coco(path, CocoConfig(images="../images"))


def test_missing_image_file_and_unknown_category(coco_dir: Path) -> None:
    (coco_dir / "images" / "002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image id 102: file .*002.png.* does not exist; set data.coco.images"):
        read_coco(coco_dir / "ann" / "captions.json", CocoConfig(images="../images"))
    assert len(read_coco(coco_dir / "ann" / "captions.json", CocoConfig(images="../images", check_files=False))) == 4
    doc = instances_doc()
    doc["annotations"][0]["category_id"] = 42
    path = write(coco_dir / "ann" / "bad.json", doc)
    with pytest.raises(CocoError, match=r"annotations\[0\] \(id 1\) has category_id 42, which is not in 'categories'"):
        read_coco(path, CocoConfig(images="../images", check_files=False))
    broken = coco_dir / "ann" / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CocoError, match="not valid JSON"):
        read_coco(broken)
