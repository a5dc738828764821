"""Built-in `emoji_translation`: multimodal machine translation of emoji names (English -> German / French CLDR
names) with the emoji picture as context, built on the `emoji` dataset.

Every emoji gives one or two records in its own split (so an emoji's picture and names never cross splits):
- variant `full`: the source is the whole English name ("grinning face with big eyes"); the text alone suffices.
- variant `masked`, for names with a recurring word: one such word is replaced by `___` ("___ heart",
  "woman ___", "grinning ___ with big eyes"). Recurring words are content words (not `with`, `of`, ..., no
  punctuation) of at least `MIN_COUNT` training names: colours, face, heart, man, woman, cat, moon, arrow, ...
  They are visual concepts that training pictures teach, so the picture of an unseen emoji can restore them. The
  German or French name still names the missing word (rotes/blaues Herz, Mann/Frau), and only the picture says
  which it is: this is where the image must disambiguate. The word is drawn with the seed.
Columns: `id`, `image` (relative to the table), `source`, `variant`, `masked_word` (empty for `full`), `name`
(the English name), `name_de`, `name_fr`, `group`, `split`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from polymodal.datasets.emoji import materialize_emoji
from polymodal.datasets.staging import dataset_root, materialize

VERSION = 2
MASK = "___"
MIN_COUNT = 5
STOPWORDS = frozenset({"a", "an", "the", "with", "of", "and", "in", "on", "at", "for", "to", "from", "by", "or"})
_WORD = re.compile(r"[\w’'\-.&]*[^\W\d_][\w’'\-.&]*")  # letters (digits, hyphens, apostrophes), no other punctuation


def content_words(name: str) -> list[str]:
    return [w.lower() for w in name.split() if _WORD.fullmatch(w) and w.lower() not in STOPWORDS]


def recurring_words(names: list[str], min_count: int = MIN_COUNT) -> set[str]:
    """Content words (lowercased) found in at least `min_count` of the names."""
    counts = Counter(w for name in names for w in set(content_words(name)))
    return {w for w, n in counts.items() if n >= min_count}


def masked_source(name: str, rng: np.random.Generator, recurring: set[str]) -> tuple[str, str] | None:
    """The name with one drawn recurring word replaced by `MASK`, and that word (None: the name has none)."""
    words = name.split()
    positions = [i for i, w in enumerate(words) if _WORD.fullmatch(w) and w.lower() in recurring
                 and w.lower() not in STOPWORDS]
    if not positions:
        return None
    i = int(rng.choice(positions))
    return " ".join(MASK if j == i else w for j, w in enumerate(words)), words[i]


def translation_frame(emoji: pd.DataFrame, image_prefix: str, seed: int = 0) -> pd.DataFrame:
    """A full and (where the name has a recurring word) a masked record per emoji, from the emoji table."""
    rng = np.random.default_rng(seed)
    recurring = recurring_words(emoji.loc[emoji["split"] == "train", "name"].astype(str).tolist())
    rows = []
    for rec in emoji.itertuples(index=False):
        common = {"id": rec.id, "image": f"{image_prefix}{rec.image}", "name": rec.name, "name_de": rec.name_de,
                  "name_fr": rec.name_fr, "group": rec.group, "split": rec.split}
        rows.append({**common, "source": rec.name, "variant": "full", "masked_word": ""})
        masked = masked_source(str(rec.name), rng, recurring)
        if masked is not None:
            rows.append({**common, "source": masked[0], "variant": "masked", "masked_word": masked[1]})
    columns = ["id", "image", "source", "variant", "masked_word", "name", "name_de", "name_fr", "group", "split"]
    return pd.DataFrame(rows)[columns]


def materialize_emoji_translation(root: Path | None = None, seed: int = 0) -> Path:
    """Write `records.csv` under `root` (default: the POLYMODAL_DATA cache); the images are the emoji dataset's
    (referenced by relative path, not copied). Reuses an existing copy."""
    emoji_root = materialize_emoji(seed=seed)
    root = root or dataset_root("translation", VERSION, emoji_root.name)
    prefix = Path(os.path.relpath(emoji_root, root)).as_posix() + "/"
    return materialize(root, lambda tmp: _write_dataset(tmp, emoji_root, prefix, seed))


def _write_dataset(tmp: Path, emoji_root: Path, image_prefix: str, seed: int) -> None:
    frame = translation_frame(pd.read_csv(emoji_root / "records.csv", keep_default_na=False), image_prefix, seed)
    frame.to_csv(tmp / "records.csv", index=False)
