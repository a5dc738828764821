"""Method tests for `reliable`: a product of temperature-calibrated per-modality experts, each gated per record
by its modality's reliability (Mahalanobis distance of encoder features, calibrated on validation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import make_config
from safetensors.torch import load_file

from polymodal.cli import main
from polymodal.config import parse_config
from polymodal.evaluation.reliability import POOLED, STATS, fit_reference, load_reliability
from polymodal.fusion import FUSIONS
from polymodal.fusion.base import Calibration
from polymodal.fusion.reliable import ReliableFusion, fit_temperature
from polymodal.layers import EncoderOutput
from polymodal.predictor import Predictor
from polymodal.training.fit import train

K = 3
DIMS = {"image": 4, "audio": 4}


def fusion() -> ReliableFusion:
    torch.manual_seed(0)
    built = FUSIONS.build("reliable", in_dims=DIMS).eval()
    assert isinstance(built, ReliableFusion)
    return built


def validation(n: int = 300) -> tuple[Calibration, dict[str, np.ndarray]]:
    """Validation features: two classes as Gaussian blobs per modality, and logits 3x too confident."""
    rng = np.random.default_rng(0)
    target = np.arange(n) % 2
    feats = {m: rng.normal(size=(n, d)) + target[:, None] * 3.0 for m, d in DIMS.items()}
    refs = {m: fit_reference(f, target) for m, f in feats.items()}
    true = torch.randn(n, K, generator=torch.Generator().manual_seed(0)) * 2
    labels = torch.multinomial(F.softmax(true, 1), 1, generator=torch.Generator().manual_seed(1))[:, 0]
    return Calibration(means={m: torch.as_tensor(r.means, dtype=torch.float32) for m, r in refs.items()},
                       precision={m: torch.as_tensor(r.precision, dtype=torch.float32) for m, r in refs.items()},
                       distances={m: torch.as_tensor(r.distances) for m, r in refs.items()},
                       modality_logits={m: true * 3.0 for m in DIMS},
                       present={m: torch.ones(n, dtype=torch.bool) for m in DIMS}, target=labels), feats


def test_uncalibrated_decision_is_the_product_of_present_experts() -> None:
    f = fusion()
    logits = {"image": torch.tensor([[2.0, 0.0, -1.0]] * 2), "audio": torch.tensor([[0.0, 3.0, 0.0], [float("nan")] * 3])}
    present = {"image": torch.tensor([True, True]), "audio": torch.tensor([True, False])}
    d = f.decide(torch.zeros(2, K), logits, present, {m: torch.ones(2) for m in DIMS})
    both = F.log_softmax(logits["image"][0], 0) + F.log_softmax(logits["audio"][0], 0)
    assert torch.allclose(d.logits[0], both) and torch.allclose(d.logits[1], F.log_softmax(logits["image"][1], 0))
    assert torch.isnan(d.uncertainty["audio"][1]) and (d.uncertainty["image"] == 0).all()


def test_temperature_scaling_recovers_the_overconfidence() -> None:
    cal, _ = validation(3000)
    assert fit_temperature(cal.modality_logits["image"], cal.target).item() == pytest.approx(3.0, rel=0.15)


def test_calibrated_gate_shuts_a_shifted_modality_and_keeps_a_typical_one() -> None:
    f = fusion()
    cal, feats = validation()
    f.calibrate(cal)
    typical = {m: EncoderOutput(torch.as_tensor(v[:50], dtype=torch.float32)) for m, v in feats.items()}
    shifted = {"image": typical["image"], "audio": EncoderOutput(typical["audio"].pooled * 8 + 20)}
    present = {m: torch.ones(50, dtype=torch.bool) for m in DIMS}
    w_typical, w_shifted = f(typical, present).reliability, f(shifted, present).reliability
    assert w_typical is not None and w_shifted is not None
    assert w_typical["audio"].median() > 0.9 and (w_shifted["audio"] < 1e-3).all()
    assert torch.equal(w_shifted["image"], w_typical["image"])
    logits = {m: torch.randn(50, K, generator=torch.Generator().manual_seed(2)) for m in DIMS}
    d = f.decide(torch.zeros(50, K), logits, present, w_shifted)
    image_alone = f.decide(torch.zeros(50, K), logits, {**present, "audio": torch.zeros(50, dtype=torch.bool)},
                           w_shifted)
    assert torch.allclose(d.logits, image_alone.logits, atol=1e-3)  # the shifted audio counts as missing
    assert (d.uncertainty["audio"] > 0.999).all()


def test_calibration_survives_a_state_dict_round_trip_into_a_fresh_fusion() -> None:
    f, fresh = fusion(), fusion()
    cal, feats = validation()
    f.calibrate(cal)
    fresh.load_state_dict(f.state_dict())
    x = {m: EncoderOutput(torch.as_tensor(v[:8] * 3, dtype=torch.float32)) for m, v in feats.items()}
    present = {m: torch.ones(8, dtype=torch.bool) for m in DIMS}
    assert fresh.gates["audio"].means.shape == (2, 4) and fresh.gates["audio"].temperature.item() > 1
    assert torch.equal(f(x, present).reliability["audio"], fresh(x, present).reliability["audio"])


def test_training_calibrates_the_saved_run_and_compare_lists_it(data_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "fusions"]) == 0 and "reliable" in capsys.readouterr().out.split()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(make_config(data_dir, tmp_path / "run", ["photo", "emb"], epochs=1)))
    out = tmp_path / "cmp"
    assert main(["compare", str(cfg), "--fusions", "reliable", "--seeds", "1", "--no-unimodal", "--out", str(out)]) == 0
    assert pd.read_csv(out / "comparison.csv")["model"].tolist() == ["reliable"]
    run = tmp_path / "trained"
    train(parse_config(make_config(data_dir, run, ["photo", "emb"], fusion="reliable", epochs=1)))
    weights = load_file(str(run / "model.safetensors"))
    assert weights["fusion.gates.emb.means"].shape[0] == 3  # classes x, y, z: calibrated before saving
    photo = load_reliability(run)["photo"]
    assert set(photo.views) == {POOLED, STATS}  # the image CNN gives first-layer stats; the gate reads pooled only
    assert torch.equal(weights["fusion.gates.photo.means"], torch.as_tensor(photo.pooled.means, dtype=torch.float32))
    assert torch.equal(weights["fusion.gates.photo.precision"], torch.as_tensor(photo.pooled.precision))
    pooled_line = torch.quantile(torch.as_tensor(photo.pooled.distances), 0.95).float()
    assert weights["fusion.gates.photo.threshold"] == pooled_line
    frame = pd.read_parquet(data_dir / "data.parquet").head(12).copy()
    frame["emb"] = [list(np.asarray(v) * 40.0 + 25.0) for v in frame["emb"]]  # far outside the training data
    got = Predictor.load(run).predict(frame, root=data_dir, with_reliability=True)
    assert (got["uncertainty_emb"] > 0.99).all() and (got["ood_emb"]).all()
    alone = Predictor.load(run).predict(frame.assign(emb=None), root=data_dir)
    assert list(got["prediction"]) == list(alone)  # the shifted modality is decided as missing
