"""Objectives: each one learns on a toy problem, the contrastive loss matches a direct computation, DCCA reaches -k,
drop masks keep a modality per record, and config errors name the objective's key."""

from __future__ import annotations

import copy
import math

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_config
from safetensors.torch import load_file
from torch import nn

from polymodal.config import ConfigError
from polymodal.data.batch import Batch
from polymodal.encoders import ENCODERS
from polymodal.factory import parse_config
from polymodal.fusion import FUSIONS
from polymodal.model import MultimodalModel
from polymodal.objectives import OBJECTIVES, Contrastive
from polymodal.objectives.dcca import total_correlation
from polymodal.objectives.reconstruction import drop_one
from polymodal.output import Output
from polymodal.training.fit import train


def toy_batch(n: int = 64, seed: int = 0) -> Batch:
    """Two modalities that are different noisy linear views of one 4-d latent; a few records miss one."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, generator=g)
    xa = z @ torch.randn(4, 8, generator=g) + 0.1 * torch.randn(n, 8, generator=g)
    xb = z @ torch.randn(4, 6, generator=g) + 0.1 * torch.randn(n, 6, generator=g)
    present = {"a": torch.ones(n, dtype=torch.bool), "b": torch.ones(n, dtype=torch.bool)}
    present["a"][:3] = False
    present["b"][-3:] = False
    return Batch({"a": {"values": xa}, "b": {"values": xb}}, present, None, torch.arange(n))


def toy_model(objective: str, **options: object) -> MultimodalModel:
    encoders = {m: ENCODERS.build("vector_mlp", in_dim=d, out_dim=16, hidden=16, user={"dropout": 0.0})
                for m, d in (("a", 8), ("b", 6))}
    fusion = FUSIONS.build("concat", in_dims={"a": 16, "b": 16}, user={"hidden": 16, "dropout": 0.0})
    obj = OBJECTIVES.build(objective, user=options, in_dims={"a": 16, "b": 16}, fused_dim=16)
    return MultimodalModel(encoders, fusion, nn.Linear(16, 1), {objective: obj})


@pytest.mark.parametrize(("name", "options"), [("contrastive", {"embed_dim": 8}), ("reconstruction", {"hidden": 16}),
                                               ("dcca", {"k": 4})])
def test_each_objective_decreases_on_a_toy_problem(name: str, options: dict) -> None:
    torch.manual_seed(0)
    model, batch = toy_model(name, **options), toy_batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = model.objectives[name](model, batch, model(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < first - 0.05 * abs(first), (first, last)


def test_contrastive_loss_equals_the_symmetric_cross_entropy() -> None:
    obj = Contrastive({"a": 3, "b": 3, "c": 3}, fused_dim=3, embed_dim=3)
    assert obj.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    with torch.no_grad():
        for proj in obj.proj.values():  # identity projections: the embeddings are the normalized features
            proj.weight.copy_(torch.eye(3))
            proj.bias.zero_()
    feats = {"a": torch.tensor([[1.0, 0, 0], [0, 2, 0], [1, 1, 0], [0, 0, 3]]),
             "b": torch.tensor([[2.0, 1, 0], [0, 1, 1], [1, 0, 1], [5, 5, 5]]),
             "c": torch.randn(4, 3)}
    present = {"a": torch.tensor([True, True, True, True]), "b": torch.tensor([True, True, True, False]),
               "c": torch.tensor([True, False, False, False])}  # pairs with c have 1 record: skipped
    out = Output(logits=torch.zeros(4, 1), fused=torch.zeros(4, 3), features=feats)
    loss = obj(None, Batch({}, present, None, torch.arange(4)), out)  # type: ignore[arg-type]

    za = feats["a"][:3].numpy() / np.linalg.norm(feats["a"][:3].numpy(), axis=1, keepdims=True)
    zb = feats["b"][:3].numpy() / np.linalg.norm(feats["b"][:3].numpy(), axis=1, keepdims=True)
    logits = (1 / 0.07) * za @ zb.T

    def cross_entropy(m: np.ndarray) -> float:  # row i's target is column i
        return float(np.mean([-m[i, i] + np.log(np.exp(m[i]).sum()) for i in range(len(m))]))

    assert loss.item() == pytest.approx(0.5 * (cross_entropy(logits) + cross_entropy(logits.T)), rel=1e-5)


def test_logit_scale_above_the_cap_keeps_its_gradient_and_is_clamped_after_the_step() -> None:
    """CLIP's rule: the cap applies to the parameter after each step; a cap inside the forward pass would leave a
    scale above it with zero gradient forever."""
    torch.manual_seed(0)
    model, batch = toy_model("contrastive", embed_dim=8), toy_batch()
    obj = model.objectives["contrastive"]
    with torch.no_grad():
        obj.logit_scale.fill_(math.log(200.0))
    obj(model, batch, model(batch)).backward()
    assert obj.logit_scale.grad is not None and obj.logit_scale.grad.abs().item() > 0
    obj.after_step()
    assert obj.logit_scale.item() == pytest.approx(math.log(100.0))


def test_training_clamps_the_logit_scale_after_each_step(data_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(data_dir, tmp_path / "run", ["emb", "specs"], epochs=1, patience=None)
    cfg["objectives"] = [{"name": "contrastive", "embed_dim": 8, "temperature": 0.001}]  # starts at 1000
    result = train(parse_config(cfg))
    scale = load_file(str(result.run_dir / "model.safetensors"))["objectives.contrastive.logit_scale"]
    assert scale.item() <= math.log(100.0) + 1e-6


def test_dcca_on_perfectly_correlated_inputs_approaches_minus_k() -> None:
    torch.manual_seed(0)
    k = 4
    z = torch.randn(256, k)
    feats = {"a": z, "b": z @ torch.randn(k, k) + 1.0}
    obj = OBJECTIVES.build("dcca", user={"k": k}, in_dims={"a": k, "b": k}, fused_dim=1)
    batch = Batch({}, {m: torch.ones(256, dtype=torch.bool) for m in feats}, None, torch.arange(256))
    out = Output(logits=torch.zeros(256, 1), fused=torch.zeros(256, 1), features=feats)
    opt = torch.optim.Adam(obj.parameters(), lr=1e-2)
    for _ in range(20):
        loss = obj(None, batch, out)  # type: ignore[arg-type]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert -k <= loss.item() < -0.99 * k


def test_total_correlation_of_independent_views_is_small_and_of_equal_views_is_k() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 3, generator=g)
    assert total_correlation(x, x).item() == pytest.approx(3.0, abs=0.01)
    assert total_correlation(x, torch.randn(2000, 3, generator=g)).item() < 0.2


def test_drop_one_keeps_at_least_one_modality_per_record() -> None:
    torch.manual_seed(0)
    present = {"a": torch.tensor([True, True, False, True]), "b": torch.tensor([True, False, True, True]),
               "c": torch.tensor([True, False, False, True])}
    kept = drop_one(present, prob=1.0)
    before = torch.stack(list(present.values()), 1).sum(1)
    after = torch.stack(list(kept.values()), 1).sum(1)
    assert after.tolist() == [2, 1, 1, 2]  # one dropped where 2+ were present, none where only one was
    assert all(bool((kept[m] <= present[m]).all()) for m in present)  # never marks a missing one present
    assert before.tolist() == [3, 1, 1, 3]
    unchanged = drop_one(present, prob=0.0)
    assert all(torch.equal(unchanged[m], present[m]) for m in present)


def test_objectives_are_part_of_the_model_state() -> None:
    model = toy_model("contrastive", embed_dim=8)
    assert "objectives.contrastive.proj.a.weight" in model.state_dict()
    batch = toy_batch(8)
    emb = model(batch).embeddings
    assert emb is not None and emb["a"].shape == (8, 8)
    assert emb["a"][:3].isnan().all() and torch.allclose(emb["a"][3:].norm(dim=1), torch.ones(5))


BASE = {
    "data": {"source": "data.csv"},
    "modalities": {"photo": {"type": "image"}, "caption": {"type": "text"}},
    "target": {"field": "label", "task": "multiclass"},
}


def config_with(objectives: list) -> dict:
    return {**copy.deepcopy(BASE), "objectives": objectives}


def test_objective_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config_with([{"name": "contrastive"}, {"name": "dcca", "kk": 3}]))
    assert "objectives.1" in str(err.value) and "'kk'" in str(err.value) and "ridge" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config(config_with([{"name": "clip"}]))
    assert "objectives.0.name" in str(err.value) and "contrastive, " in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config(config_with([{"name": "dcca"}, {"name": "dcca"}]))
    assert "objectives.1.name" in str(err.value) and "twice" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config(config_with([{"name": "dcca", "weight": -1}]))
    assert "objectives.0.weight" in str(err.value)
    cfg = parse_config(config_with([{"name": "reconstruction", "weight": 0.5, "drop_prob": 0.3}]))
    assert cfg.objectives[0].weight == 0.5 and cfg.objectives[0].options == {"drop_prob": 0.3}
