"""The audio modality's robustness options: per-utterance normalization and train-time augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from polymodal.config import AudioSpec, parse_config
from polymodal.processors import build_processor
from polymodal.processors.audio_augment import freq_warp, spec_augment, speed_perturb, utterance_normalize


def speech_like(seconds: float = 0.5, rate: int = 8000, seed: int = 0) -> np.ndarray:
    """A chirp with a coloured noise floor: energy that moves across bands over time."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * (300 + 1500 * t) * t)
    floor = np.convolve(rng.normal(0, 0.05, t.size), np.ones(4) / 4, mode="same")
    return (0.3 * tone + floor).astype(np.float32)


def fitted(tmp_path: Path, **options: object) -> tuple[object, list[dict[str, np.ndarray]]]:
    spec = AudioSpec(type="audio", sample_rate=8000, n_mels=16, max_seconds=0.5, **options)
    proc = build_processor(spec, "a")
    items = []
    for seed in range(3):
        sf.write(tmp_path / f"{seed}.wav", speech_like(seed=seed), 8000)
        items.append(proc.read(f"{seed}.wav", tmp_path))
    proc.fit_items(items)
    return proc, items


def batch(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Padded (B, T, M) with a mask: the second record is cut short."""
    lengths = [len(items[0]["mel"]), len(items[1]["mel"]) // 2]
    mel = torch.zeros(2, max(lengths), items[0]["mel"].shape[1])
    for b, (item, n) in enumerate(zip(items, lengths)):
        mel[b, :n] = torch.from_numpy(item["mel"][:n])
    return {"mel": mel, "mask": torch.arange(mel.shape[1])[None] < torch.tensor(lengths)[:, None]}


def test_utterance_normalization_makes_the_model_input_gain_invariant(tmp_path: Path) -> None:
    proc, _ = fitted(tmp_path)
    wave = speech_like(seed=5)
    sf.write(tmp_path / "quiet.wav", 0.1 * wave, 8000)
    sf.write(tmp_path / "loud.wav", 0.9 * wave, 8000)
    quiet, loud = (batch([proc.read(f"{n}.wav", tmp_path)] * 2) for n in ("quiet", "loud"))
    a, b = proc.to_model(quiet, train=False)["mel"], proc.to_model(loud, train=False)["mel"]
    assert (a - b).abs().max() < 0.1  # up to 16-bit rounding and log's 1e-6 floor
    before, _ = fitted(tmp_path, utterance_norm="none")
    assert (before.to_model(quiet, False)["mel"] - before.to_model(loud, False)["mel"]).abs().max() > 1.0


def test_utterance_normalization_uses_real_steps_only_and_keeps_padding() -> None:
    mel = torch.randn(2, 6, 4) * 3 + 5
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    out = utterance_normalize(mel, mask, "mean_std")
    assert torch.allclose(out[1, :3].mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(out[1, :3].std(0, unbiased=False), torch.ones(4), atol=1e-4)
    assert torch.equal(out[1, 3:], mel[1, 3:])
    assert torch.equal(utterance_normalize(mel, mask, "none"), mel)


def test_evaluation_is_deterministic_and_training_augments_from_the_global_generator(tmp_path: Path) -> None:
    proc, items = fitted(tmp_path, spec_augment=True)
    inputs = batch(items)
    first, second = proc.to_model(inputs, train=False), proc.to_model(inputs, train=False)
    assert torch.equal(first["mel"], second["mel"]) and torch.equal(first["mask"], inputs["mask"])
    state = torch.get_rng_state()  # what a checkpoint saves: the same state gives the same augmentation
    augmented = proc.to_model(inputs, train=True)
    torch.set_rng_state(state)
    again = proc.to_model(inputs, train=True)
    assert torch.equal(augmented["mel"], again["mel"]) and torch.equal(augmented["mask"], again["mask"])
    assert augmented["mel"].shape != first["mel"].shape or not torch.equal(augmented["mel"], first["mel"])
    assert (augmented["mel"][~augmented["mask"]] == 0).all()  # padding stays 0


def test_augmentation_off_leaves_training_input_as_evaluation(tmp_path: Path) -> None:
    proc, items = fitted(tmp_path, spec_augment=False, speed_perturb=0.0, freq_warp=0.0)
    inputs = batch(items)
    assert torch.equal(proc.to_model(inputs, train=True)["mel"], proc.to_model(inputs, train=False)["mel"])


def test_speed_perturb_stretches_each_record_within_its_range() -> None:
    torch.manual_seed(0)
    mel = torch.randn(16, 40, 8)
    mask = torch.arange(40)[None] < torch.randint(10, 41, (16, 1))
    out, new_mask = speed_perturb(mel, mask, 0.25)
    ratio = new_mask.sum(1).float() / mask.sum(1).float()
    assert out.shape[:2] == new_mask.shape and (ratio >= 1 / 1.25 - 0.06).all() and (ratio <= 1.25 + 0.06).all()
    assert (ratio != 1).any() and (out[~new_mask] == 0).all()
    for b in range(16):  # each record is its real steps linearly resampled, endpoints aligned
        old, length = int(mask[b].sum()), int(new_mask[b].sum())
        expected = torch.nn.functional.interpolate(mel[b, :old].T[None], size=length, mode="linear",
                                                   align_corners=True)[0].T
        assert torch.allclose(out[b, :length], expected, atol=1e-5)


def test_freq_warp_and_spec_augment_keep_shape_and_zero_only_spans() -> None:
    torch.manual_seed(0)
    mel = torch.randn(8, 30, 16)
    assert torch.equal(freq_warp(mel, 0.0), mel)
    warped = freq_warp(mel, 0.2)
    assert warped.shape == mel.shape and torch.allclose(warped[..., 0], mel[..., 0])  # the lowest band stays
    mask = torch.ones(8, 30, dtype=torch.bool)
    masked = spec_augment(mel + 10, mask)  # nothing is 0 before
    zeros = masked == 0
    assert zeros.any() and zeros.float().mean() < 0.6
    assert ((masked == 0) | (masked == mel + 10)).all()


def test_options_appear_in_the_resolved_config_with_their_defaults() -> None:
    cfg = parse_config({"data": {"source": "x.csv"}, "modalities": {"a": {"type": "audio"}},
                        "target": {"field": "y", "task": "multiclass"}})
    dumped = cfg.model_dump()["modalities"]["a"]
    assert {k: dumped[k] for k in ("utterance_norm", "spec_augment", "speed_perturb", "freq_warp")} == {
        "utterance_norm": "mean", "spec_augment": False, "speed_perturb": 0.15, "freq_warp": 0.1}
