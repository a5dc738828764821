"""Issue 12 item 7: every failure a user can cause is one message and exit 2 (the traceback only with --debug)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from conftest import make_config

from polymodal.cli import main


def write(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("trust_cli")
    assert main(["train", str(write(tmp / "cfg.yaml", make_config(data_dir, tmp / "run", ["title", "specs"],
                                                                  epochs=1)))]) == 0
    return tmp / "run"


def fails_cleanly(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err, err


@pytest.mark.parametrize("damage", ["flip", "pickle"])
def test_damaged_weights(run: Path, data_dir: Path, tmp_path: Path, damage: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    weights = copy / "model.safetensors"
    if damage == "flip":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
    else:
        torch.save({"anything": 1}, weights)
    fails_cleanly(["predict", str(copy), "--data", str(data_dir / "data.parquet"), "--out", str(tmp_path / "p.csv")],
                  "does not match the run's manifest", capsys)


def test_truncated_last_checkpoint_on_resume(run: Path, data_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    last = copy / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:2000])
    cfg = write(tmp_path / "cfg.yaml", make_config(data_dir, copy, ["title", "specs"], epochs=1))
    fails_cleanly(["train", str(cfg), "--resume"], "cannot be read", capsys)
    fails_cleanly(["train", str(cfg)], "already exists; pass --overwrite", capsys)


def test_zero_rows_predict(run: Path, data_dir: Path, tmp_path: Path) -> None:
    pd.read_parquet(data_dir / "data.parquet").head(0).to_csv(tmp_path / "none.csv", index=False)
    assert main(["predict", str(run), "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 0


def test_configuration_and_data_mistakes(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_parquet(data_dir / "data.parquet")
    frame.head(0).to_csv(tmp_path / "header.csv", index=False)
    cfg = make_config(data_dir, tmp_path / "run", ["title", "specs"], epochs=1)
    header = cfg | {"data": {"source": str(tmp_path / "header.csv")}}
    fails_cleanly(["train", str(write(tmp_path / "a.yaml", header))], "no training records", capsys)
    strings = cfg | {"target": {"field": "label", "task": "regression"}}
    fails_cleanly(["train", str(write(tmp_path / "b.yaml", strings))], "no numeric value", capsys)
    wrong_type = yaml.safe_load(yaml.safe_dump(cfg))
    wrong_type["modalities"]["title"]["encoder"]["out_dim"] = "big"
    fails_cleanly(["train", str(write(tmp_path / "c.yaml", wrong_type))], "option out_dim='big' is not a valid int",
                  capsys)
    wrong_range = yaml.safe_load(yaml.safe_dump(cfg))
    wrong_range["fusion"]["hidden"] = -4
    fails_cleanly(["train", str(write(tmp_path / "d.yaml", wrong_range))], "fusion 'concat' cannot be built", capsys)
    with pytest.raises(Exception):  # noqa: B017  (whatever it is, --debug lets it through)
        main(["train", str(tmp_path / "c.yaml"), "--debug"])
