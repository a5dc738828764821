"""One contract battery over every registered fusion method."""

from __future__ import annotations

import pytest
import torch

from polymodal.fusion import FUSIONS
from polymodal.layers import EncoderOutput

DIMS = {"image": 6, "audio": 5, "text": 4}


def features(dims: dict[str, int], b: int = 5, seed: int = 0) -> dict[str, EncoderOutput]:
    g = torch.Generator().manual_seed(seed)
    return {m: EncoderOutput(torch.randn(b, d, generator=g, requires_grad=True)) for m, d in dims.items()}


def all_present(dims: dict[str, int], b: int = 5) -> dict[str, torch.Tensor]:
    return {m: torch.ones(b, dtype=torch.bool) for m in dims}


def build(name: str, dims: dict[str, int], seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return FUSIONS.build(name, in_dims=dims).eval()


@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("name", FUSIONS.names())
def test_shape_finite_and_gradients_reach_every_modality(name: str, n_modalities: int) -> None:
    dims = dict(list(DIMS.items())[:n_modalities])
    fusion = build(name, dims).train()
    feats = features(dims)
    out = fusion(feats, all_present(dims))
    assert out.fused.shape == (5, fusion.out_dim) and torch.isfinite(out.fused).all()
    out.fused.pow(2).sum().backward()
    for m, f in feats.items():
        assert f.pooled.grad is not None and f.pooled.grad.abs().sum() > 0, m


@pytest.mark.parametrize("name", FUSIONS.names())
def test_hidden_sets_the_fused_width(name: str) -> None:
    """Every method takes its output width from the same option, so comparisons can give all one width."""
    dims = dict(list(DIMS.items())[:2])
    torch.manual_seed(0)
    fusion = FUSIONS.build(name, user={"hidden": 24}, in_dims=dims).eval()
    assert fusion.out_dim == 24
    assert fusion(features(dims), all_present(dims)).fused.shape == (5, 24)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_missing_modality_content_has_no_effect(name: str) -> None:
    fusion = build(name, DIMS)
    present = all_present(DIMS)
    present["audio"] = torch.tensor([True, False, True, False, False])
    a, b = features(DIMS), features(DIMS)
    b["audio"].pooled.data[~present["audio"]] = torch.tensor(float("nan"))
    out_a, out_b = fusion(a, present).fused, fusion(b, present).fused
    assert torch.isfinite(out_b).all()
    missing = ~present["audio"]
    assert torch.allclose(out_a[missing], out_b[missing])


@pytest.mark.parametrize("name", FUSIONS.names())
def test_state_dict_round_trip_and_determinism(name: str) -> None:
    fusion, other = build(name, DIMS, seed=0), build(name, DIMS, seed=1)
    feats = features(DIMS)
    other.load_state_dict(fusion.state_dict())
    assert torch.equal(fusion(feats, all_present(DIMS)).fused, other(feats, all_present(DIMS)).fused)
    assert torch.equal(build(name, DIMS, seed=0)(feats, all_present(DIMS)).fused,
                       fusion(feats, all_present(DIMS)).fused)


def test_late_fusion_is_the_mean_of_present_branches() -> None:
    fusion = build("late", DIMS)
    feats = features(DIMS)
    present = all_present(DIMS)
    present["text"] = torch.zeros(5, dtype=torch.bool)
    out = fusion(feats, present)
    assert out.per_modality is not None
    expected = (out.per_modality["image"] + out.per_modality["audio"]) / 2
    assert torch.allclose(out.fused, expected, atol=1e-6)


def test_nothing_present_gives_finite_output() -> None:
    for name in FUSIONS.names():
        fusion = build(name, DIMS)
        none = {m: torch.zeros(5, dtype=torch.bool) for m in DIMS}
        assert torch.isfinite(fusion(features(DIMS), none).fused).all(), name
