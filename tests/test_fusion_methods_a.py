"""Method-specific checks for tensor, low_rank, gated, film, bilinear and multiplicative fusion."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polymodal.fusion import FUSIONS
from polymodal.layers import EncoderOutput

DIMS = {"image": 6, "audio": 5, "text": 4}


def features(dims: dict[str, int], b: int = 5, seed: int = 0) -> dict[str, EncoderOutput]:
    g = torch.Generator().manual_seed(seed)
    return {m: EncoderOutput(torch.randn(b, d, generator=g)) for m, d in dims.items()}


def presence(dims: dict[str, int], b: int = 5, **missing: list[bool]) -> dict[str, torch.Tensor]:
    out = {m: torch.ones(b, dtype=torch.bool) for m in dims}
    out.update({m: torch.tensor(v) for m, v in missing.items()})
    return out


def build(name: str, dims: dict[str, int], seed: int = 0, **options: object) -> nn.Module:
    torch.manual_seed(seed)
    return FUSIONS.build(name, in_dims=dims, user=options).eval()


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["tensor", "low_rank", "gated", "film", "bilinear", "multiplicative"])
def test_nan_in_a_missing_modality_leaves_parameter_gradients_finite(name: str) -> None:
    fusion = build(name, DIMS).train()
    feats = features(DIMS)
    present = presence(DIMS, image=[True, False, True, False, False], audio=[False, True, True, False, False])
    for m in ("image", "audio"):
        feats[m].pooled[~present[m]] = float("nan")
    fusion(feats, present).fused.pow(2).sum().backward()
    for n, p in fusion.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n


def test_low_rank_factors_are_trained_parameters() -> None:
    fusion = build("low_rank", DIMS).train()
    names = {n for n, _ in fusion.named_parameters()}
    assert {f"factors.{m}" for m in DIMS} <= names
    assert fusion.factors["image"].shape == (4, DIMS["image"] + 1, 128)
    before = {m: p.detach().clone() for m, p in fusion.factors.items()}
    opt = torch.optim.Adam(fusion.parameters(), lr=1e-2)
    fusion(features(DIMS), presence(DIMS)).fused.pow(2).mean().backward()
    opt.step()
    for m in DIMS:
        assert not torch.equal(before[m], fusion.factors[m].detach()), m


def test_low_rank_is_far_cheaper_than_tensor_at_three_by_128() -> None:
    dims = {"a": 128, "b": 128, "c": 128}
    tensor, low_rank = build("tensor", dims), build("low_rank", dims)
    # default projected TFN: 3 * (128*16 + 16) + (17**3 * 128 + 128) + (128 * 128 + 128)
    assert n_params(tensor) == 3 * (128 * 16 + 16) + 17 ** 3 * 128 + 128 + 128 * 128 + 128
    assert n_params(low_rank) == 3 * 4 * 129 * 128 + 4 + 128
    assert n_params(low_rank) * 3 < n_params(tensor)
    full_tfn_first_layer = 129 ** 3 * 128  # the unprojected TFN's weight on the full outer product
    assert n_params(low_rank) * 1000 < full_tfn_first_layer


@pytest.mark.parametrize("proj_dim", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_tensor_mlp_input_is_the_outer_product_width(proj_dim: int, n: int) -> None:
    dims = dict(list(DIMS.items())[:n])
    fusion = build("tensor", dims, proj_dim=proj_dim)
    assert fusion.net[0].in_features == (proj_dim + 1) ** n
    assert fusion.product(features(dims), presence(dims)).shape == (5, (proj_dim + 1) ** n)


def test_tensor_missing_modality_keeps_the_other_unimodal_terms() -> None:
    dims = {"image": 6, "audio": 5}
    fusion = build("tensor", dims, proj_dim=3)
    feats = features(dims)
    z = fusion.product(feats, presence(dims, audio=[False] * 5)).view(5, 4, 4)  # (B, p+1 image, p+1 audio)
    h_image = fusion.proj["image"](feats["image"].pooled)
    assert torch.allclose(z[:, :3, 3], h_image) and torch.all(z[:, 3, 3] == 1)
    assert torch.all(z[:, :, :3] == 0)


def test_gates_sum_to_one_over_present_and_missing_gate_is_zero() -> None:
    fusion = build("gated", DIMS)
    present = presence(DIMS, audio=[True, False, True, False, False], text=[True, True, False, False, False])
    present["image"] = torch.tensor([True, True, True, True, False])
    z = fusion.gates(features(DIMS), present)  # (B, 3) in image, audio, text order
    mask = torch.stack([present[m] for m in DIMS], dim=1)
    assert torch.all(z[~mask] == 0) and torch.all(z[mask] > 0)
    assert torch.allclose(z.sum(1), torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0]))
    assert torch.all(fusion(features(DIMS), present).fused[4] == 0)


def test_gated_with_one_present_modality_is_its_tanh_projection() -> None:
    fusion = build("gated", DIMS)
    feats = features(DIMS)
    present = presence(DIMS, audio=[False] * 5, text=[False] * 5)
    expected = torch.tanh(fusion.proj["image"](feats["image"].pooled))
    assert torch.allclose(fusion(feats, present).fused, expected, atol=1e-6)


def test_film_without_conditioning_is_the_identity_modulation() -> None:
    fusion = build("film", DIMS)
    with torch.no_grad():
        fusion.film.bias.fill_(3.0)  # a conditioner that would modulate if it were used
    feats = features(DIMS)
    gamma, beta = fusion.modulation(feats, presence(DIMS, audio=[False] * 5, text=[False] * 5))
    assert torch.all(gamma == 1) and torch.all(beta == 0)
    expected = fusion.act(fusion.net(feats["image"].pooled))
    out = fusion(feats, presence(DIMS, audio=[False] * 5, text=[False] * 5)).fused
    assert torch.allclose(out, expected)
    gamma, beta = fusion.modulation(feats, presence(DIMS))
    assert not torch.all(gamma == 1) and not torch.all(beta == 0)


def test_film_missing_target_uses_the_placeholder_and_one_modality_is_an_mlp() -> None:
    fusion = build("film", DIMS, target="audio")
    assert fusion.conditions == ["image", "text"]
    feats = features(DIMS)
    present = presence(DIMS, audio=[False] * 5)
    feats["audio"].pooled[:] = float("nan")
    with torch.no_grad():
        fusion.placeholder.fill_(0.5)
    gamma, beta = fusion.modulation(feats, present)
    expected = fusion.act(fusion.net(gamma * 0.5 + beta))
    assert torch.allclose(fusion(feats, present).fused, expected)
    single = build("film", {"image": 6})
    x = features({"image": 6})
    assert torch.allclose(single(x, presence({"image": 6})).fused, single.act(single.net(x["image"].pooled)))
    with pytest.raises(ValueError, match="target"):
        build("film", DIMS, target="video")


def test_bilinear_output_has_unit_norm_and_missing_is_identity() -> None:
    fusion = build("bilinear", DIMS, factor=3, hidden=7)
    feats = features(DIMS)
    out = fusion(feats, presence(DIMS, audio=[True, False, True, False, False])).fused
    assert out.shape == (5, 7) and torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
    two = {m: DIMS[m] for m in ("image", "text")}
    without_audio = build("bilinear", two, factor=3, hidden=7)
    without_audio.load_state_dict({k: v for k, v in fusion.state_dict().items() if ".audio." not in k})
    expected = without_audio({m: feats[m] for m in two}, presence(two)).fused
    assert torch.allclose(out[1], expected[1], atol=1e-6) and torch.allclose(out[3], expected[3], atol=1e-6)
    assert not torch.allclose(out[0], expected[0], atol=1e-3)


def test_bilinear_power_normalisation_has_finite_gradient_at_zero() -> None:
    from polymodal.fusion.bilinear import power_normalize

    x = torch.tensor([0.0, 1e-12, -4.0], requires_grad=True)
    power_normalize(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_multiplicative_is_a_quadratic_form_in_the_inputs() -> None:
    dims = {"image": 3, "audio": 2}
    fusion = build("multiplicative", dims, rank=2, hidden=4)
    feats = features(dims)
    x = torch.cat([feats["image"].pooled, feats["audio"].pooled, torch.ones(5, 2)], dim=1)  # (B, 7)
    w = torch.einsum("ri,rj,or->ijo", fusion.a.weight, fusion.b.weight, fusion.c.weight)  # (7, 7, 4)
    expected = torch.einsum("bi,ijo,bj->bo", x, w, x) + fusion.linear(x)
    assert torch.allclose(fusion(feats, presence(dims)).fused, expected, atol=1e-5)


def xor_data(n: int = 256, seed: int = 0) -> tuple[dict[str, EncoderOutput], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (n, 2), generator=g)
    signs = bits.float() * 2 - 1  # (n, 2) of +-1
    noise = 0.1 * torch.randn(n, 2, 2, generator=g)
    feats = {m: EncoderOutput(torch.stack([signs[:, i], torch.zeros(n)], dim=1) + noise[:, i])
             for i, m in enumerate(("a", "b"))}
    return feats, bits[:, 0] ^ bits[:, 1]


XOR_OPTIONS: dict[str, dict[str, int]] = {  # small widths keep the four runs around a second in total
    "tensor": {"proj_dim": 4, "hidden": 16}, "bilinear": {"factor": 2, "hidden": 16},
    "low_rank": {"hidden": 16}, "multiplicative": {"rank": 4, "hidden": 16},
}


@pytest.mark.parametrize("name", list(XOR_OPTIONS))
def test_method_learns_xor(name: str) -> None:
    feats, y = xor_data()
    present = presence({"a": 2, "b": 2}, b=256)
    fusion = build(name, {"a": 2, "b": 2}, seed=0, **XOR_OPTIONS[name]).train()
    head = nn.Linear(fusion.out_dim, 2)
    opt = torch.optim.Adam([*fusion.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(head(fusion(feats, present).fused), y).backward()
        opt.step()
    fusion.eval()
    with torch.no_grad():
        accuracy = (head(fusion(feats, present).fused).argmax(1) == y).float().mean().item()
    assert accuracy > 0.9, accuracy
