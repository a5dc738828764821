"""Speech robustness for log-mel spectrograms: per-utterance normalization and train-time augmentation.

All functions take a padded batch `mel` (B, T, M) with its `mask` (B, T) (True for real steps) and work on the
log-mel values. Random draws come from torch's global generator (seeded by training, saved in checkpoints), one
draw per record and transform, as the image augmentation does.

- `utterance_normalize`: cepstral mean (and variance) normalization per record and band over its real steps
  (Viikki & Laurila 1998): removes a record's gain and channel colouring, which a per-dataset mean cannot.
- `speed_perturb`: stretch the time axis by a random factor (Ko et al. 2015 perturb the waveform's speed; here
  the spectrogram is resampled along time, which changes duration but not pitch).
- `freq_warp`: stretch the mel axis by a random factor, a vocal tract length perturbation (Jaitly & Hinton 2013).
- `spec_augment`: zero random bands and time spans of the normalized spectrogram (Park et al. 2019, without time
  warping).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

STD_FLOOR = 1e-3  # a constant band (silence, a blank) is centred, not blown up


def utterance_normalize(mel: Tensor, mask: Tensor, mode: str) -> Tensor:
    """(B, T, M) minus each record's mean per band over its real steps (`mean`), then divided by its std
    (`mean_std`); `none` returns `mel` as is. Padding steps stay as they were."""
    if mode == "none":
        return mel
    w = mask[..., None].to(mel.dtype)  # (B, T, 1)
    n = w.sum(dim=1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
    mean = (mel * w).sum(dim=1, keepdim=True) / n  # (B, 1, M)
    out = mel - mean
    if mode == "mean_std":
        std = ((out**2 * w).sum(dim=1, keepdim=True) / n).sqrt().clamp_min(STD_FLOOR)  # (B, 1, M)
        out = out / std
    return torch.where(mask[..., None], out, mel)


def utterance_normalize_item(mel: np.ndarray, mode: str) -> np.ndarray:
    """One unpadded (T, M) spectrogram normalized as `utterance_normalize` does (for fitting statistics)."""
    if mode == "none":
        return mel
    out = mel - mel.mean(axis=0, keepdims=True)
    if mode == "mean_std":
        out = out / np.maximum(np.sqrt((out**2).mean(axis=0, keepdims=True)), STD_FLOOR)
    return out.astype(np.float32)


def speed_perturb(mel: Tensor, mask: Tensor, amount: float) -> tuple[Tensor, Tensor]:
    """Each record's real steps resampled (linear, endpoints kept) to a length times a factor drawn log-uniformly
    in [1/(1+amount), 1+amount]; returns the re-padded batch and its mask."""
    if amount <= 0:
        return mel, mask
    lengths = mask.sum(dim=1).clamp_min(1)  # (B,)
    factors = torch.exp(torch.empty(mel.shape[0]).uniform_(-1.0, 1.0) * float(np.log1p(amount)))  # (B,)
    new = (lengths.cpu().double() * factors.double()).round().clamp_min(1).long().to(mel.device)  # (B,)
    steps = torch.arange(int(new.max()), device=mel.device)[None]  # (1, T')
    scale = (lengths - 1).to(mel.dtype) / (new - 1).clamp_min(1).to(mel.dtype)  # (B,)
    pos = (steps * scale[:, None]).clamp(max=(lengths - 1)[:, None].to(mel.dtype))  # (B, T') source step
    lo = pos.floor().long()  # (B, T') the two real steps around each source position
    hi = (lo + 1).clamp_max(mel.shape[1] - 1)
    frac = (pos - lo).to(mel.dtype)[..., None]  # (B, T', 1)
    before, after = (mel.gather(1, i[..., None].expand(-1, -1, mel.shape[2])) for i in (lo, hi))  # (B, T', M)
    out = before + frac * (after - before)  # linear interpolation: O(T) where a (T', T) weight matrix is O(T^2)
    return out * (steps < new[:, None])[..., None], steps < new[:, None]


def freq_warp(mel: Tensor, amount: float) -> Tensor:
    """Each record's mel axis stretched by a factor drawn uniformly in [1-amount, 1+amount] (linear
    interpolation, edges held)."""
    if amount <= 0:
        return mel
    b, _, m = mel.shape
    alpha = torch.empty(b, 1, device=mel.device).uniform_(1.0 - amount, 1.0 + amount)  # (B, 1)
    pos = (torch.arange(m, device=mel.device)[None] / alpha).clamp(0, m - 1)  # (B, M) source band of each band
    return torch.bmm(mel, interpolation(pos, m, mel.dtype).transpose(1, 2))  # (B, T, M) @ (B, M, M)


def interpolation(pos: Tensor, size: int, dtype: torch.dtype) -> Tensor:
    """(B, P, size) weights that read fractional positions `pos` (B, P) in [0, size - 1] of an axis of length
    `size` by linear interpolation between the two neighbouring steps."""
    lo = pos.floor().long()
    frac = (pos - lo).to(dtype)[..., None]  # (B, P, 1)
    hi = (lo + 1).clamp_max(size - 1)
    weights = torch.zeros(*pos.shape, size, dtype=dtype, device=pos.device)  # (B, P, size)
    return weights.scatter_add_(2, lo[..., None], 1 - frac).scatter_add_(2, hi[..., None], frac)


def spec_augment(mel: Tensor, mask: Tensor, masks: int = 2, max_bands: float = 0.15,
                 max_time: float = 0.1) -> Tensor:
    """`masks` frequency masks (each up to `max_bands` of the bands) and `masks` time masks (each up to
    `max_time` of the record's real steps) per record, set to 0 (the mean of a normalized spectrogram)."""
    b, t, m = mel.shape
    keep = torch.ones_like(mel, dtype=torch.bool)
    lengths = mask.sum(dim=1, keepdim=True).clamp_min(1).float()  # (B, 1)
    bands, steps = torch.arange(m, device=mel.device), torch.arange(t, device=mel.device)
    for _ in range(masks):
        width = (torch.rand(b, 1, device=mel.device) * max_bands * m).floor()  # (B, 1)
        start = (torch.rand(b, 1, device=mel.device) * (m - width + 1)).floor()
        keep &= ~((bands[None] >= start) & (bands[None] < start + width))[:, None, :]
        width = (torch.rand(b, 1, device=mel.device) * max_time * lengths).floor()
        start = (torch.rand(b, 1, device=mel.device) * (lengths - width + 1)).floor()
        keep &= ~((steps[None] >= start) & (steps[None] < start + width))[:, :, None]
    return mel * keep
