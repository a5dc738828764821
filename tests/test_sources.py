from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polymodal.config import DataConfig, SplitConfig
from polymodal.data.sources import load_splits, read_table, split_frame


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_read_formats(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "label": ["x", "y", "x"]})
    path = tmp_path / f"t.{fmt}"
    {"csv": lambda: frame.to_csv(path, index=False), "parquet": lambda: frame.to_parquet(path),
     "jsonl": lambda: frame.to_json(path, orient="records", lines=True)}[fmt]()
    assert read_table(path).equals(frame)


def test_folder_layout(tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("L", (4, 4)).save(tmp_path / cls / f"{i}.png")
    frame = read_table(tmp_path)
    assert list(frame.columns) == ["file", "label"]
    assert sorted(frame["label"]) == ["cat", "cat", "dog", "dog"]
    assert frame["file"].iloc[0] == "cat/0.png"


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "t.xyz").write_text("x")
    with pytest.raises(ValueError, match="data.format"):
        read_table(tmp_path / "t.xyz")


def test_split_column_and_bad_values() -> None:
    frame = pd.DataFrame({"s": ["train", "val", "test", "TRAIN"], "label": [0, 1, 0, 1]})
    parts = split_frame(frame, SplitConfig(column="s"), "label")
    assert len(parts["train"]) == 2 and parts["test"].index.tolist() == [2]
    with pytest.raises(ValueError, match="'s' has values \\['dev'\\]"):
        split_frame(frame.assign(s=["train", "dev", "test", "val"]), SplitConfig(column="s"), "label")
    with pytest.raises(ValueError, match="no column 'x'"):
        split_frame(frame, SplitConfig(column="x"), "label")


def test_random_split_is_seeded_stratified_and_disjoint() -> None:
    frame = pd.DataFrame({"label": np.repeat(["a", "b"], [80, 20])})
    split = SplitConfig(ratios=(0.5, 0.25, 0.25), seed=3)
    a, b = split_frame(frame, split, "label"), split_frame(frame, split, "label")
    assert all(a[s].index.equals(b[s].index) for s in a)
    assert sum(len(p) for p in a.values()) == 100
    assert set().union(*[set(p.index) for p in a.values()]) == set(range(100))
    assert (a["train"]["label"] == "b").sum() == 10  # each class split in the same proportions
    other = split_frame(frame, SplitConfig(ratios=(0.5, 0.25, 0.25), seed=4), "label")
    assert not other["train"].index.equals(a["train"].index)


def test_separate_files_per_split(tmp_path: Path) -> None:
    for s in ("train", "test"):
        pd.DataFrame({"label": [1, 2]}).to_csv(tmp_path / f"{s}.csv", index=False)
    tables = load_splits(DataConfig(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv")), "label")
    assert set(tables) == {"train", "test"} and tables["train"].root == tmp_path
