"""Emoji: 1,906 emoji pictures with their CLDR names and keywords in English, German, French and Spanish.

The packaged file `data/emoji.npz` (made by `scripts/build_emoji.py` from the Google Noto emoji images and the
Unicode CLDR annotations) holds one 32x32 RGB picture per emoji (composited on white; no skin-tone variants)
and its short name and keywords per language. `materialize_emoji` turns it into an ordinary table: one PNG per
emoji and `records.csv` with the columns

    id, image, codepoints, name, keywords, name_de, name_fr, name_es, keywords_de, keywords_fr, keywords_es,
    group, subgroup, split

`name` / `keywords` are English (`"grinning face"`, `"cheerful|cheery|face|grin|..."`), keywords are joined by
`|`, `group` is the Unicode emoji group ("Smileys & Emotion", "Flags", ...). The split (70/15/15 train/val/test)
is drawn per group with a seeded generator, so every group appears in every split. Two applications share it:
image annotation (image -> keywords with task multilabel, image <-> name with task retrieval) and translation
(name -> name_de / name_fr). Everything is deterministic: the same seed gives the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from polymodal.datasets.staging import dataset_root, load_packaged, materialize

VERSION = 1
LANGUAGES = ("en", "de", "fr", "es")
RATIOS = (0.7, 0.15, 0.15)


def load_emoji_source(data_dir: Path | None = None) -> dict[str, np.ndarray]:
    """The packaged arrays, after checking the file against its shipped checksum (`data_dir` for tests)."""
    return load_packaged("emoji", data_dir)


def materialize_emoji(root: Path | None = None, seed: int = 0, data_dir: Path | None = None) -> Path:
    """Write the emoji dataset as PNGs + `records.csv` under `root` (default: the POLYMODAL_DATA cache).

    Reuses an existing complete copy. `seed` draws the train/val/test split.
    """
    src = load_emoji_source(data_dir)
    return materialize(root or dataset_root("emoji", VERSION, f"{str(src['checksum'])[:8]}_s{seed}"),
                       lambda tmp: _write_dataset(tmp, src, seed))


def _write_dataset(tmp: Path, src: dict[str, np.ndarray], seed: int) -> None:
    (tmp / "images").mkdir()
    frame = emoji_frame(src, seed)
    for image, path in zip(src["images"], frame["image"]):
        Image.fromarray(image).save(tmp / path)
    frame.to_csv(tmp / "records.csv", index=False)


def emoji_frame(src: dict[str, np.ndarray], seed: int = 0) -> pd.DataFrame:
    """The records table (one row per emoji, in the source order) without writing any file."""
    n = len(src["codepoints"])
    frame = pd.DataFrame({"id": [f"e{i:04d}" for i in range(n)]})
    frame["image"] = [f"images/{i}.png" for i in frame["id"]]
    frame["codepoints"] = src["codepoints"].astype(str)
    frame["name"], frame["keywords"] = src["name_en"].astype(str), src["keywords_en"].astype(str)
    others = [str(lang) for lang in src["languages"] if str(lang) != "en"]
    for lang in others:
        frame[f"name_{lang}"] = src[f"name_{lang}"].astype(str)
    for lang in others:
        frame[f"keywords_{lang}"] = src[f"keywords_{lang}"].astype(str)
    frame["group"], frame["subgroup"] = src["group"].astype(str), src["subgroup"].astype(str)
    frame["split"] = group_split(frame["group"].to_numpy(), seed)
    return frame


def group_split(groups: np.ndarray, seed: int) -> np.ndarray:
    """train/val/test per record, 70/15/15 within each group (seeded)."""
    rng = np.random.default_rng(seed)
    split = np.empty(len(groups), dtype=object)
    for g in sorted(set(groups)):
        idx = rng.permutation(np.flatnonzero(groups == g))  # (n_g,)
        a, b = round(RATIOS[0] * len(idx)), round((RATIOS[0] + RATIOS[1]) * len(idx))
        split[idx[:a]], split[idx[a:b]], split[idx[b:]] = "train", "val", "test"
    return split
