"""The Multi30K layout: per split, one text file per language (line i of each is record i), an image list naming
record i's image on line i, and a folder of images.

    <folder>/train.en  train.de  val.en  val.de  test.en  test.de        (data.multi30k.text: "{split}.{lang}")
    <folder>/image_splits/train.txt  val.txt  test.txt                  (data.multi30k.image_list)
    <folder>/images/1000092795.jpg ...                                   (data.multi30k.images)

Text files may be gzipped (`train.en.gz`). Each split becomes a table with columns `image` (relative to the
images folder, the table's root) and one column per language; `data.multi30k.splits` maps train/val/test to
file stems (e.g. `test: test_2016_flickr`).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd

from polymodal.config import DataConfig, Multi30kConfig
from polymodal.data.formats.base import FORMATS
from polymodal.data.splits import Table


class Multi30kError(ValueError):
    """A Multi30K folder whose files do not line up; the message names each file and line at fault."""


def read_lines(path: Path) -> list[str]:
    """The lines of a text file (or of `path.gz`), without line ends."""
    gz = path.with_name(path.name + ".gz")
    if path.is_file():
        data = path.read_bytes()
    elif gz.is_file():
        data = gzip.decompress(gz.read_bytes())
    else:
        raise Multi30kError(f"{str(path)!r} does not exist (nor {gz.name}); check data.source and data.multi30k")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise Multi30kError(f"{str(path)!r} line {line}: not UTF-8 text") from None
    return text.splitlines()


def _check_lengths(files: dict[Path, list[str]]) -> None:
    counts = {p: len(lines) for p, lines in files.items()}
    if len(set(counts.values())) > 1:
        shortest = min(counts, key=counts.__getitem__)
        longest = max(counts, key=counts.__getitem__)
        listing = ", ".join(f"{p.name}: {n}" for p, n in counts.items())
        raise Multi30kError(f"line counts differ ({listing}): {str(longest)!r} line {counts[shortest] + 1} has no "
                            f"counterpart in {str(shortest)!r}; line i of every file must be the same record")


def _check_images(list_file: Path, names: list[str], images: Path, limit: int = 10) -> None:
    problems = []
    for i, name in enumerate(names, start=1):
        if not name.strip():
            problems.append(f"{str(list_file)!r} line {i}: no image name")
        elif not (images / name.strip()).is_file():
            problems.append(f"{str(list_file)!r} line {i}: image {str(images / name.strip())!r} does not exist")
    if problems:
        more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
        raise Multi30kError(f"{len(problems)} missing image(s):\n  " + "\n  ".join(problems[:limit]) + more)


def read_split(folder: Path, stem: str, options: Multi30kConfig) -> pd.DataFrame:
    """One split's records: columns `image` and one per language."""
    texts = {folder / options.text.format(split=stem, lang=lang): lang for lang in options.languages}
    list_file = folder / options.image_list.format(split=stem)
    files = {p: read_lines(p) for p in [*texts, list_file]}
    _check_lengths(files)
    images = folder / options.images
    if not images.is_dir():
        raise Multi30kError(f"images folder {str(images)!r} does not exist; set data.multi30k.images")
    _check_images(list_file, files[list_file], images)
    frame = pd.DataFrame({"image": [n.strip() for n in files[list_file]]})
    for path, lang in texts.items():
        frame[lang] = files[path]
    return frame


def load_multi30k(folder: str | Path, options: Multi30kConfig | None = None) -> dict[str, Table]:
    """The splits of a Multi30K-layout folder as tables (image paths relative to the images folder)."""
    folder, options = Path(folder), options or Multi30kConfig()
    if not folder.is_dir():
        raise Multi30kError(f"data.source {str(folder)!r} is not a folder; format multi30k reads a corpus folder")
    return {split: Table(read_split(folder, stem, options), folder / options.images, split)
            for split, stem in options.splits.items()}


@FORMATS.register("multi30k")
def load_multi30k_splits(data: DataConfig, label_field: str | None) -> dict[str, Table]:
    """The split tables of a `format: multi30k` config (a corpus folder in `data.source`; no label to stratify)."""
    return load_multi30k(data.source, data.multi30k)  # type: ignore[arg-type]
