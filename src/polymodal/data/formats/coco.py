"""COCO-style JSON as a table: one row per image with its captions and/or category tags.

A captions file (`captions_train2017.json`) and an instances file (`instances_train2017.json`) share the layout

    {"images": [{"id": 1, "file_name": "000001.jpg", "width": 640, "height": 480}, ...],
     "annotations": [{"id": 7, "image_id": 1, "caption": "a cat on a mat"}, ...             # captions
                     {"id": 8, "image_id": 1, "category_id": 17, "bbox": [...]}, ...],       # instances
     "categories": [{"id": 17, "name": "cat", "supercategory": "animal"}, ...]}              # instances

`read_coco` turns one (or a captions file plus an instances file) into the project's table with the columns
`image_id`, `image` (the image's `file_name`, relative to the images folder `images_root` gives), `width`,
`height`, `caption` (the first caption by annotation id), `captions` (all of them, a list) and `tags` (the
image's category names, unique, in category-id order, joined by `|`). An image without captions has an empty
`caption` (a missing text); one without instances has empty `tags`. From a config:

    data: {source: annotations/captions_train2017.json, format: coco,
           coco: {images: ../train2017, instances: instances_train2017.json}}

or `train:` / `val:` with one JSON per split. Malformed files stop with an error naming the key or id.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.config import CocoConfig, DataConfig
from polymodal.data.formats.base import FORMATS, read_json, split_tables
from polymodal.data.paths import is_inside
from polymodal.data.splits import Table

COLUMNS = ["image_id", "image", "width", "height", "caption", "captions", "tags"]


class CocoError(ValueError):
    """A COCO file that cannot be read as a table; the message names the file, the key or id, and the fix."""


def read_coco(path: str | Path, options: CocoConfig | None = None) -> pd.DataFrame:
    """One row per image of the COCO JSON at `path` (see the module docstring for the columns)."""
    path, options = Path(path), options or CocoConfig()
    doc = _load(path)
    images = _images(doc, path)
    captions, tags = _annotations(doc, path, images)
    if options.instances is not None:
        extra_path = _under(path.parent, options.instances)
        extra = _load(extra_path)
        _, extra_tags = _annotations(extra, extra_path, _images(extra, extra_path))
        for image_id, names in extra_tags.items():
            if image_id not in images:
                raise CocoError(f"{extra_path}: image_id {image_id} has instances but is not in the 'images' of "
                                f"{path}; use the instances file of the same split")
            tags[image_id] = list(dict.fromkeys(tags.get(image_id, []) + names))
    frame = pd.DataFrame([_row(image_id, info, captions, tags) for image_id, info in images.items()],
                         columns=COLUMNS)
    if options.check_files:
        _check_files(frame, path, images_root(path, options))
    return frame


def _load(path: Path) -> dict[str, Any]:
    doc = read_json(path, "COCO", CocoError)
    if not isinstance(doc, dict):
        raise CocoError(f"{path}: expected a JSON object with 'images' and 'annotations', got {type(doc).__name__}")
    if not isinstance(doc.get("images"), list):
        raise CocoError(f"{path}: no 'images' list; a COCO file needs 'images': [{{'id': ..., 'file_name': ...}}] "
                        "(and 'annotations' with image_id and caption or category_id)")
    return doc


def _images(doc: dict[str, Any], path: Path) -> dict[Any, dict[str, Any]]:
    """The images by id, in file order, after checking each has an id and a file_name."""
    out: dict[Any, dict[str, Any]] = {}
    for i, img in enumerate(doc["images"]):
        if not isinstance(img, dict) or "id" not in img:
            raise CocoError(f"{path}: images[{i}] has no 'id'; every image needs 'id' and 'file_name'")
        if not img.get("file_name"):
            raise CocoError(f"{path}: images[{i}] (id {img['id']}) has no 'file_name'; add the image's file name "
                            "relative to the images folder (data.coco.images)")
        if img["id"] in out:
            raise CocoError(f"{path}: images[{i}]: image id {img['id']} occurs twice; image ids must be unique")
        out[img["id"]] = img
    return out


def _annotations(doc: dict[str, Any], path: Path,
                 images: dict[Any, dict[str, Any]]) -> tuple[dict[Any, list[str]], dict[Any, list[str]]]:
    """Captions and category names per image id, each in annotation-id order."""
    categories = _categories(doc, path)
    anns = doc.get("annotations", [])
    if not isinstance(anns, list):
        raise CocoError(f"{path}: 'annotations' is a {type(anns).__name__}, expected a list")
    captions: dict[Any, list[str]] = defaultdict(list)
    tags: dict[Any, list[str]] = defaultdict(list)
    for i, ann in sorted(enumerate(anns), key=lambda p: _order(p[1], p[0])):
        where = f"{path}: annotations[{i}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise CocoError(f"{where} has no 'image_id'")
        if ann["image_id"] not in images:
            raise CocoError(f"{where} refers to image_id {ann['image_id']}, which is not in 'images'; fix the id or "
                            "drop the annotation")
        if "caption" in ann:
            captions[ann["image_id"]].append(str(ann["caption"]).strip())
        elif "category_id" in ann:
            if ann["category_id"] not in categories:
                raise CocoError(f"{where} has category_id {ann['category_id']}, which is not in 'categories'")
            if categories[ann["category_id"]] not in tags[ann["image_id"]]:
                tags[ann["image_id"]].append(categories[ann["category_id"]])
        else:
            raise CocoError(f"{where} has neither 'caption' nor 'category_id'")
    order = {name: k for k, name in enumerate(categories.values())}
    return captions, {k: sorted(v, key=order.__getitem__) for k, v in tags.items()}


def _order(ann: Any, position: int) -> tuple[int, str]:
    return (0, f"{ann['id']:>20}") if isinstance(ann, dict) and "id" in ann else (1, f"{position:>20}")


def _categories(doc: dict[str, Any], path: Path) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for i, cat in enumerate(doc.get("categories", [])):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise CocoError(f"{path}: categories[{i}] needs 'id' and 'name'")
        if "|" in str(cat["name"]):
            raise CocoError(f"{path}: categories[{i}] name {cat['name']!r} contains '|', the tag separator")
        out[cat["id"]] = str(cat["name"])
    return dict(sorted(out.items(), key=lambda kv: str(kv[0]).zfill(20)))


def images_root(path: Path, options: CocoConfig | None) -> Path:
    """The folder of the images of the COCO JSON at `path` (`data.coco.images`, relative to the JSON's folder):
    the table's root, which the images' file names resolve under."""
    return _under(path.parent, options.images) if options is not None and options.images else path.parent


def _row(image_id: Any, info: dict[str, Any], captions: dict[Any, list[str]],
         tags: dict[Any, list[str]]) -> dict[str, Any]:
    texts = captions.get(image_id, [])
    return {"image_id": image_id, "image": str(info["file_name"]),
            "width": info.get("width"), "height": info.get("height"),
            "caption": texts[0] if texts else None, "captions": texts, "tags": "|".join(tags.get(image_id, []))}


def _under(folder: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else folder / path


def _check_files(frame: pd.DataFrame, path: Path, folder: Path) -> None:
    for image_id, name in zip(frame["image_id"], frame["image"]):
        file = _under(folder, name)
        if is_inside(file, folder) and not file.is_file():  # outside the folder: refused when decoded, unopened
            raise FileNotFoundError(f"{path}: image id {image_id}: file {str(file)!r} (from its file_name) does not "
                                    "exist; set data.coco.images to the folder holding the images, or "
                                    "check_files: false to treat unreadable images by the modality's on_error")


@FORMATS.register("coco")
def load_coco_splits(data: DataConfig, label_field: str | None) -> dict[str, Table]:
    """The split tables of a `format: coco` config: one JSON per split, or one split by `data.split`."""
    def read(path: Path, split: str | None) -> pd.DataFrame:
        return read_coco(path, data.coco if split is None else for_split(data.coco, split))

    return split_tables(data, label_field, read, lambda path, split: images_root(
        path, data.coco if split is None else for_split(data.coco, split)))


def for_split(options: CocoConfig | None, split: str) -> CocoConfig | None:
    """`{split}` in `images` / `instances` becomes the split's name (train, val, test), e.g. `../{split}2017`."""
    if options is None:
        return None
    update = {k: getattr(options, k).replace("{split}", split) for k in ("images", "instances")
              if getattr(options, k) is not None}
    return options.model_copy(update=update)
