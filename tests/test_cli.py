"""The command line: train, evaluate, predict, validate, list, schema, datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_config

from polymodal.cli import main
from polymodal.fusion import FUSIONS


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_evaluate_predict(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", make_config(data_dir, tmp_path / "run", ["photo", "title"], epochs=2))
    assert main(["train", str(cfg)]) == 0
    assert "run directory" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(data_dir / "data.parquet")]) == 0
    assert "accuracy=" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "eval_data.json").read_text())["accuracy"] >= 0
    assert main(["evaluate", str(tmp_path / "run")]) == 0  # the run's own test split
    out = tmp_path / "preds.csv"
    assert main(["predict", str(tmp_path / "run"), "--data", str(data_dir / "data.parquet"), "--out", str(out)]) == 0
    preds = pd.read_csv(out)
    assert list(preds.columns)[:6] == ["row", "prediction", "p_x", "p_y", "p_z", "no_input"] and len(preds) == 60
    assert {"reliability_photo", "ood_photo", "reliability_title", "ood_title"} <= set(preds.columns)


def test_validate_lists_every_problem_with_row_and_field(data_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_parquet(data_dir / "data.parquet")
    frame["split"] = ["train"] * 40 + ["val"] * 10 + ["test"] * 10
    frame["price"] = frame["price"].astype(object)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "corrupt.png").write_bytes(b"\x89PNG broken")
    frame.loc[1, "photo"] = str(tmp_path / "img" / "corrupt.png")
    frame.loc[2, "sound"] = "wav/missing.wav"
    frame.loc[3, "title"] = ""
    frame.loc[4, "label"] = None
    frame.loc[5, "price"] = "cheap"
    frame.loc[6, "emb"] = "[1.0, 2.0]"
    frame.loc[45, "label"] = "w"
    frame.to_csv(tmp_path / "data.csv", index=False)
    for sub in ("img", "wav", "seq"):  # copies: symlinks leading out of the data folder are refused
        shutil.copytree(data_dir / sub, tmp_path / sub, dirs_exist_ok=True)
    cfg = make_config(tmp_path, tmp_path / "run")
    cfg["data"] = {"source": str(tmp_path / "data.csv"), "split": {"column": "split"}}
    code = main(["validate", str(write_config(tmp_path / "cfg.yaml", cfg)), "--all"])
    out = capsys.readouterr().out
    assert code == 1
    for expected in ("train row 1, field 'photo': cannot decode image", "train row 2, field 'sound'",
                     "missing.wav' does not exist", "train row 3, field 'title': empty",
                     "warn  train row 4, field 'label': no label: the record is left out", "train row 5, field 'specs'",
                     "'price' holds 'cheap'", "train row 6, field 'emb': vector has 2 values",
                     "val row 45, field 'label': label 'w' does not occur"):
        assert expected in out, expected
    assert "warn  val row 45, field 'label': label 'w' does not occur" in out  # a warning, not an error
    assert "4 error(s)" in out and "training would stop" in out
    assert "train, field 'label': 1 record(s) without a label left out" in out
    assert "train: 40 records, 35 usable" in out  # failed records are not usable; the unlabelled one is left out


def test_validate_clean_data_exits_zero(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", make_config(data_dir, tmp_path / "run"))
    assert main(["validate", str(cfg)]) == 0
    assert "0 error(s)" in capsys.readouterr().out


def test_bad_config_gets_a_message_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", {"data": {"source": "x.csv"}, "modalities": {"a": {"type": "text"}},
                                                "target": {"field": "y", "task": "multiclass"},
                                                "training": {"epocs": 3}})
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "training.epocs: unknown key" in err and "epochs" in err


def test_list_schema_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "fusions"]) == 0
    assert capsys.readouterr().out.split() == FUSIONS.names()
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "encoders:" in listing and "image_cnn" in listing and "multiclass" in listing
    assert main(["schema"]) == 0
    assert "modalities" in json.loads(capsys.readouterr().out)["properties"]
    assert main(["datasets", "list"]) == 0
    assert "av_digits" in capsys.readouterr().out


def test_train_no_report_writes_no_report(data_dir: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", make_config(data_dir, tmp_path / "run", ["photo", "title"], epochs=1))
    assert main(["train", str(cfg), "--no-report"]) == 0
    assert (tmp_path / "run" / "metrics.json").is_file() and not (tmp_path / "run" / "report.html").exists()


HEAVY = ["polymodal.training.loop", "torchmetrics", "matplotlib", "transformers", "scipy"]


def loaded_of(statement: str, names: list[str]) -> list[str]:
    """Which of `names` a fresh interpreter has imported after running `statement`."""
    import subprocess
    import sys

    code = f"import sys\n{statement}\nprint('loaded:', *(n for n in {names!r} if n in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1].split()[1:]


def test_list_does_not_import_the_training_loop_or_heavy_packages() -> None:
    assert loaded_of("from polymodal.cli import main; main(['list', 'fusions'])", HEAVY) == []


def test_reading_a_run_does_not_import_the_training_loop_or_heavy_packages() -> None:
    assert loaded_of("import polymodal.training.fit, polymodal.evaluation.report, polymodal.predictor", HEAVY) == []
