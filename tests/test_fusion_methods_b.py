"""Method-specific tests for attention, transformer, cross_attention, bottleneck and poe fusion."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.fusion import FUSIONS
from polymodal.fusion.cross_attention import CrossmodalBlock, guarded_attention
from polymodal.fusion.poe import kl_to_standard_normal, product_of_experts
from polymodal.layers import EncoderOutput

DIMS = {"image": 6, "audio": 5, "text": 4}
LENGTHS = {"image": 3, "audio": 5, "text": 4}
TOKEN_METHODS = ["transformer", "cross_attention", "bottleneck"]
SMALL: dict[str, dict[str, int]] = {  # fused width 16 everywhere but poe, whose latent keeps its default 64
    **{name: {"hidden": 16, "heads": 2} for name in TOKEN_METHODS},
    "attention": {"hidden": 16},
    "poe": {"expert_hidden": 16},
}
B = 4


def build(name: str, dims: dict[str, int] = DIMS, seed: int = 0, **options: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return FUSIONS.build(name, user={**SMALL[name], **options}, in_dims=dims).eval()


def token_features(dims: dict[str, int] = DIMS, seed: int = 0) -> dict[str, EncoderOutput]:
    """Tokens (B, T, D) with padding: record i has max(1, T - i) real tokens."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, d in dims.items():
        t = LENGTHS[m]
        tokens = torch.randn(B, t, d, generator=g)
        mask = torch.arange(t)[None] < torch.tensor([max(1, t - i) for i in range(B)])[:, None]  # (B, T)
        pooled = tokens.mean(1).requires_grad_()  # (B, D), a separate leaf
        out[m] = EncoderOutput(pooled=pooled, tokens=tokens.requires_grad_(), mask=mask)
    return out


def pooled_features(dims: dict[str, int] = DIMS, seed: int = 0) -> dict[str, EncoderOutput]:
    g = torch.Generator().manual_seed(seed)
    return {m: EncoderOutput(torch.randn(B, d, generator=g)) for m, d in dims.items()}


def presence(dims: dict[str, int] = DIMS, **missing: list[bool]) -> dict[str, torch.Tensor]:
    """All present except the given modalities, whose lists say which records have them."""
    return {m: torch.tensor(missing.get(m, [True] * B)) for m in dims}


def with_nan(feats: dict[str, EncoderOutput], m: str, where: torch.Tensor) -> dict[str, EncoderOutput]:
    """Copy of feats where modality m's tokens at (B, T) positions `where` are NaN."""
    out = dict(feats)
    tokens = feats[m].tokens.detach().clone()
    tokens[where] = float("nan")
    out[m] = EncoderOutput(pooled=feats[m].pooled.detach().clone(), tokens=tokens, mask=feats[m].mask)
    return out


@pytest.mark.parametrize("name", TOKEN_METHODS)
def test_padded_token_content_has_no_effect(name: str) -> None:
    fusion, feats = build(name), token_features()
    changed = dict(feats)
    for m in DIMS:
        changed = with_nan(changed, m, ~feats[m].mask)
    out_a, out_b = fusion(feats, presence()).fused, fusion(changed, presence()).fused
    assert torch.isfinite(out_b).all()
    assert torch.allclose(out_a, out_b, atol=1e-6)


@pytest.mark.parametrize("name", TOKEN_METHODS)
def test_real_tokens_are_used_and_receive_gradients(name: str) -> None:
    fusion, feats = build(name).train(), token_features()
    fusion(feats, presence()).fused.pow(2).sum().backward()
    for m, f in feats.items():
        grad = f.tokens.grad.abs().sum(-1)  # (B, T)
        assert (grad[f.mask] > 0).all() and (grad[~f.mask] == 0).all(), m
    fusion.eval()
    changed = with_nan(feats, "audio", torch.zeros_like(feats["audio"].mask))
    changed["audio"].tokens[0, 0] += 1.0  # a real token of record 0
    out_a, out_b = fusion(feats, presence()).fused, fusion(changed, presence()).fused
    assert not torch.allclose(out_a[0], out_b[0]) and torch.allclose(out_a[1:], out_b[1:], atol=1e-6)


@pytest.mark.parametrize("name", TOKEN_METHODS)
def test_missing_modality_tokens_have_no_effect(name: str) -> None:
    fusion, feats = build(name), token_features()
    present = presence(audio=[True, False, True, False])
    nan = with_nan(feats, "audio", ~present["audio"][:, None].expand_as(feats["audio"].mask))
    nan["audio"].pooled[~present["audio"]] = float("nan")
    out_a, out_b = fusion(feats, present).fused, fusion(nan, present).fused
    assert torch.isfinite(out_b).all()
    assert torch.allclose(out_a, out_b, atol=1e-6)


@pytest.mark.parametrize("name", TOKEN_METHODS)
def test_only_one_modality_present_or_none(name: str) -> None:
    fusion, feats = build(name), token_features()
    only_text = presence(image=[False] * B, audio=[False] * B)
    other = token_features(seed=1)
    other["text"] = feats["text"]
    assert torch.allclose(fusion(feats, only_text).fused, fusion(other, only_text).fused, atol=1e-6)
    none = {m: torch.zeros(B, dtype=torch.bool) for m in DIMS}
    out_a, out_b = fusion(feats, none).fused, fusion(other, none).fused
    assert torch.isfinite(out_a).all() and torch.allclose(out_a, out_b, atol=1e-6)


@pytest.mark.parametrize("name", TOKEN_METHODS)
def test_padding_is_the_same_as_a_shorter_sequence(name: str) -> None:
    fusion, feats = build(name), token_features()
    out = fusion(feats, presence()).fused
    for i in range(B):  # record i alone, cut to its real tokens
        cut = {m: EncoderOutput(f.pooled[i:i + 1], f.tokens[i:i + 1, f.mask[i]], None) for m, f in feats.items()}
        alone = fusion(cut, {m: torch.ones(1, dtype=torch.bool) for m in DIMS}).fused
        assert torch.allclose(alone[0], out[i], atol=1e-5), i


@pytest.mark.parametrize("name", ["attention", *TOKEN_METHODS, "poe"])
def test_training_gradients_stay_finite_with_missing_modalities(name: str) -> None:
    fusion = build(name).train()
    feats = token_features()
    present = presence(audio=[True, False, True, False], text=[False] * B)
    present["image"] = torch.tensor([True, True, False, False])
    for m in ("audio", "text", "image"):
        feats = with_nan(feats, m, ~present[m][:, None].expand_as(feats[m].mask))
        feats[m].tokens.requires_grad_()
        feats[m].pooled[~present[m]] = float("nan")
        feats[m].pooled.requires_grad_()
    out = fusion(feats, present)
    (out.fused.pow(2).sum() + sum(out.aux_losses.values())).backward()
    for n, p in fusion.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n
    for m, f in feats.items():
        for x in (f.tokens, f.pooled):
            assert x.grad is None or (torch.isfinite(x.grad).all() and (x.grad[~present[m]] == 0).all()), m


def test_cross_attention_without_any_source_key_keeps_only_the_residual_path() -> None:
    torch.manual_seed(0)
    block = CrossmodalBlock(hidden=8, heads=2, dropout=0.0).eval()
    with torch.no_grad():
        block.attn.out_proj.bias.uniform_(1.0, 2.0)  # a non-zero attention output even for zero values
    x, source = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    real = torch.tensor([[False] * 4, [True, True, False, False]])
    out = block(x, source, real)
    assert torch.allclose(out[0], x[0] + block.ff(block.norm_ff(x[0])), atol=1e-6)
    attended = block.attn(block.norm_q(x[1:]), block.norm_kv(source[1:, :2]), block.norm_kv(source[1:, :2]))[0]
    expected = x[1] + attended[0]
    assert torch.allclose(out[1], expected + block.ff(block.norm_ff(expected)), atol=1e-5)


def test_cross_attention_missing_target_uses_its_placeholder() -> None:
    fusion, feats = build("cross_attention"), token_features()
    present = presence(audio=[True, False, True, False])
    before = fusion(feats, present).fused
    with torch.no_grad():
        fusion.placeholder["audio"].normal_()
    after = fusion(feats, present).fused
    assert torch.allclose(before[present["audio"]], after[present["audio"]], atol=1e-6)
    assert not torch.allclose(before[1], after[1]) and not torch.allclose(before[3], after[3])


def test_guarded_attention_gives_zeros_without_keys() -> None:
    attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    q, kv = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    out = guarded_attention(attn, q, kv, torch.tensor([[False] * 4, [True] * 4]))
    assert torch.equal(out[0], torch.zeros(3, 8)) and torch.allclose(out[1], attn(q[1:], kv[1:], kv[1:])[0][0])


@pytest.mark.parametrize("name", TOKEN_METHODS)
def test_tokens_without_mask_are_all_real(name: str) -> None:
    fusion, feats = build(name), token_features()
    full = {m: EncoderOutput(f.pooled, f.tokens, torch.ones_like(f.mask)) for m, f in feats.items()}
    unmasked = {m: EncoderOutput(f.pooled, f.tokens, None) for m, f in feats.items()}
    assert torch.allclose(fusion(full, presence()).fused, fusion(unmasked, presence()).fused, atol=1e-6)


@pytest.mark.parametrize("name", ["attention", "transformer", "cross_attention", "bottleneck", "poe"])
def test_single_modality(name: str) -> None:
    dims = {"text": 4}
    fusion, feats = build(name, dims).train(), token_features(dims)
    out = fusion(feats, presence(dims))
    assert out.fused.shape == (B, fusion.out_dim) and torch.isfinite(out.fused).all()
    out.fused.pow(2).sum().backward()
    used = feats["text"].tokens if name in TOKEN_METHODS else feats["text"].pooled
    assert used.grad is not None and used.grad.abs().sum() > 0


def test_transformer_returns_cls_and_tokens_with_mask() -> None:
    fusion, feats = build("transformer"), token_features()
    present = presence(audio=[True, False, True, False])
    out = fusion(feats, present)
    assert out.tokens.shape == (B, 1 + sum(LENGTHS.values()), 16)
    assert torch.equal(out.tokens[:, 0], out.fused)
    expected = torch.cat([torch.ones(B, 1, dtype=torch.bool), feats["image"].mask,
                          feats["audio"].mask & present["audio"][:, None], feats["text"].mask], dim=1)
    assert torch.equal(out.mask, expected)


def test_bottleneck_without_modalities_is_the_bottleneck_mean() -> None:
    fusion, feats = build("bottleneck", n_bottleneck=3), token_features()
    none = {m: torch.zeros(B, dtype=torch.bool) for m in DIMS}
    out = fusion(feats, none)
    assert out.tokens.shape == (B, 3, 16) and out.mask.all()
    assert torch.allclose(out.fused, out.tokens.mean(1), atol=1e-6)
    expected = fusion.norm(fusion.bottleneck[0]).mean(0)  # learned tokens, untouched by any layer
    assert torch.allclose(out.fused, expected.expand(B, -1), atol=1e-6)


def image_cls(fusion: torch.nn.Module, feats: dict[str, EncoderOutput],
              present: dict[str, torch.Tensor]) -> torch.Tensor:
    """Image's normalized CLS output (the first call of the shared final norm)."""
    seen: list[torch.Tensor] = []
    hook = fusion.norm.register_forward_hook(lambda module, args, out: seen.append(out))
    fusion(feats, present)
    hook.remove()
    return seen[0]


def test_bottleneck_carries_information_between_present_modalities_only() -> None:
    fusion, feats = build("bottleneck"), token_features()
    other = dict(feats)
    other["text"] = token_features(seed=1)["text"]
    assert not torch.allclose(image_cls(fusion, feats, presence()), image_cls(fusion, other, presence()))
    no_text = presence(text=[False] * B)
    assert torch.allclose(image_cls(fusion, feats, no_text), image_cls(fusion, other, no_text), atol=1e-6)


def test_attention_weights_sum_to_one_over_present_modalities() -> None:
    fusion, feats = build("attention"), pooled_features()
    present = presence(audio=[True, False, True, False], text=[True, True, False, False])
    present["image"] = torch.tensor([True, True, True, False])
    w = fusion.weights(feats, present)  # (B, 3) in image, audio, text order
    mask = torch.stack([present[m] for m in fusion.modalities], dim=1)
    assert torch.all(w[~mask] == 0) and torch.all(w[mask] > 0)
    assert torch.allclose(w[:3].sum(1), torch.ones(3)) and torch.equal(w[3], torch.zeros(3))
    out = fusion(feats, present).fused
    assert torch.equal(out[3], torch.zeros(16))
    assert torch.allclose(out, torch.einsum("bn,bnd->bd", w, fusion.embed(feats, present)), atol=1e-6)


def test_attention_weights_depend_on_the_scores() -> None:
    fusion, feats = build("attention"), pooled_features()
    w = fusion.weights(feats, presence())
    assert torch.allclose(w.sum(1), torch.ones(B)) and not torch.allclose(w, torch.full_like(w, 1 / 3))


def test_product_of_experts_closed_form() -> None:
    mu = torch.tensor([[[1.0], [3.0], [100.0]]])  # (1, 3, 1)
    logvar = torch.log(torch.tensor([[[1.0], [1 / 3], [1e-3]]]))
    joint_mu, joint_logvar = product_of_experts(mu, logvar, torch.tensor([[True, True, False]]))
    assert torch.allclose(joint_mu, torch.tensor([[2.0]]))  # (0*1 + 1*1 + 3*3) / (1 + 1 + 3)
    assert torch.allclose(joint_logvar, torch.tensor([[-math.log(5.0)]]))


def test_product_of_experts_sharp_expert_dominates() -> None:
    mu = torch.tensor([[[2.5, -1.0], [7.0, 7.0]]])  # (1, 2, 2)
    logvar = torch.tensor([[[-30.0, -30.0], [0.0, 0.0]]])
    joint_mu, _ = product_of_experts(mu, logvar, torch.tensor([[True, False]]))
    assert torch.allclose(joint_mu, torch.tensor([[2.5, -1.0]]), atol=1e-6)


def test_poe_module_sharp_expert_dominates() -> None:
    fusion, feats = build("poe", hidden=3), pooled_features()
    target = torch.tensor([0.5, -2.0, 4.0])
    last = fusion.experts["image"][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.cat([target, torch.full((3,), -50.0)]))  # logvar clamped to -max_logvar
    out = fusion(feats, presence(audio=[False] * B, text=[False] * B)).fused
    assert torch.allclose(out, target.expand(B, -1), rtol=1e-3, atol=1e-3)


def test_poe_without_modalities_is_the_prior() -> None:
    fusion = build("poe")
    feats = pooled_features()
    for f in feats.values():
        f.pooled[:] = float("nan")
    none = {m: torch.zeros(B, dtype=torch.bool) for m in DIMS}
    mu, logvar = fusion.posterior(feats, none)
    out = fusion(feats, none)
    assert torch.equal(out.fused, torch.zeros(B, 64)) and torch.equal(mu, out.fused)
    assert torch.equal(logvar, torch.zeros(B, 64)) and out.aux_losses["kl"].item() == 0.0


def test_poe_kl_is_positive_and_weighted_in_training() -> None:
    feats, present = pooled_features(), presence()
    fusion = build("poe", beta=1.0, dropout=0.0).train()
    out = fusion(feats, present)
    assert set(out.aux_losses) == {"kl"} and out.aux_losses["kl"].item() > 0
    mu, logvar = fusion.posterior(feats, present)
    assert torch.allclose(out.aux_losses["kl"], kl_to_standard_normal(mu, logvar))
    half = build("poe", beta=0.5, dropout=0.0).train()
    assert torch.allclose(half(feats, present).aux_losses["kl"], 0.5 * out.aux_losses["kl"])


def test_poe_samples_in_training_and_uses_the_mean_in_eval() -> None:
    fusion, feats = build("poe", dropout=0.0).train(), pooled_features()
    a, b = fusion(feats, presence()).fused, fusion(feats, presence()).fused
    assert not torch.allclose(a, b)
    fusion.eval()
    mu, _ = fusion.posterior(feats, presence())
    assert torch.equal(fusion(feats, presence()).fused, mu)
