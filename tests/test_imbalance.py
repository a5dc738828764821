"""Modality imbalance: OGM-GE on any encoder, MGDA weights, blending weights, diagnostics, every remedy end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_config
from safetensors.torch import load_file
from torch import nn

from polymodal.config import ImbalanceConfig, TargetConfig
from polymodal.data.batch import Batch
from polymodal.encoders.feedforward import VectorMLP
from polymodal.factory import parse_config
from polymodal.fusion import FUSIONS
from polymodal.model import MultimodalModel
from polymodal.output import Output
from polymodal.predictor import Predictor
from polymodal.tasks import Binary, Multiclass, Regression
from polymodal.training.fit import train
from polymodal.training.imbalance import Imbalance, grad_norm, probe_gradients
from polymodal.training.remedies.base import true_class_probability
from polymodal.training.remedies.grad_blend import blend_weights
from polymodal.training.remedies.mmpareto import min_norm_weight, pareto_combine, pareto_surrogate
from polymodal.training.remedies.ogm_ge import ogm_coefficients

METHODS = ["none", "ogm_ge", "grad_blend", "aux_losses", "mmpareto"]


def mlp_model(fusion: str = "concat") -> MultimodalModel:
    encoders = {"strong": VectorMLP(4, 8, 8), "weak": VectorMLP(4, 8, 8)}
    fused = FUSIONS.build(fusion, user={"hidden": 8}, in_dims={m: e.out_dim for m, e in encoders.items()})
    return MultimodalModel(encoders, fused, nn.Linear(fused.out_dim, 3))


def vector_batch(n: int = 12) -> Batch:
    g = torch.Generator().manual_seed(0)
    target = torch.arange(n) % 3
    inputs = {m: {"values": torch.randn(n, 4, generator=g)} for m in ("strong", "weak")}
    present = {m: torch.ones(n, dtype=torch.bool) for m in inputs}
    return Batch(inputs, present, target, torch.arange(n))


def multiclass() -> Multiclass:
    task = Multiclass(TargetConfig(field="y", task="multiclass"))
    task.fit(["0", "1", "2"])
    return task


@pytest.mark.parametrize("classes", [3, 1])  # softmax cross-entropy; one logit with sigmoid (binary)
def test_closed_form_probe_gradients_match_autograd(classes: int) -> None:
    torch.manual_seed(0)
    probe, x = nn.Linear(5, classes), torch.randn(8, 5)
    target = torch.randint(0, max(classes, 2), (8,))
    present = torch.tensor([True, False, True, True, False, True, True, True])
    x[~present] = float("nan")  # a missing record's garbage must not leak in
    (d_weight, d_bias), true = probe_gradients(probe, x, target, present)
    z = probe(x[present])
    task = multiclass() if classes == 3 else Binary(TargetConfig(field="y", task="binary"))
    loss = task.loss(z, target[present])
    assert torch.allclose(d_weight, torch.autograd.grad(loss, probe.weight, retain_graph=True)[0], atol=1e-6)
    assert torch.allclose(d_bias, torch.autograd.grad(loss, probe.bias)[0], atol=1e-6)
    assert torch.allclose(true[present], true_class_probability(z.detach(), target[present]), atol=1e-6)


def test_continuous_ogm_coefficients_on_hand_made_confidences() -> None:
    k = ogm_coefficients({"audio": 0.9, "image": 0.3}, alpha=0.5, form="continuous")
    assert k["image"] == 1.0  # the weaker modality keeps its gradient
    assert k["audio"] == pytest.approx(1 - math.tanh(0.5 * (0.9 / 0.3 - 1)))
    assert ogm_coefficients({"a": 0.5, "b": 0.5}, 1.0, "continuous") == {"a": 1.0, "b": 1.0}
    three = ogm_coefficients({"a": 0.8, "b": 0.2, "c": 0.2}, 1.0, "continuous")  # a against the mean of the others
    assert three["b"] == three["c"] == 1.0 and three["a"] == pytest.approx(1 - math.tanh(3.0))
    assert ogm_coefficients({"only": 0.7}, 1.0, "continuous") == {"only": 1.0}


def test_ogm_ge_shrinks_the_dominant_mlp_encoders_gradient() -> None:
    model, task, batch = mlp_model(), multiclass(), vector_batch()
    assert not any(p.ndim == 4 for p in model.parameters())  # no convolution anywhere
    out = model(batch)
    loss = task.loss(out.logits, batch.target)
    loss.backward()
    before = {m: float(grad_norm(e.parameters())) for m, e in model.encoders.items()}  # type: ignore[arg-type]
    imbalance = Imbalance(model, task, ImbalanceConfig(method="ogm_ge", ogm_form="continuous", ge_noise=False))
    confident = 10.0 * nn.functional.one_hot(batch.target, 3).float()  # (B, 3): the strong modality is sure
    hand = Output(out.logits, out.fused, out.features, modality_logits={"strong": confident,
                                                                        "weak": torch.zeros(batch.size, 3)})
    imbalance.observe_train(batch, hand, loss, {})
    imbalance.before_optimizer_step(model, lambda x, op: x, 0)
    after = {m: float(grad_norm(e.parameters())) for m, e in model.encoders.items()}  # type: ignore[arg-type]
    p_strong, p_weak = torch.softmax(confident[0], 0)[0].item(), 1 / 3
    k = 1 - math.tanh(0.5 * (p_strong / p_weak - 1))
    assert after["strong"] == pytest.approx(k * before["strong"], rel=1e-5) and k < 0.3
    assert after["weak"] == pytest.approx(before["weak"], rel=1e-6)


def ogm_change(scale: str, strong_sure: bool = True) -> dict[str, torch.Tensor]:
    """The parameter change of one AdamW step of each encoder, with OGM-GE (no noise) scaling `scale`."""
    torch.manual_seed(0)
    model, task, batch = mlp_model(), multiclass(), vector_batch()
    before = {m: torch.cat([p.detach().flatten() for p in e.parameters()]) for m, e in model.encoders.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    out = model(batch)
    loss = task.loss(out.logits, batch.target)
    loss.backward()
    imbalance = Imbalance(model, task, ImbalanceConfig(method="ogm_ge", ogm_form="continuous", ge_noise=False,
                                                      ogm_scale=scale))
    sure = 10.0 * nn.functional.one_hot(batch.target, 3).float() * strong_sure  # (B, 3)
    hand = Output(out.logits, out.fused, out.features, modality_logits={"strong": sure,
                                                                        "weak": torch.zeros(batch.size, 3)})
    imbalance.observe_train(batch, hand, loss, {})
    imbalance.before_optimizer_step(model, lambda x, op: x, 0)
    optimizer.step()
    imbalance.after_optimizer_step(model)
    return {m: torch.cat([p.detach().flatten() for p in e.parameters()]) - before[m] for m, e in model.encoders.items()}


def test_ogm_ge_on_the_step_survives_adam() -> None:
    plain = ogm_change("gradient", strong_sure=False)  # equal confidences: k = 1 everywhere
    on_gradient, on_step = ogm_change("gradient"), ogm_change("step")
    k = 1 - math.tanh(0.5 * (torch.softmax(torch.tensor([10.0, 0, 0]), 0)[0].item() * 3 - 1))
    assert (on_gradient["strong"] - plain["strong"]).norm() < 0.02 * plain["strong"].norm()  # Adam undoes the scale
    assert torch.allclose(on_step["strong"], k * plain["strong"], atol=1e-6)
    assert torch.allclose(on_step["weak"], plain["weak"], atol=1e-7)


def test_min_norm_weights_of_two_gradients() -> None:
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert min_norm_weight(e1, e2) == pytest.approx(0.5)  # orthogonal, equal norms: the middle
    assert min_norm_weight(2 * e1, e2) == pytest.approx(0.2)  # orthogonal: leans to the shorter one
    assert min_norm_weight(e1, -e1) == pytest.approx(0.5)  # opposite: they cancel
    assert min_norm_weight(2 * e1, e1) == 0.0  # aligned: the shorter one alone
    assert min_norm_weight(e1, 2 * e1) == 1.0
    assert min_norm_weight(e1, e1) == 0.5


def test_pareto_combination_sums_without_conflict_and_agrees_with_both_with_conflict() -> None:
    mm, uni = [torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])]
    assert torch.equal(pareto_combine(mm, uni)[0], torch.tensor([2.0, 1.0]))
    mm, uni = [torch.tensor([1.0, 0.2])], [torch.tensor([-0.5, 1.0])]  # cosine < 0
    (g,) = pareto_combine(mm, uni)
    assert g.dot(mm[0]) >= -1e-6 and g.dot(uni[0]) >= -1e-6  # a direction common to both losses
    assert g.norm() >= (mm[0] + uni[0]).norm() - 1e-6  # magnitude: at least that of the plain sum


def test_pareto_surrogate_gives_the_combined_gradient() -> None:
    model, task, batch = mlp_model(), multiclass(), vector_batch()
    heads = nn.ModuleDict({m: nn.Linear(8, 3) for m in model.modalities})
    out = model(batch)
    mm = task.loss(out.logits, batch.target)
    uni = {m: task.loss(h(out.features[m]), batch.target) for m, h in heads.items()}
    params = [*model.parameters(), *heads.parameters()]
    expected = {}
    for m, enc in model.encoders.items():
        own = list(enc.parameters())
        g_mm = torch.autograd.grad(mm, own, retain_graph=True)
        g_uni = torch.autograd.grad(uni[m], own, retain_graph=True)
        expected.update(zip(map(id, own), pareto_combine(list(g_mm), list(g_uni))))
    g_head = torch.autograd.grad(mm, model.head.weight, retain_graph=True)[0]
    pareto_surrogate(model.encoders, params, mm, uni).backward()
    for enc in model.encoders.values():
        for p in enc.parameters():
            assert torch.allclose(p.grad, expected[id(p)], atol=1e-6)
    assert torch.allclose(model.head.weight.grad, g_head, atol=1e-6)  # elsewhere: the plain sum
    assert heads["weak"].weight.grad is not None


def test_blend_weights_from_hand_made_generalisation_and_overfitting() -> None:
    w = blend_weights({"fused": 0.2, "a": 0.1, "b": -0.1}, {"fused": 0.1, "a": 0.1, "b": 0.05})
    assert w == pytest.approx({"fused": 2 / 3, "a": 1 / 3, "b": 0.0})  # G / O^2: 20, 10, and 0 (no gain)
    w = blend_weights({"fused": 0.1, "a": 0.1}, {"fused": 0.2, "a": -0.1})  # O of either sign counts squared
    assert w == pytest.approx({"fused": 0.2, "a": 0.8})
    assert blend_weights({"fused": 0.0, "a": -0.3}, {"fused": 0.1, "a": 0.1}) is None  # no head improved


def test_ogm_ge_needs_a_single_label_task() -> None:
    task = Regression(TargetConfig(field="y", task="regression"))
    task.fit([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="ogm_ge"):
        Imbalance(mlp_model(), task, ImbalanceConfig(method="ogm_ge"))
    assert not Imbalance(mlp_model(), task, ImbalanceConfig()).probes  # diagnostics: gradient norms only


def test_imbalance_config_is_validated() -> None:
    with pytest.raises(ValueError, match="method"):
        ImbalanceConfig(method="ogm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extra"):
        ImbalanceConfig(strength=1.0)  # type: ignore[call-arg]


def test_diagnostics_are_logged_with_three_modalities(data_dir: Path, tmp_path: Path) -> None:
    mods = ["emb", "specs", "track"]
    train(parse_config(make_config(data_dir, tmp_path / "run", mods, epochs=2)))
    log = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv").groupby("epoch").max(numeric_only=True)
    keys = [f"{k}_{m}" for k in ("probe_acc", "grad_norm", "confidence") for m in mods] + ["confidence_ratio"]
    assert set(keys) <= set(log.columns) and len(log) == 2
    assert log[keys].notna().all().all()
    assert ((log[[f"probe_acc_{m}" for m in mods]] >= 0) & (log[[f"probe_acc_{m}" for m in mods]] <= 1)).all().all()
    assert (log["confidence_ratio"] >= 1).all()


@pytest.mark.parametrize("method", METHODS)
def test_each_remedy_trains_end_to_end(data_dir: Path, tmp_path: Path, method: str) -> None:
    options = {"blend_window": 1} if method == "grad_blend" else {"ogm_scale": "step"} if method == "ogm_ge" else {}
    cfg = make_config(data_dir, tmp_path / "run", ["emb", "track", "title"], epochs=2,
                      imbalance={"method": method, **options})
    result = train(parse_config(cfg))
    assert 0.0 <= result.metrics["test"]["accuracy"] <= 1.0
    log = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    assert {"probe_acc_emb", "grad_norm_track"} <= set(log.columns)
    if method == "ogm_ge":
        assert "ogm_coeff_title" in log.columns
    if method == "grad_blend":
        weights = log.filter(like="blend_weight_").dropna()
        assert len(weights.columns) == 4 and weights.sum(1).round(5).eq(1.0).all()


@pytest.mark.parametrize("method", ["grad_blend", "mmpareto", "ogm_ge"])
def test_remedies_use_late_fusion_branches(data_dir: Path, tmp_path: Path, method: str) -> None:
    cfg = make_config(data_dir, tmp_path / "run", ["emb", "specs"], fusion="late", epochs=2,
                      imbalance={"method": method, "diagnostics": method != "ogm_ge"})
    train(parse_config(cfg))
    log = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    if method == "ogm_ge":  # confidences from the branches' own predictions, no probes needed
        assert {"ogm_coeff_emb", "confidence_specs"} <= set(log.columns) and "probe_acc_emb" not in log.columns
    else:
        assert {"train_unimodal_emb", "confidence_specs", "probe_acc_emb"} <= set(log.columns)


def test_a_run_trained_with_a_remedy_predicts_through_the_predictor(data_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(data_dir, tmp_path / "run", ["emb", "specs"], epochs=2, imbalance={"method": "aux_losses"})
    train(parse_config(cfg))
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert not any(k.startswith("imbalance") for k in saved)  # heads and probes stay out of the model
    predictor = Predictor.load(tmp_path / "run")
    frame = pd.read_parquet(data_dir / "data.parquet").head(6)
    labels = predictor.predict(frame, root=data_dir)
    assert len(labels) == 6 and set(labels) <= {"x", "y", "z"}
    assert predictor.evaluate(data_dir / "data.parquet")["accuracy"] >= 0.0


def test_imbalanced_av_digits_is_a_builtin() -> None:
    from polymodal.datasets import DATASETS
    from polymodal.datasets.av_digits import IMBALANCED, Degradation

    assert "av_digits_imbalanced" in DATASETS
    assert IMBALANCED.tag() and Degradation().tag() == ""  # its own cache folder; the default keeps its name
    assert IMBALANCED.snr_db[0] > Degradation().snr_db[1] and IMBALANCED.image_noise > Degradation().image_noise
    cfg = parse_config({"data": {"builtin": "av_digits_imbalanced"}, "modalities": {"audio": {"type": "audio"}},
                        "target": {"field": "label", "task": "multiclass"}})
    assert cfg.training.imbalance.method == "none" and cfg.training.imbalance.diagnostics


def test_probes_of_one_width_step_together_as_each_would_alone() -> None:
    from polymodal.training.imbalance import stacked_probe_gradients

    torch.manual_seed(0)
    probes, x = [nn.Linear(5, 3), nn.Linear(5, 3)], torch.randn(2, 8, 5)
    target, present = torch.randint(0, 3, (8,)), torch.rand(2, 8) > 0.3
    d_weight, d_bias, true = stacked_probe_gradients(torch.stack([p.weight for p in probes]),
                                                     torch.stack([p.bias for p in probes]), x, target, present)
    for i, probe in enumerate(probes):
        (w, b), t = probe_gradients(probe, x[i], target, present[i])
        torch.testing.assert_close(d_weight[i], w)
        torch.testing.assert_close(d_bias[i], b)
        torch.testing.assert_close(true[i], t)
