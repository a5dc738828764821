#!/usr/bin/env python3
"""Build ``emoji.npz``, the source file of polymodal's built-in ``emoji`` dataset.

The emoji dataset pairs a small picture of each emoji with its name and keywords in several languages: an
image-annotation set (image -> keywords, image <-> name) and a small parallel corpus (English name ->
German / French / Spanish name) in one file.  This script only gathers and packs the raw material; splits
and files on disk are made by ``polymodal.datasets.emoji.materialize_emoji``.

What it builds
--------------
One compressed ``.npz`` (default ``src/polymodal/datasets/data/emoji.npz``) plus ``emoji.sha256`` next to
it (one line: hex sha256 of the npz).  One row per emoji, in the emoji-datasource sort order; skin-tone
variants (nested under ``skin_variations`` in emoji-datasource) and the five skin-tone swatches of the
``Component`` category are left out.  Keys:

``codepoints``     str (N,), e.g. ``"1F600"`` or ``"1F468-200D-1F4BB"`` (fully-qualified, upper-case hex)
``images``         uint8 (N, S, S, 3), the Google/Noto 64 px PNG composited on white and resized to S x S
                   (``--size``, default 32) with Lanczos filtering
``group``          str (N,), Unicode emoji group, e.g. ``"Smileys & Emotion"``
``subgroup``       str (N,), Unicode emoji subgroup, e.g. ``"face-smiling"``
``name_<lang>``    str (N,), the CLDR short name ("tts"), e.g. ``"grinning face"`` / ``"grinsendes Gesicht"``
``keywords_<lang>`` str (N,), the CLDR keywords ("default"), sorted as CLDR lists them, joined by ``"|"``
``languages``      str (L,), the languages present, English first (default en, de, fr, es)

Names and keywords come from the CLDR annotations (``cldr-annotations-full``); CLDR keeps sequences
(flags, keycaps, ZWJ sequences such as "man technologist") in its *derived* annotations, which that
package lacks, so for those the label and tags of ``emojibase-data`` (which ships CLDR's base and derived
annotations per locale) fill in.  Lookups ignore the variation selector U+FE0F.  A ``|`` inside a keyword
would be replaced by ``/`` (none occurs in the pinned versions).  Rows without an English name are
dropped (none in the pinned versions); a missing name in another language is an error, because the
translation application relies on every row being aligned.

Sources and licenses
--------------------
* ``emoji-datasource-google`` (npm; emoji-data by Cal Henderson, MIT): the emoji list, groups and the
  Google Noto Color Emoji PNGs (Apache License 2.0).
* ``cldr-annotations-full`` (npm; Unicode CLDR, Unicode License v3): names and keywords per locale.
* ``emojibase-data`` (npm; Miles Johnson, MIT; content from CLDR, Unicode License v3): derived names.

Requirements
------------
``npm`` on PATH (the packages are fetched with ``npm pack`` into a temporary folder; nothing is installed),
Python with numpy and Pillow.  The versions are pinned below; the output is byte-for-byte the same on
every run (fixed zip timestamps, fixed order).

Usage::

    python scripts/build_emoji.py [--out src/polymodal/datasets/data/emoji.npz] [--size 32]
                                  [--languages en,de,fr,es] [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = {
    "emoji-datasource-google": "16.0.0",
    "cldr-annotations-full": "48.2.0",
    "emojibase-data": "17.0.0",
}
SKIPPED_CATEGORIES = {"Component"}  # the five skin-tone swatches
VS16 = "\ufe0f"


def fetch(package: str, version: str, cache: Path) -> Path:
    """`npm pack` one pinned package into `cache` and unpack it; return its `package/` folder."""
    target = cache / f"{package}-{version}"
    if (target / "package" / "package.json").is_file():
        return target / "package"
    tarball = cache / f"{package}-{version}.tgz"
    if not tarball.is_file():
        subprocess.run(["npm", "pack", f"{package}@{version}", "--silent"], cwd=cache, check=True,
                       stdout=subprocess.DEVNULL)
    with tarfile.open(tarball) as tar:
        tar.extractall(target, filter="data")
    return target / "package"


def char(codepoints: str) -> str:
    return "".join(chr(int(h, 16)) for h in codepoints.split("-"))


def clean(keywords: list[str]) -> list[str]:
    out: list[str] = []
    for k in (k.strip().replace("|", "/") for k in keywords):
        if k and k not in out:
            out.append(k)
    return out


def load_cldr(root: Path, lang: str) -> dict[str, tuple[str, list[str]]]:
    """CLDR annotations of one locale, keyed by the emoji without U+FE0F: (short name, keywords)."""
    data = json.loads((root / "annotations" / lang / "annotations.json").read_text(encoding="utf-8"))
    table = data["annotations"]["annotations"]
    return {k.replace(VS16, ""): (v["tts"][0], clean(v.get("default", [])))
            for k, v in table.items() if v.get("tts")}


def load_emojibase(root: Path, lang: str) -> dict[str, tuple[str, list[str]]]:
    """emojibase-data of one locale, keyed by the emoji without U+FE0F: (label, tags)."""
    rows = json.loads((root / lang / "data.json").read_text(encoding="utf-8"))
    return {char(r["hexcode"]).replace(VS16, ""): (r["label"], clean(r.get("tags", [])))
            for r in rows if r.get("label")}


def annotations(cldr: Path, emojibase: Path, lang: str) -> dict[str, tuple[str, list[str]]]:
    return load_emojibase(emojibase, lang) | load_cldr(cldr, lang)  # CLDR wins where both have a row


def emoji_rows(datasource: Path) -> Iterator[dict]:
    rows = json.loads((datasource / "emoji.json").read_text(encoding="utf-8"))
    for row in sorted(rows, key=lambda r: r["sort_order"]):
        if row.get("has_img_google") and row["category"] not in SKIPPED_CATEGORIES:
            yield row


def load_image(path: Path, size: int) -> np.ndarray:
    """RGBA PNG -> RGB on white -> size x size (Lanczos): uint8 (size, size, 3)."""
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    return np.asarray(rgb.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def build(cache: Path, size: int, languages: list[str]) -> dict[str, np.ndarray]:
    roots = {p: fetch(p, v, cache) for p, v in PACKAGES.items()}
    datasource = roots["emoji-datasource-google"]
    names = {lang: annotations(roots["cldr-annotations-full"], roots["emojibase-data"], lang) for lang in languages}
    columns: dict[str, list] = {k: [] for k in ("codepoints", "images", "group", "subgroup")}
    for lang in languages:
        columns[f"name_{lang}"], columns[f"keywords_{lang}"] = [], []
    for row in emoji_rows(datasource):
        key = char(row["unified"]).replace(VS16, "")
        if key not in names["en"]:
            print(f"skipped {row['unified']} ({row['name']}): no English name", file=sys.stderr)
            continue
        for lang in languages:
            if key not in names[lang]:
                raise SystemExit(f"{row['unified']} ({row['name']}) has no {lang} name in CLDR or emojibase")
            name, keywords = names[lang][key]
            columns[f"name_{lang}"].append(name)
            columns[f"keywords_{lang}"].append("|".join(keywords))
        columns["codepoints"].append(row["unified"].upper())
        columns["group"].append(row["category"])
        columns["subgroup"].append(row["subcategory"])
        columns["images"].append(load_image(datasource / "img" / "google" / "64" / row["image"], size))
    arrays = {k: np.asarray(v) if k != "images" else np.stack(v) for k, v in columns.items()}
    arrays["languages"] = np.asarray(languages)
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like `np.savez_compressed`, with fixed timestamps and order so that equal arrays give equal bytes."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    tmp.replace(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "src/polymodal/datasets/data/emoji.npz")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--languages", default="en,de,fr,es", help="comma-separated CLDR locales, en first")
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder for the npm tarballs (default: a temporary folder, deleted afterwards)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    languages = [s.strip() for s in args.languages.split(",") if s.strip()]
    if not languages or languages[0] != "en":
        raise SystemExit("--languages must start with en (the names the other languages are aligned to)")
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        arrays = build(cache, args.size, languages)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_npz(args.out, arrays)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    args.out.with_suffix(".sha256").write_text(f"{digest}  {args.out.name}\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {len(arrays['codepoints'])} emojis, "
          f"images {arrays['images'].shape}, languages {', '.join(languages)}), sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
