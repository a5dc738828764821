"""Issue 12, data: paths confined to the data folder, float32-finite numbers, missing values and labels, 0 rows,
records with no input, and the messy-table check."""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from conftest import make_config, make_records
from PIL import Image

from polymodal.cli import main
from polymodal.config import parse_config
from polymodal.data.validate import validate
from polymodal.errors import DataError
from polymodal.predictor import Predictor
from polymodal.training.fit import train

ESCAPE = "leads outside the data folder"


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A data folder with 30 records (files under it) and, beside it, a readable image outside it."""
    data = tmp_path / "data"
    make_records(data, n=30).to_csv(data / "data.csv", index=False)
    (tmp_path / "outside").mkdir()
    Image.fromarray(np.zeros((12, 12), dtype=np.uint8)).save(tmp_path / "outside" / "secret.png")
    return data


def config(data: Path, table: str = "data.csv", mods: tuple[str, ...] = ("photo", "title", "specs"),
           **data_options: Any):  # type: ignore[no-untyped-def]
    cfg = make_config(data, data.parent / "run", list(mods), epochs=1)
    cfg["data"] = {"source": str(data / table), "split": {"ratios": [0.6, 0.2, 0.2], "seed": 0}, **data_options}
    return parse_config(cfg)


def plant_escapes(data: Path) -> dict[int, str]:
    frame = pd.read_csv(data / "data.csv")
    (data / "img" / "link.png").symlink_to(data.parent / "outside" / "secret.png")
    planted = {0: "../outside/secret.png", 1: "../outside/no_such_file.png",
               2: str(data.parent / "outside" / "secret.png"), 3: "img/link.png", 4: "img/../../outside/secret.png"}
    for row, path in planted.items():
        frame.loc[row, "photo"] = path
    frame["split"] = "train"
    frame.loc[20:24, "split"], frame.loc[25:, "split"] = "val", "test"
    frame.to_csv(data / "data.csv", index=False)
    return planted


@pytest.fixture()
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path Pillow is asked to open."""
    calls: list[str] = []
    real = Image.open

    def spy(fp: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(fp))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    return calls


def test_paths_outside_the_data_folder_are_refused_unopened(folder: Path, opened: list[str]) -> None:
    planted = plant_escapes(folder)
    cfg = config(folder, split={"column": "split"})
    report = validate(cfg)
    refused = {p.row: str(p) for p in report.problems if ESCAPE in p.message}
    assert sorted(refused) == sorted(planted)
    for row, message in refused.items():
        assert f"train row {row}, field 'photo'" in message and "data.allow_outside_root: true" in message
        assert "exist" not in message  # the same words whether or not the file is there
    with pytest.raises(DataError, match=ESCAPE):
        train(cfg)
    assert not any("/outside/" in p or "link.png" in p for p in opened)


def test_predictor_refuses_escapes_and_the_setting_allows_them(folder: Path, tmp_path: Path,
                                                               opened: list[str]) -> None:
    train(config(folder))
    predictor = Predictor.load(tmp_path / "run")
    frame = pd.read_csv(folder / "data.csv").head(3)
    frame.loc[1, "photo"] = "../outside/secret.png"
    frame.to_csv(folder / "new.csv", index=False)
    with pytest.raises(DataError, match=r"input row 1, field 'photo'|new.csv row 1, field 'photo'"):
        predictor.predict(folder / "new.csv")
    with pytest.raises(DataError, match=ESCAPE):
        predictor.predict(frame, root=folder)
    assert not any("/outside/" in p for p in opened)
    plant_escapes(folder)
    allowed = validate(config(folder, split={"column": "split"}, allow_outside_root=True))
    problems = [p for p in allowed.problems if p.fatal]
    assert [p.row for p in problems] == [1] and "does not exist" in problems[0].message  # the others are read


def test_numbers_beyond_float32_are_data_errors(folder: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(folder / "data.csv")
    frame["price"] = frame["price"].astype(object)
    frame.loc[3, "price"] = "1e300"
    frame.loc[3, "emb"] = "[1e300, 0, 0, 0]"
    frame.to_csv(folder / "big.csv", index=False)
    report = validate(config(folder, "big.csv", mods=("specs", "emb"), split={"ratios": [1, 0, 0]}))
    found = {p.field: p.message for p in report.fatal if p.row == 3}
    assert "too large for float32" in found["specs"] and "too large for float32" in found["emb"]
    train(config(folder, mods=("title", "specs")))
    record = pd.read_csv(folder / "data.csv").head(2)
    record.loc[1, "price"] = 1e308
    with pytest.raises(DataError, match=r"row 1, field 'specs'.*too large for float32"):
        Predictor.load(tmp_path / "run").predict(record, root=folder)


def test_missing_numbers_are_warnings_and_unlabelled_records_are_left_out(folder: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    frame = pd.read_csv(folder / "data.csv")
    frame.loc[[2, 21], "price"] = np.nan
    frame.loc[[4, 5], "label"] = np.nan
    frame.to_csv(folder / "data.csv", index=False)
    cfg = config(folder, mods=("title", "specs"), split={"ratios": [1, 0, 0]})
    report = validate(cfg)
    warned = {(p.row, p.field) for p in report.problems if not p.fatal and "'price' is empty" in p.message}
    assert warned == {(2, "specs"), (21, "specs")} and not report.fatal
    assert {p.row for p in report.problems if "no label" in p.message} == {4, 5}
    with caplog.at_level(logging.WARNING):
        result = train(config(folder, mods=("title", "specs")))
    assert "without a label left out" in caplog.text
    assert sum(result.skipped.values()) == 2


def test_single_class_validation_split_is_named(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    frame = pd.read_csv(folder / "data.csv")
    frame["split"] = ["train"] * 24 + ["val"] * 6
    frame.loc[24:, "label"] = "x"
    frame.to_csv(folder / "data.csv", index=False)
    report = validate(config(folder, mods=("title",), split={"column": "split"}))
    assert any(p.split == "val" and "every record of the val split has class 'x'" in p.message
               for p in report.problems)
    with caplog.at_level(logging.WARNING):
        train(config(folder, mods=("title",), split={"column": "split"}))
    assert "val split has class 'x'" in caplog.text


@pytest.fixture(scope="module")
def every_modality(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    out = tmp_path_factory.mktemp("trust_data") / "run"
    train(parse_config(make_config(data_dir, out, epochs=1)))
    return Predictor.load(out)


def test_zero_rows_in_zero_rows_out(every_modality: Predictor, data_dir: Path) -> None:
    empty = pd.read_parquet(data_dir / "data.parquet").head(0)
    assert every_modality.predict(empty, root=data_dir).shape == (0,)
    assert list(every_modality.predict_proba(empty, root=data_dir).columns) == ["x", "y", "z"]
    assert every_modality.embed(empty, root=data_dir).shape == (0, 16)
    assert len(every_modality.predict_frame(empty, root=data_dir)) == 0
    with pytest.raises(ValueError, match="no labelled records"):
        every_modality.evaluate(empty, root=data_dir)


def test_records_with_every_modality_empty_are_flagged(every_modality: Predictor, data_dir: Path) -> None:
    frame = pd.read_parquet(data_dir / "data.parquet").head(3)
    for column in ("photo", "sound", "title", "price", "brand", "emb", "track"):
        frame[column] = frame[column].astype(object)
        frame.loc[1, column] = None
    out = every_modality.predict_frame(frame, root=data_dir)
    assert out["no_input"].tolist() == [False, True, False]


def test_cli_full_disk_is_one_message_and_debug_shows_the_traceback(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("polymodal.encoders.pretrained.reference.save_file", full)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(make_config(folder, tmp_path / "run", ["title"], epochs=1)
                                  | {"data": {"source": str(folder / "data.csv")}}))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no space left on device") and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(OSError):
        main(["train", str(cfg), "--debug"])


def write_oddities(data: Path) -> dict[str, int]:
    """Valid but unusual records: they must not be flagged."""
    t = np.arange(44100 // 4) / 44100
    sf.write(data / "wav" / "stereo.wav", np.stack([np.sin(2e3 * t), np.cos(3e3 * t)], axis=1) * 0.3, 44100)
    Image.fromarray(np.full((2048, 2048, 3), 90, dtype=np.uint8)).save(data / "img" / "big.png")
    Image.fromarray(np.full((12, 12), 200, dtype=np.uint8), mode="L").save(data / "img" / "gray.png")
    return {"stereo": 7, "emoji": 8, "big": 9, "gray": 10}


def test_messy_table_every_problem_with_row_and_field(folder: Path, opened: list[str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(folder / "data.csv")
    frame["price"] = frame["price"].astype(object)
    (folder / "img" / "corrupt.png").write_bytes(b"\x89PNG broken")
    (folder / "wav" / "empty.wav").write_bytes(b"")
    planted = {  # row: (field, what the report says)
        0: ("sound", "does not exist"), 1: ("photo", "cannot decode image"), 2: ("sound", "cannot decode audio"),
        3: ("title", "empty: treated as a missing modality"), 4: ("label", "no label"),
        5: ("specs", "'price' holds 'cheap'"), 6: ("specs", "'price' is empty"), 11: ("photo", ESCAPE)}
    frame.loc[0, "sound"], frame.loc[1, "photo"], frame.loc[2, "sound"] = "wav/gone.wav", "img/corrupt.png", "wav/empty.wav"
    frame.loc[3, "title"], frame.loc[4, "label"], frame.loc[5, "price"] = "", None, "cheap"
    frame.loc[6, "price"], frame.loc[11, "photo"] = None, "../outside/secret.png"
    odd = write_oddities(folder)
    frame.loc[odd["stereo"], "sound"] = "wav/stereo.wav"
    frame.loc[odd["emoji"], "title"] = "naïve café 🍎🍐 — 日本語"
    frame.loc[odd["big"], "photo"], frame.loc[odd["gray"], "photo"] = "img/big.png", "img/gray.png"
    frame["split"] = ["train"] * 20 + ["val"] * 5 + ["test"] * 5
    frame.to_csv(folder / "data.csv", index=False)
    cfg = make_config(folder, folder.parent / "run", ["photo", "sound", "title", "specs"])
    cfg["data"] = {"source": str(folder / "data.csv"), "split": {"column": "split"}}
    path = folder.parent / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["validate", str(path), "--all"]) == 1
    out = capsys.readouterr().out
    for row, (field, words) in planted.items():
        line = next((x for x in out.splitlines() if f"train row {row}, field '{field}'" in x), "")
        assert words in line, (row, field, out)
    flagged = {int(x.split(" row ")[1].split(",")[0]) for x in out.splitlines() if " row " in x}
    assert not flagged & set(odd.values()), out
    assert not any("/outside/" in p for p in opened)


def test_data_root_is_where_paths_resolve(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    shutil.move(str(folder / "data.csv"), tmp_path / "tables" / "data.csv")
    cfg = make_config(folder, tmp_path / "run", ["photo", "title"], epochs=1)
    cfg["data"] = {"source": str(tmp_path / "tables" / "data.csv"), "split": {"ratios": [0.6, 0.2, 0.2], "seed": 0}}
    assert {p.field for p in validate(parse_config(cfg)).fatal} == {"photo"}  # img/… is not under tables/
    cfg["data"]["root"] = str(folder)
    assert not validate(parse_config(cfg)).fatal
