"""One contract battery over every registered encoder (timm-style)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from polymodal.encoders import ENCODERS

DERIVED: dict[str, dict[str, Any]] = {
    "in_channels": {"in_channels": 1}, "n_mels": {"n_mels": 16}, "vocab_size": {"vocab_size": 30},
    "in_dim": {"in_dim": 5}, "n_numeric": {"n_numeric": 2}, "cardinalities": {"cardinalities": [3, 4]},
}


def make_inputs(modality: str, b: int = 4) -> dict[str, torch.Tensor]:
    mask = torch.ones(b, 7, dtype=torch.bool)
    mask[0, 3:] = False
    return {
        "image": lambda: {"pixels": torch.randn(b, 1, 16, 16)},
        "audio": lambda: {"mel": torch.randn(b, 20, 16), "mask": torch.ones(b, 20, dtype=torch.bool)},
        "text": lambda: {"ids": torch.randint(1, 30, (b, 7)) * mask, "mask": mask},
        "sequence": lambda: {"values": torch.randn(b, 7, 5) * mask[..., None], "mask": mask},
        "vector": lambda: {"values": torch.randn(b, 5)},
        "tabular": lambda: {"numeric": torch.randn(b, 4), "categorical": torch.randint(0, 3, (b, 2))},
        "video": lambda: {"frames": torch.randn(b, 7, 1, 16, 16) * mask[..., None, None, None], "mask": mask},
    }[modality]()


def build(name: str) -> Any:
    cls = ENCODERS.get(name)
    reason = cls.unavailable() if hasattr(cls, "unavailable") else None  # pretrained: weights, optional packages
    if reason:
        pytest.skip(f"{name}: {reason}")
    kwargs: dict[str, Any] = {}
    for d in cls.derived:
        kwargs.update(DERIVED[d])
    return cls(**{k: v for k, v in kwargs.items() if k in cls.derived}, out_dim=16)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_contract(name: str) -> None:
    torch.manual_seed(0)
    enc = build(name)
    modality = ENCODERS.get(name).modalities[0]
    inputs = make_inputs(modality)
    out = enc(inputs)
    assert enc.out_dim == 16 and out.pooled.shape == (4, 16)
    assert torch.isfinite(out.pooled).all()
    if out.tokens is not None:
        assert out.tokens.shape[0] == 4 and out.tokens.shape[2] == 16
        if out.mask is not None:
            assert out.mask.shape == out.tokens.shape[:2]
    out.pooled.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


@pytest.mark.parametrize("name", [n for n in ENCODERS.names()
                                  if ENCODERS.get(n).modalities[0] in ("text", "sequence", "video")])
def test_padding_does_not_change_pooled_features(name: str) -> None:
    torch.manual_seed(0)
    enc = build(name).eval()
    inputs = make_inputs(ENCODERS.get(name).modalities[0])
    key = next(k for k in ("ids", "values", "frames") if k in inputs)
    changed = dict(inputs)
    changed[key] = inputs[key].clone()
    changed[key][0, 3:] = 7 if key == "ids" else 99.0  # garbage in the padding of record 0
    assert torch.allclose(enc(inputs).pooled, enc(changed).pooled, atol=1e-5)


@pytest.mark.parametrize("name", ["image_cnn", "audio_cnn"])
def test_cnn_channels_last_layout_stays_inside(name: str, tmp_path: Any) -> None:
    from safetensors.torch import load_file, save_file

    enc = build(name)
    inputs = make_inputs(enc.modalities[0])
    enc.eval()
    out = enc(inputs).pooled
    assert out.is_contiguous() and torch.isfinite(out).all()
    save_file(enc.state_dict(), str(tmp_path / "w.safetensors"))  # stored weights keep the default layout
    again = build(name).eval()
    again.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    assert torch.equal(again(inputs).pooled, out)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_stats_only_outside_training_and_only_from_the_cnns(name: str) -> None:
    torch.manual_seed(0)
    enc = build(name)
    inputs = make_inputs(ENCODERS.get(name).modalities[0])
    assert enc.train()(inputs).stats is None  # training pays nothing for them
    stats = enc.eval()(inputs).stats
    if name not in ("image_cnn", "audio_cnn"):
        assert stats is None
        return
    first = enc.convs[0][0](inputs["pixels"] if name == "image_cnn" else inputs["mel"][:, None])  # (B, C, H, W)
    want = torch.cat([first.mean((2, 3)), first.std((2, 3), correction=0)], 1)  # (B, 2C)
    assert stats is not None and torch.allclose(stats, want, atol=1e-5)


def test_audio_stats_count_real_time_steps_only() -> None:
    torch.manual_seed(0)
    enc = build("audio_cnn").eval()
    mel, mask = torch.randn(2, 24, 16), torch.ones(2, 24, dtype=torch.bool)
    mel[1, 15:], mask[1, 15:] = 0.0, False  # record 1: 15 real steps, zero padding (as batches are padded)
    alone = enc({"mel": mel[1:, :15], "mask": mask[1:, :15]}).stats
    assert torch.allclose(enc({"mel": mel, "mask": mask}).stats[1], alone[0], atol=1e-5)
