"""Per-record modality reliability (Mahalanobis on encoder features, calibrated on validation) and the
shifted-modality evaluation, from the statistics up to the Predictor, the CLI and the server."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_config
from fastapi.testclient import TestClient
from safetensors.numpy import save_file

from polymodal.cli import main
from polymodal.config import parse_config
from polymodal.data.sources import Table
from polymodal.encoders.cnn import ImageCNN
from polymodal.evaluation.contribution import split_dataset
from polymodal.evaluation.inference import predict_outputs
from polymodal.evaluation.reliability import (
    POOLED,
    RELIABILITY,
    STATS,
    detection_auroc,
    fit_modality,
    fit_reference,
    load_reliability,
    mahalanobis,
    modality_reliability,
    p_value,
    record_distance,
    write_reliability,
)
from polymodal.evaluation.shifted import references, shifted_modality
from polymodal.output import Output
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


def output_of(features: dict[str, np.ndarray], stats: dict[str, np.ndarray] | None = None) -> Output:
    n = len(next(iter(features.values())))
    return Output(logits=torch.zeros(n, 2), fused=torch.zeros(n, 2),
                  features={m: torch.as_tensor(f) for m, f in features.items()},
                  stats={m: torch.as_tensor(f) for m, f in (stats or {}).items()})


def test_calibration_round_trips_in_compact_tensors(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    feats = {"wide": rng.normal(size=(300, 256)), "a.b": rng.normal(size=(50, 4))}
    stats = {"wide": rng.normal(size=(300, 16))}  # "a.b": an encoder without stats
    refs = {m: fit_modality({POOLED: f, **({STATS: stats[m]} if m in stats else {})}, np.arange(len(f)) % 3)
            for m, f in feats.items()}
    write_reliability(tmp_path, refs)
    loaded = load_reliability(tmp_path)
    assert set(loaded) == set(refs) and set(loaded["wide"].views) == {POOLED, STATS}
    out = output_of(feats, stats)
    for m, ref in refs.items():
        assert np.array_equal(record_distance(loaded[m], out, m), record_distance(ref, out, m))
        assert loaded[m].threshold == ref.threshold and np.array_equal(loaded[m].distances, ref.distances)
    # a (256, 256) precision in float32 plus means and distances; as JSON text it took over 1 MB
    assert (tmp_path / RELIABILITY).stat().st_size < 300_000


def test_a_file_with_the_pooled_view_only_gives_the_pooled_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    val, test = rng.normal(size=(200, 6)), rng.normal(size=(20, 6)) * 1.5
    old = fit_reference(val, np.arange(200) % 2)
    save_file(old.arrays("photo"), str(tmp_path / RELIABILITY))  # as written before the stats view existed
    ref = load_reliability(tmp_path)["photo"]
    assert set(ref.views) == {POOLED} and ref.threshold == old.threshold
    out = output_of({"photo": test}, {"photo": rng.normal(size=(20, 8)) + 50})  # stats now come, but unused
    frame = modality_reliability({"photo": ref}, out, {"photo": np.ones(20, dtype=bool)})["photo"]
    assert np.array_equal(frame["distance"], mahalanobis(old, test))
    assert np.array_equal(frame["reliability"], p_value(old, mahalanobis(old, test)))
    assert np.array_equal(frame["ood"], mahalanobis(old, test) > old.threshold)


def test_the_score_reads_the_stats_view_where_there_is_one_and_keeps_five_percent_false_alarms() -> None:
    rng = np.random.default_rng(3)
    pooled, stats = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 3)) * 10
    ref = fit_modality({POOLED: pooled[:1000], STATS: stats[:1000]}, np.zeros(1000, dtype=np.int64))
    clean = output_of({"m": pooled[1000:]}, {"m": stats[1000:]})
    assert 0.03 <= (record_distance(ref, clean, "m") > ref.threshold).mean() <= 0.07
    low_level = output_of({"m": pooled[1000:]}, {"m": stats[1000:] + 60})  # pooled features unchanged
    assert (record_distance(ref, low_level, "m") > ref.threshold).mean() > 0.99
    high_level = output_of({"m": pooled[1000:] + 6}, {"m": stats[1000:]})  # what only the pooled view sees
    assert np.array_equal(record_distance(ref, high_level, "m"), record_distance(ref, clean, "m"))


def test_first_layer_statistics_flag_image_noise_that_leaves_pooled_features_typical() -> None:
    """A CNN whose pooled features stay typical under noise (here: made equal to the clean ones) still flags
    noisy images through its first convolution's statistics; in distribution, few false alarms."""
    torch.manual_seed(0)
    encoder = ImageCNN(in_channels=1, out_dim=8, width=4, blocks=1).eval()
    smooth = torch.nn.functional.avg_pool2d(torch.rand(400, 1, 20, 20), 5, 1, 2, count_include_pad=False)
    images = smooth[:, :, 2:18, 2:18]  # (N, 1, 16, 16) in-distribution images
    noisy = images[300:] + 0.3 * torch.randn(100, 1, 16, 16)
    with torch.no_grad():
        val, test, shifted = encoder({"pixels": images[:300]}), encoder({"pixels": images[300:]}), \
            encoder({"pixels": noisy})
    ref = fit_modality({POOLED: val.pooled.double().numpy(), STATS: val.stats.double().numpy()},
                       np.zeros(300, dtype=np.int64))
    clean = output_of({"image": test.pooled.numpy()}, {"image": test.stats.numpy()})
    noise = output_of({"image": test.pooled.numpy()}, {"image": shifted.stats.numpy()})
    clean_d, noise_d = record_distance(ref, clean, "image"), record_distance(ref, noise, "image")
    assert detection_auroc(clean_d, noise_d) > 0.95 and (noise_d > ref.threshold).mean() > 0.9
    assert (clean_d > ref.threshold).mean() < 0.15


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
    assert far.flagged == 1.0 and far.false_alarms < 0.5  # every far record over the ood line, few clean ones
    assert rows.auroc.between(0, 1).all() and rows.score.between(0, 1).all()
    assert rows.flagged.between(0, 1).all() and (rows.groupby("modality").false_alarms.nunique() == 1).all()


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


def test_outputs_carry_stats_outside_training_only(run_dir: Path) -> None:
    from polymodal.data.dataset import make_loader, to_model_inputs

    run = load_run(run_dir)
    val = split_dataset(run, "val")
    out, _ = predict_outputs(run.model, run.processors, val)
    assert set(out.stats) == {"photo"} and out.stats["photo"].shape == (len(val), 16)  # emb's MLP gives none
    batch = to_model_inputs(next(iter(make_loader(val, 4, shuffle=False))), run.processors, train=False)
    assert run.model.train()(batch).stats == {}
    refs = load_reliability(run_dir)
    assert set(refs["photo"].views) == {POOLED, STATS} and set(refs["emb"].views) == {POOLED}


def test_a_run_calibrated_before_the_stats_view_is_recalibrated_for_shift_evaluation(
        run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polymodal.evaluation.shifted as shifted

    refs = load_reliability(run_dir)
    copy = tmp_path / "old"
    shutil.copytree(run_dir, copy)
    save_file({k: v for m, r in refs.items() for k, v in r.pooled.arrays(m).items()}, str(copy / RELIABILITY))
    assert set(load_reliability(copy)["photo"].views) == {POOLED}
    redone = references(load_run(copy))
    assert set(redone["photo"].views) == {POOLED, STATS}
    assert np.allclose(redone["photo"].distances, refs["photo"].distances)  # the same validation split
    def no_calibration(*args: object, **kwargs: object) -> None:
        raise AssertionError("a calibration with both views was made again")

    monkeypatch.setattr(shifted, "calibrate", no_calibration)
    stored = references(load_run(run_dir))["photo"]  # stored with both views: used as is
    assert np.array_equal(stored.views[STATS].means, refs["photo"].views[STATS].means)


def test_outputs_without_stats_are_scored_on_the_pooled_view_in_the_combined_units() -> None:
    rng = np.random.default_rng(4)
    pooled, stats = rng.normal(size=(600, 4)), rng.normal(size=(600, 3))
    ref = fit_modality({POOLED: pooled[:500], STATS: stats[:500]}, np.zeros(500, dtype=np.int64))
    got = record_distance(ref, output_of({"m": pooled[500:]}), "m")  # e.g. a frozen encoder's stored outputs
    assert np.allclose(got, mahalanobis(ref.pooled, pooled[500:]) / ref.pooled.threshold)
