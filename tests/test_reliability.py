"""Per-record modality reliability (Mahalanobis on encoder features, calibrated on validation) and the
shifted-modality evaluation, from the statistics up to the Predictor, the CLI and the server."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_config
from fastapi.testclient import TestClient

from polymodal.cli import main
from polymodal.config import parse_config
from polymodal.data.sources import Table
from polymodal.evaluation.reliability import (
    RELIABILITY,
    detection_auroc,
    fit_reference,
    load_reliability,
    mahalanobis,
    p_value,
    write_reliability,
)
from polymodal.evaluation.shifted import shifted_modality
from polymodal.predictor import Predictor
from polymodal.rundir import load_run
from polymodal.serve import ServeSettings, create_app
from polymodal.training.fit import train

MODALITIES = ["photo", "emb"]


def test_reference_flags_far_points_and_keeps_validation_typical() -> None:
    rng = np.random.default_rng(0)
    groups = np.arange(400) % 2
    val = rng.normal(size=(400, 3)) + groups[:, None] * 4.0
    ref = fit_reference(val, groups, quantile=0.95)
    assert 0.03 <= (mahalanobis(ref, val) > ref.threshold).mean() <= 0.07
    near, far = np.array([[0.1, 0.0, 0.0], [4.0, 4.1, 3.9]]), np.array([[30.0, -30.0, 30.0]])
    assert (p_value(ref, mahalanobis(ref, near)) > 0.5).all() and p_value(ref, mahalanobis(ref, far))[0] == 0.0


def test_calibration_round_trips_in_compact_tensors(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    feats = {"wide": rng.normal(size=(300, 256)), "a.b": rng.normal(size=(50, 4))}
    refs = {m: fit_reference(f, np.arange(len(f)) % 3) for m, f in feats.items()}
    write_reliability(tmp_path, refs)
    loaded = load_reliability(tmp_path)
    assert set(loaded) == set(refs)
    for m, ref in refs.items():
        assert np.array_equal(mahalanobis(loaded[m], feats[m]), mahalanobis(ref, feats[m]))
        assert loaded[m].threshold == ref.threshold
    # a (256, 256) precision in float32 plus means and distances; as JSON text it took over 1 MB
    assert (tmp_path / RELIABILITY).stat().st_size < 300_000


def test_detection_auroc() -> None:
    assert detection_auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert detection_auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert detection_auroc(np.ones(4), np.ones(3)) == 0.5  # ties count half
    assert np.isnan(detection_auroc(np.array([np.nan]), np.array([1.0])))


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reliability") / "run"
    train(parse_config(make_config(data_dir, out, MODALITIES, fusion="tmc", epochs=2)))
    return out


def shifted_emb(data_dir: Path, n: int = 12) -> pd.DataFrame:
    frame = pd.read_parquet(data_dir / "data.parquet").head(n).copy()
    frame["emb"] = [list(np.asarray(v) * 40.0 + 25.0) for v in frame["emb"]]  # far outside the training data
    return frame


def test_training_writes_calibration_and_predict_reports_reliability(run_dir: Path, data_dir: Path) -> None:
    assert set(load_reliability(run_dir)) == set(MODALITIES) and (run_dir / RELIABILITY).is_file()
    predictor = Predictor.load(run_dir)
    clean = predictor.predict(pd.read_parquet(data_dir / "data.parquet").head(12), root=data_dir,
                              with_reliability=True)
    assert isinstance(clean, pd.DataFrame) and {"prediction", "reliability_emb", "ood_emb", "distance_emb",
                                                "uncertainty_photo"} <= set(clean.columns)
    assert list(clean["prediction"]) == list(predictor.predict(pd.read_parquet(data_dir / "data.parquet").head(12),
                                                               root=data_dir))
    shifted = predictor.predict(shifted_emb(data_dir), root=data_dir, with_reliability=True)
    assert shifted["ood_emb"].all() and shifted["distance_emb"].min() > clean["distance_emb"].max()
    assert (shifted["reliability_emb"] == 0).all() and clean["reliability_emb"].max() > 0
    assert (shifted["reliability_photo"] == clean["reliability_photo"]).all()  # the other modality is untouched
    assert (shifted["uncertainty_emb"] > 0).all() and (shifted["uncertainty_emb"] <= 1).all()


def test_missing_modality_has_no_reliability(run_dir: Path, data_dir: Path) -> None:
    frame = pd.read_parquet(data_dir / "data.parquet").head(4).copy()
    frame["emb"] = None
    got = Predictor.load(run_dir).predict(frame, root=data_dir, with_reliability=True)
    assert got["reliability_emb"].isna().all() and not got["ood_emb"].any() and got["uncertainty_emb"].isna().all()
    assert got["reliability_photo"].notna().all()


def test_run_without_calibration_says_what_to_do(run_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(run_dir, copy)
    (copy / RELIABILITY).unlink()
    with pytest.raises(FileNotFoundError, match="train the run again"):
        Predictor.load(copy).predict(pd.read_parquet(data_dir / "data.parquet").head(2), root=data_dir,
                                     with_reliability=True)


def test_cli_predictions_file_and_server_carry_reliability(run_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run_dir), "--data", str(data_dir / "data.parquet"), "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert {"prediction", "p_x", "reliability_photo", "ood_emb"} <= set(written.columns)
    record = {"photo": base64.b64encode((data_dir / "img" / "0.png").read_bytes()).decode(), "emb": [25.0] * 4}
    with TestClient(create_app(run_dir, ServeSettings()), base_url="http://localhost") as client:
        response = client.post("/predict", json={"records": [record]})
    assert response.status_code == 200, response.text
    got = response.json()["predictions"][0]
    assert set(got["reliability"]) == set(MODALITIES) and got["reliability"]["emb"]["ood"] is True
    assert 0 <= got["reliability"]["photo"]["reliability"] <= 1


def test_shifted_modality_scores_auroc_and_unaffected(run_dir: Path, data_dir: Path) -> None:
    run = load_run(run_dir)
    table = Table(pd.read_parquet(data_dir / "data.parquet").head(30), data_dir, "data")
    held = Table(shifted_emb(data_dir, 30), data_dir, "shifted")
    rows = shifted_modality(run, table, severities=[3], held_out={"far emb": (held, "emb")})
    assert set(rows.modality) == set(MODALITIES) and (rows.severity.isin([0, 3])).all()
    far = rows[rows["shift"] == "far emb"].iloc[0]
    assert far.auroc == 1.0 and far.unaffected_model == "run without emb"
    assert rows.auroc.between(0, 1).all() and rows.score.between(0, 1).all()


def test_robustness_command_writes_the_shifted_section(run_dir: Path, data_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    held = tmp_path / "far.parquet"
    shifted_emb(data_dir, 30).to_parquet(held)
    shutil.copytree(data_dir / "img", tmp_path / "img")  # the held-out table's files, inside its folder
    assert main(["robustness", str(run_dir), "--held-out", f"{held}:emb"]) == 0
    rows = pd.read_csv(run_dir / "shifted_modality.csv")
    assert {"far"} < set(rows["shift"]) and rows[rows["shift"] == "far"].auroc.iloc[0] == 1.0
    assert "## Shifted modality" in (run_dir / "report.md").read_text()
    assert main(["robustness", str(run_dir), "--held-out", f"{held}:sound"]) == 2
    assert "'sound' is not a modality of this run; it has photo, emb" in capsys.readouterr().err
