"""OGM-GE in the paper's form (Peng et al., CVPR 2022, Eq. 10): coefficient, the fused model's per-modality
confidences and the modulation window; the continuous form stays available by name."""

from __future__ import annotations

import math

import pytest
import torch
from test_imbalance import mlp_model, multiclass, vector_batch

from polymodal.config import ImbalanceConfig
from polymodal.encoders.base import EncoderOutput
from polymodal.training.imbalance import Imbalance, grad_norm
from polymodal.training.remedies.base import true_class_probability
from polymodal.training.remedies.ogm_ge import fused_unimodal_logits, in_window, ogm_coefficient, ogm_coefficients


def test_paper_coefficient_is_eq_10() -> None:
    assert ogm_coefficient(3.0, 0.5) == pytest.approx(1 - math.tanh(1.5))  # 1 - tanh(alpha * rho), rho > 1
    assert ogm_coefficient(1.0, 0.5) == ogm_coefficient(0.4, 0.5) == 1.0  # not dominant: unchanged
    assert ogm_coefficient(3.0, 0.5, "continuous") == pytest.approx(1 - math.tanh(1.0))  # the other form
    k = ogm_coefficients({"audio": 0.9, "image": 0.3}, alpha=0.5)
    assert k == pytest.approx({"audio": 1 - math.tanh(0.5 * 3.0), "image": 1.0})


def test_modulation_window_is_the_authors_inclusive_epochs() -> None:
    config = ImbalanceConfig(method="ogm_ge")
    assert (config.ogm_form, config.ogm_start, config.ogm_end) == ("paper", 0, 50)
    with pytest.raises(ValueError, match="ogm_end: 2 is before ogm_start 5"):
        ImbalanceConfig(method="ogm_ge", ogm_start=5, ogm_end=2)
    assert in_window(0, 0, 50) and in_window(50, 0, 50) and not in_window(51, 0, 50)
    assert in_window(1000, 3, None) and not in_window(2, 3, None)


def test_unimodal_logits_come_from_the_fused_model_with_the_others_missing() -> None:
    torch.manual_seed(0)
    model, batch = mlp_model(), vector_batch()
    out = model(batch)
    per = fused_unimodal_logits(model, out.features, batch.present)
    assert model.fusion.training and model.head.training  # evaluation mode for the scores only
    model.eval()
    for m in model.modalities:
        alone = {k: torch.full((batch.size,), k == m) for k in model.modalities}
        encoded = {k: EncoderOutput(x) for k, x in out.features.items()}
        expected = model.head(model.fusion(encoded, alone).fused)
        torch.testing.assert_close(per[m], expected)


def ogm_step(config: ImbalanceConfig, epoch: int) -> tuple[dict[str, float], dict[str, float], Imbalance]:
    """Gradient norms of each encoder before and after one OGM-GE step in `epoch`, on a concat model."""
    torch.manual_seed(0)
    model, task, batch = mlp_model(), multiclass(), vector_batch()
    model.train()
    out = model(batch)
    loss = task.loss(out.logits, batch.target)
    loss.backward()
    before = {m: float(grad_norm(e.parameters())) for m, e in model.encoders.items()}  # type: ignore[arg-type]
    imbalance = Imbalance(model, task, config)
    imbalance.observe_train(batch, out, loss, {})
    imbalance.before_optimizer_step(model, lambda x, op: x, epoch)
    after = {m: float(grad_norm(e.parameters())) for m, e in model.encoders.items()}  # type: ignore[arg-type]
    return before, after, imbalance


def test_paper_form_scales_by_the_fused_models_confidence_ratio_within_the_window() -> None:
    config = ImbalanceConfig(method="ogm_ge", ge_noise=False, alpha=2.0, diagnostics=False)
    before, after, imbalance = ogm_step(config, epoch=0)
    assert not imbalance.probes  # no probes: the confidences are the fused model's
    torch.manual_seed(0)
    model, batch = mlp_model(), vector_batch()
    per = fused_unimodal_logits(model, model(batch).features, batch.present)
    s = {m: true_class_probability(x, batch.target).mean().item() for m, x in per.items()}
    k = ogm_coefficients(s, 2.0)
    assert min(k.values()) < 1.0 and max(k.values()) == 1.0
    for m in before:
        assert after[m] == pytest.approx(k[m] * before[m], rel=1e-5)
    before, after, _ = ogm_step(config.model_copy(update={"ogm_end": 3}), epoch=4)  # past the window
    assert after == pytest.approx(before, rel=1e-7)


def test_continuous_form_modulates_every_epoch_with_probe_confidences() -> None:
    config = ImbalanceConfig(method="ogm_ge", ogm_form="continuous", ge_noise=False, alpha=2.0, diagnostics=False,
                             ogm_end=3)
    before, after, imbalance = ogm_step(config, epoch=10)
    assert set(imbalance.probes) == {"strong", "weak"}
    assert any(after[m] < 0.999 * before[m] for m in before)


def test_paper_form_needs_a_fusion_that_runs_on_pooled_features() -> None:
    model = mlp_model("concat")

    def needs_tokens(features: object, present: object) -> None:
        raise TypeError("this fusion reads tokens")

    model.fusion.forward = needs_tokens  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="ogm_form: continuous"):
        Imbalance(model, multiclass(), ImbalanceConfig(method="ogm_ge"))
