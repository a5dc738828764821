"""Built-in dataset folders are written through a per-process staging folder: concurrent writers never share one,
and a complete copy already in place is never removed from under its readers."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pandas as pd

from polymodal.datasets.staging import publish, staging_dir


def _complete_copy(folder: Path, rows: int) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame({"id": range(rows)}).to_csv(folder / "records.csv", index=False)
    return folder


def test_each_writer_stages_in_a_folder_of_its_own(tmp_path: Path) -> None:
    root = tmp_path / "data"
    assert staging_dir(root) != staging_dir(root) and staging_dir(root).parent == tmp_path


def test_second_writer_keeps_the_complete_copy_in_place(tmp_path: Path) -> None:
    root = tmp_path / "data"
    publish(_complete_copy(staging_dir(root), 3), root)
    late = _complete_copy(staging_dir(root), 5)
    assert publish(late, root) == root and not late.exists()
    assert len(pd.read_csv(root / "records.csv")) == 3


def test_an_incomplete_copy_is_replaced(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)  # left by an interrupted older version: no records.csv
    publish(_complete_copy(staging_dir(root), 2), root)
    assert len(pd.read_csv(root / "records.csv")) == 2 and not (root / "images").exists()


def _materialize(root: str) -> int:
    from polymodal.datasets.emoji import materialize_emoji

    folder = materialize_emoji(Path(root))
    frame = pd.read_csv(folder / "records.csv", keep_default_na=False)
    return sum(not (folder / p).is_file() for p in frame["image"])


def test_concurrent_materializations_give_one_complete_copy(tmp_path: Path) -> None:
    root = str(tmp_path / "emoji")
    with mp.get_context("spawn").Pool(2) as pool:
        missing = pool.map(_materialize, [root, root])
    assert missing == [0, 0]
    assert [p.name for p in tmp_path.iterdir()] == ["emoji"]  # no staging folder left behind
