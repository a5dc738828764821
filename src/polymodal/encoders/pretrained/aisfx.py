"""`aisfx_audio`: the sound-effects embedding network of aiSFX (Ma et al., ISMIR 2021: "X-Sequential-CE", a
9-layer CNN over mel spectrograms, trained across sound-effect datasets) as an audio encoder.

The network (`EmbeddingNet` in the package's `models/cnn2d.py`) is rewritten here with the same layer names,
and its checkpoint is read with torch's weights-only loader. The package computes its spectrograms with
Essentia or librosa; `aisfx_mel` reimplements that front end with torch: 44.1 kHz audio peak-normalised,
2048-sample Hann windows every 1024 samples, 96 HTK mel bands with unit-area (unit_sum) filters over 0-22050
Hz on the power spectrum, log10(1 + 10^4 x), divided by the paper's maximum 9.4578. The encoder cuts the
spectrogram into blocks of 100 frames (about 2.3 s) every 50 frames; each block gives one 512-d embedding
token, pooled by their mean.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.encoders.pretrained.weights import AISFX, load_into, resolve, unavailable
from polymodal.layers import EncoderOutput, masked_mean

SAMPLE_RATE = 44100
N_FFT, HOP = 2048, 1024
N_MELS = 96
LOG_MAX = 9.457798957824707  # the package's 'original' normalisation: max over its training spectrograms
BLOCK, BLOCK_HOP = 100, 50


@lru_cache(maxsize=2)
def unit_sum_mel_filters(rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft/2+1) triangular HTK-mel filters over 0..rate/2, each summing to 1."""
    mel = 2595.0 * np.log10(1.0 + np.linspace(0, rate / 2, n_fft // 2 + 1) / 700.0)
    edges = np.linspace(0.0, mel[-1], n_mels + 2)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.clip(np.minimum((mel - lo) / (mid - lo), (hi - mel) / (hi - mid)), 0.0, None)  # (M, F)
    return (tri / np.maximum(tri.sum(1, keepdims=True), 1e-12)).astype(np.float32)


def aisfx_mel(wave: np.ndarray) -> np.ndarray:
    """(T, 96) normalised log-mel frames of a mono 44.1 kHz waveform (N,), as the aiSFX model expects."""
    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    peak = float(x.abs().max()) if x.numel() else 0.0
    x = x / (peak if peak > 0 else 1.0)
    if x.numel() < N_FFT:
        x = F.pad(x, (0, N_FFT - x.numel()))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=False,
                      return_complex=True).abs() ** 2  # (F, T)
    mel = torch.from_numpy(unit_sum_mel_filters()) @ spec  # (M, T)
    return (torch.log10(1.0 + 1e4 * mel) / LOG_MAX).T.contiguous().numpy()


class ConvBlock(nn.Module):
    """Two 3x3 conv-BN-ReLU layers, then max pooling."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor, pool: int) -> Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.max_pool2d(x, pool)


class EmbeddingNet(nn.Module):
    """(N, T, M) mel blocks -> (N, 512): four conv blocks, mean over frequency, max over time."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        chans = [1, width, width * 2, width * 4, width * 8]
        for i in range(4):
            setattr(self, f"conv_block{i + 1}", ConvBlock(chans[i], chans[i + 1]))
        self.out_dim = chans[-1]

    def forward(self, mel: Tensor) -> Tensor:
        x = mel[:, None]  # (N, 1, T, M)
        for i, pool in enumerate((2, 2, 2, 1)):
            x = getattr(self, f"conv_block{i + 1}")(x, pool)
        return x.mean(3).amax(2)  # (N, C)


def _numpy_globals() -> list[object]:
    """The numpy types the aiSFX checkpoint pickles in its dataset table (allowed by name, nothing else)."""
    from numpy._core.multiarray import scalar

    return [(scalar, "numpy.core.multiarray.scalar"), np.dtype, *{type(np.dtype(t)) for t in ("int64", "float64")}]


def load_embedding_net(weights: str | None = None) -> EmbeddingNet:
    """The pretrained embedding network from an aiSFX checkpoint ((state dict, dataset table) or a state dict)."""
    path = resolve(weights, AISFX)
    with torch.serialization.safe_globals(_numpy_globals()):
        saved = torch.load(path, map_location="cpu", weights_only=True)
    state = saved[0] if isinstance(saved, (tuple, list)) else saved
    prefix = "embedding_net."
    if not isinstance(state, dict) or not any(k.startswith(prefix) for k in state):
        raise ValueError(f"{path}: not an aiSFX checkpoint (no '{prefix}*' tensors)")
    net = EmbeddingNet()
    load_into(net, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, path)
    return net


def mel_blocks(mel: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(B, T, M) frames + (B, T) mask -> (B, K, BLOCK, M) overlapping blocks + (B, K) mask of blocks holding
    at least one real frame; padding frames are zeroed (silence after normalisation)."""
    mel = mel * mask[..., None]
    t = mel.shape[1]
    k = max(1, -(-(t - BLOCK) // BLOCK_HOP) + 1)
    mel = F.pad(mel, (0, 0, 0, (k - 1) * BLOCK_HOP + BLOCK - t))  # (B, T', M)
    blocks = mel.unfold(1, BLOCK, BLOCK_HOP).transpose(2, 3)  # (B, K, BLOCK, M)
    starts = torch.arange(k, device=mel.device) * BLOCK_HOP  # (K,)
    return blocks, starts[None] < mask.sum(1, keepdim=True)  # (B, K)


@ENCODERS.register("aisfx_audio")
class AisfxEncoder(Encoder):
    """aiSFX sound-effect embeddings: one 512-d token per 100-frame block, pooled by their mean.

    Expects the aiSFX front end (`frontend: aisfx` on the audio modality: 44.1 kHz, 96 mels).

    Args:
        n_mels: mel bands (derived; 96 with the aiSFX front end).
        out_dim: project to this width (a new trainable layer); default the native 512.
        weights: a local aiSFX checkpoint; default the `aisfx` package's.
        pretrained: False starts from random weights.
    """

    modalities = ("audio",)
    derived = ("n_mels",)

    def __init__(self, n_mels: int, out_dim: int | None = None, weights: str | None = None,
                 pretrained: bool = True) -> None:
        super().__init__()
        self.net = load_embedding_net(weights) if pretrained else EmbeddingNet()
        self.proj = nn.Identity() if out_dim is None else nn.Linear(self.net.out_dim, out_dim)
        self.out_dim = self.net.out_dim if out_dim is None else out_dim

    @classmethod
    def unavailable(cls) -> str | None:
        return unavailable(AISFX)

    @classmethod
    def check_spec(cls, spec: object) -> None:
        if getattr(spec, "frontend", None) != "aisfx":
            raise ValueError("aisfx_audio reads the aiSFX spectrogram: set `frontend: aisfx` on this audio "
                             "modality (44.1 kHz, 96 mel bands)")

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        blocks, bmask = mel_blocks(inputs["mel"], inputs["mask"])  # (B, K, BLOCK, M), (B, K)
        b, k = bmask.shape
        emb = self.net(blocks.flatten(0, 1)).view(b, k, -1)  # (B, K, 512)
        tokens = self.proj(emb)  # (B, K, D)
        return EncoderOutput(pooled=masked_mean(tokens, bmask), tokens=tokens, mask=bmask)
