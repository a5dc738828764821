"""Method tests for the uncertainty-aware fusions: tmc (evidence + Dempster-Shafer) and qmf (energy weights)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import make_config
from torch import nn

from polymodal.cli import main

from polymodal.data.batch import Batch
from polymodal.encoders.feedforward import VectorMLP
from polymodal.fusion import FUSIONS
from polymodal.fusion.qmf import LossHistory, rank_regulariser
from polymodal.fusion.tmc import combine, dirichlet_loss, kl_to_uniform, opinion
from polymodal.model import MultimodalModel

K = 3


def model(fusion: str, seed: int = 0) -> MultimodalModel:
    torch.manual_seed(seed)
    encoders = {"image": VectorMLP(4, 8, 8), "audio": VectorMLP(4, 8, 8)}
    fused = FUSIONS.build(fusion, user={"hidden": 8}, in_dims={m: e.out_dim for m, e in encoders.items()})
    return MultimodalModel(encoders, fused, nn.Linear(fused.out_dim, K))


def batch(n: int = 12, audio_present: torch.Tensor | None = None) -> Batch:
    g = torch.Generator().manual_seed(1)
    inputs = {m: {"values": torch.randn(n, 4, generator=g)} for m in ("image", "audio")}
    present = {"image": torch.ones(n, dtype=torch.bool),
               "audio": torch.ones(n, dtype=torch.bool) if audio_present is None else audio_present}
    return Batch(inputs, present, torch.arange(n) % K, torch.arange(n))


def test_dempster_shafer_matches_the_rule_by_hand() -> None:
    b1, u1 = torch.tensor([[0.6, 0.2, 0.0]]), torch.tensor([[0.2]])
    b2, u2 = torch.tensor([[0.1, 0.5, 0.0]]), torch.tensor([[0.4]])
    conflict = 0.6 * 0.5 + 0.2 * 0.1  # sum over i != j of b1_i b2_j
    b, u = combine(b1, u1, b2, u2)
    expected = torch.tensor([[0.6 * 0.1 + 0.6 * 0.4 + 0.1 * 0.2, 0.2 * 0.5 + 0.2 * 0.4 + 0.5 * 0.2, 0.0]])
    assert torch.allclose(b, expected / (1 - conflict)) and torch.allclose(u, torch.tensor([[0.08 / (1 - conflict)]]))
    assert torch.allclose(b.sum() + u.sum(), torch.tensor(1.0))  # still an opinion


def test_vacuous_opinion_is_the_identity_and_missing_is_vacuous() -> None:
    b, u = opinion(torch.tensor([[4.0, 1.0, 0.0]]), torch.tensor([True]))
    assert torch.allclose(u, torch.tensor([[3 / 8]]))
    vb, vu = opinion(torch.tensor([[float("nan")] * 3]), torch.tensor([False]))
    assert (vb == 0).all() and (vu == 1).all()
    cb, cu = combine(b, u, vb, vu)
    assert torch.allclose(cb, b) and torch.allclose(cu, u)


def test_kl_to_uniform_is_zero_at_uniform_and_loss_prefers_right_evidence() -> None:
    assert torch.allclose(kl_to_uniform(torch.ones(2, K)), torch.zeros(2), atol=1e-6)
    target = torch.tensor([0])
    right, wrong = torch.tensor([[20.0, 1.0, 1.0]]), torch.tensor([[1.0, 20.0, 1.0]])
    assert dirichlet_loss(right, target, 1.0) < dirichlet_loss(wrong, target, 1.0)


def test_tmc_agreeing_modalities_lower_uncertainty_and_missing_one_is_ignored() -> None:
    fusion = FUSIONS.build("tmc", in_dims={"image": 4, "audio": 4})
    logits = {"image": torch.tensor([[5.0, -5.0, -5.0]] * 2), "audio": torch.tensor([[4.0, -5.0, -5.0]] * 2)}
    present = {"image": torch.tensor([True, True]), "audio": torch.tensor([True, False])}
    d = fusion.decide(torch.zeros(2, K), logits, present)
    alpha = d.logits.exp()
    u_combined = K / alpha.sum(1)
    assert u_combined[0] < d.uncertainty["image"][0] and u_combined[0] < d.uncertainty["audio"][0]
    assert torch.isnan(d.uncertainty["audio"][1])
    logits["audio"][1] = float("nan")
    alone = fusion.decide(torch.zeros(2, K), logits, present)
    only_image = fusion.decide(torch.zeros(2, K), {"image": logits["image"], "audio": logits["image"]},
                               {"image": present["image"], "audio": torch.tensor([False, False])})
    assert torch.isfinite(alone.logits).all() and torch.allclose(alone.logits[1], only_image.logits[1])


def test_qmf_weights_follow_energy_and_missing_weight_is_zero() -> None:
    fusion = FUSIONS.build("qmf", in_dims={"image": 4, "audio": 4})
    logits = {"image": torch.tensor([[6.0, 0.0, 0.0]] * 2), "audio": torch.tensor([[float("nan"), 0.0, 0.0]] * 2)}
    present = {"image": torch.tensor([True, True]), "audio": torch.tensor([False, False])}
    w = fusion.weights(logits, present)
    assert torch.allclose(w["image"], torch.logsumexp(logits["image"], 1) / 10) and (w["audio"] == 0).all()
    d = fusion.decide(torch.zeros(2, K), logits, present)
    assert torch.allclose(d.logits, w["image"][:, None] * logits["image"])
    assert torch.isnan(d.uncertainty["audio"]).all()
    assert torch.allclose(d.uncertainty["image"], -torch.logsumexp(logits["image"], 1))


def test_rank_regulariser_penalises_only_misordered_pairs() -> None:
    history = torch.tensor([0.0, 1.0])  # record 0 has the lower loss: it should get the higher weight
    valid = torch.tensor([True, True])
    assert rank_regulariser(torch.tensor([2.5, 1.0]), history, valid) == 0  # ordered with margin 1
    assert rank_regulariser(torch.tensor([1.0, 2.0]), history, valid) > 0
    assert rank_regulariser(torch.tensor([1.0, 2.0]), history, torch.tensor([False, False])) == 0


def test_loss_history_accumulates_and_normalises() -> None:
    h = LossHistory()
    h.update(torch.tensor([0, 2]), torch.tensor([1.0, 3.0]))
    h.update(torch.tensor([0]), torch.tensor([1.0]))
    assert torch.allclose(h.normalised(torch.tensor([0, 2, 7])), torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize(("name", "losses"), [("tmc", {"evidential"}), ("qmf", {"unimodal", "rank"})])
def test_training_step_has_target_losses_and_eval_has_uncertainty(name: str, losses: set[str]) -> None:
    m = model(name).train()
    out = m(batch())
    assert losses <= set(out.aux_losses) and all(torch.isfinite(v) for v in out.aux_losses.values())
    total = sum(out.aux_losses.values()) + nn.functional.cross_entropy(out.logits, batch().target)
    total.backward()
    assert all(p.grad is not None for p in m.encoders.parameters())
    m.eval()
    present = torch.tensor([True, False] * 6)
    with torch.no_grad():
        clean, planted = m(batch(audio_present=present)), None
        b = batch(audio_present=present)
        b.inputs["audio"]["values"][~present] = float("nan")
        planted = m(b)
    assert not planted.aux_losses and set(planted.uncertainty) == {"image", "audio"}
    assert torch.allclose(clean.logits, planted.logits) and torch.isfinite(planted.logits).all()
    assert torch.isnan(planted.uncertainty["audio"][~present]).all()
    assert torch.isfinite(planted.uncertainty["audio"][present]).all()


def test_listed_and_compare_trains_them(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "fusions"]) == 0 and {"tmc", "qmf"} <= set(capsys.readouterr().out.split())
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(make_config(data_dir, tmp_path / "run", ["emb", "specs"], epochs=1)))
    out = tmp_path / "cmp"
    assert main(["compare", str(cfg), "--fusions", "tmc,qmf", "--seeds", "1", "--no-unimodal", "--out", str(out)]) == 0
    runs = pd.read_csv(out / "comparison.csv")
    assert sorted(runs["model"]) == ["qmf", "tmc"] and runs["accuracy"].between(0, 1).all()
