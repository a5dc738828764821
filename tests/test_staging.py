"""Built-in dataset folders are written through a per-process staging folder: concurrent writers never share one,
and a complete copy already in place is never removed from under its readers."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pandas as pd
import pytest

from polymodal.datasets.staging import materialize, publish, staging_dir


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


def test_materialize_writes_once_and_reuses_the_complete_copy(tmp_path: Path) -> None:
    root, calls = tmp_path / "data", []

    def write(folder: Path) -> None:
        calls.append(folder)
        _complete_copy(folder / "part", 1)
        pd.DataFrame({"id": [1]}).to_csv(folder / "records.csv", index=False)

    assert materialize(root, write) == root and materialize(root, write) == root
    assert len(calls) == 1 and calls[0] != root and (root / "part" / "records.csv").is_file()


def test_a_failed_write_leaves_no_staging_folder(tmp_path: Path) -> None:
    def write(folder: Path) -> None:
        (folder / "images").mkdir()
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        materialize(tmp_path / "data", write)
    assert list(tmp_path.iterdir()) == []


def test_materialize_checks_for_the_named_table(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "records.csv").parent.mkdir()
    (root / "records.csv").write_text("id\n")  # not the table this dataset completes with
    materialize(root, lambda folder: (folder / "records.parquet").write_text("x"), "records.parquet")
    assert (root / "records.parquet").is_file() and not (root / "records.csv").exists()
