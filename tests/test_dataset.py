"""Missing modalities, unreadable-file policies and batch collation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_config, make_records

from polymodal.data.dataset import MultimodalDataset, build_pipeline, decode, fit_raw, raise_on_fatal
from polymodal.data.sources import Table
from polymodal.errors import DataError
from polymodal.factory import parse_config


def prepared(tmp_path: Path, frame: pd.DataFrame, **photo: object):  # type: ignore[no-untyped-def]
    cfg = make_config(tmp_path, tmp_path / "run", ["photo", "title", "specs", "track"])
    cfg["modalities"]["photo"] = {**cfg["modalities"]["photo"], **photo}
    config = parse_config(cfg)
    processors, task = build_pipeline(config)
    table = Table(frame, tmp_path, "train")
    fit_raw(table, processors, task)
    return table, processors, task


def test_empty_fields_are_missing_modalities_not_errors(tmp_path: Path) -> None:
    frame = make_records(tmp_path, n=9)
    frame.loc[1, "photo"] = None
    frame.loc[2, "title"] = "   "
    frame.loc[3, ["price", "brand"]] = [float("nan"), None]
    table, processors, task = prepared(tmp_path, frame)
    decoded = decode(table, processors, task, fit=True)
    raise_on_fatal(decoded)
    ds = MultimodalDataset(decoded, {m: p.ragged for m, p in processors.items()})
    batch = ds.__getitems__(list(range(9)))
    assert batch.present["photo"].tolist()[:3] == [True, False, True]
    assert not batch.present["title"][2] and not batch.present["specs"][3] and batch.present["track"].all()
    assert batch.inputs["track"]["values"].shape == (9, 6, 2) and batch.inputs["track"]["mask"].sum(1).tolist()[:4] == [3, 4, 5, 6]


def test_corrupt_image_policy_error_names_row_and_field(tmp_path: Path) -> None:
    frame = make_records(tmp_path, n=6)
    (tmp_path / "img" / "4.png").write_bytes(b"garbage")
    table, processors, task = prepared(tmp_path, frame)
    with pytest.raises(DataError) as err:
        raise_on_fatal(decode(table, processors, task, fit=True))
    msg = str(err.value)
    assert "train row 4, field 'photo'" in msg and "cannot decode image" in msg and "on_error" in msg


def test_skip_and_missing_policies(tmp_path: Path) -> None:
    frame = make_records(tmp_path, n=6)
    frame.loc[2, "photo"] = "img/does_not_exist.png"
    table, processors, task = prepared(tmp_path, frame, on_error="skip")
    skipped = decode(table, processors, task, fit=True)
    assert skipped.skipped == 1 and skipped.rows == [0, 1, 3, 4, 5] and not skipped.fatal
    table, processors, task = prepared(tmp_path, frame, on_error="missing")
    missing = decode(table, processors, task, fit=True)
    assert missing.rows == list(range(6)) and missing.present["photo"][2] is False


def test_nan_label_names_the_row_and_leaves_the_record_out(tmp_path: Path) -> None:
    frame = make_records(tmp_path, n=6)
    frame.loc[5, "label"] = float("nan")
    table, processors, task = prepared(tmp_path, frame)
    decoded = decode(table, processors, task, fit=True)
    assert not decoded.fatal and decoded.rows == [0, 1, 2, 3, 4] and decoded.unlabelled == 1
    assert [str(p) for p in decoded.problems if "label" in p.field] == [
        "train row 5, field 'label': no label: the record is left out (records without a label are not used for "
        "training or evaluation)"]


def test_missing_column_is_named(tmp_path: Path) -> None:
    frame = make_records(tmp_path, n=6).drop(columns=["title"])
    with pytest.raises(KeyError, match="column 'title' is not in the data"):
        prepared(tmp_path, frame)


def test_batches_are_collated_by_name(tmp_path: Path) -> None:
    frame = make_records(tmp_path, n=6)
    table, processors, task = prepared(tmp_path, frame)
    ds = MultimodalDataset(decode(table, processors, task, fit=True), {m: p.ragged for m, p in processors.items()})
    batch = ds[3]
    assert set(batch.inputs) == {"photo", "title", "specs", "track"} and batch.target.tolist() == [0]
    assert batch.inputs["photo"]["pixels"].dtype == torch.uint8
    assert batch.without({"photo"}).present["photo"].tolist() == [False]
