"""Convolutional encoders: a small image CNN and an audio CNN over log-mel spectrograms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.layers import EncoderOutput, masked_mean


class ChannelsLastConv2d(nn.Conv2d):
    """A Conv2d computed in the channels-last layout, which CPU kernels run ~1.5x faster for these small maps.

    The stored weight keeps the default layout (safetensors saves only contiguous tensors); the per-call copy
    of a weight this small costs far less than the layout gains.
    """

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.contiguous(memory_format=torch.channels_last)
        out = self._conv_forward(x.contiguous(memory_format=torch.channels_last), weight, self.bias)
        return out.contiguous(memory_format=torch.channels_last)  # with one input channel, torch keeps NCHW


def conv_block(c_in: int, c_out: int, pool: tuple[int, int]) -> nn.Sequential:
    """Conv, max-pool, then batch norm and GELU on the pooled (4x smaller) map.

    Pooling before the normalization and activation does the same kind of work at a quarter of the cost.
    """
    return nn.Sequential(ChannelsLastConv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(pool),
                         nn.BatchNorm2d(c_out), nn.GELU())


def run_convs(convs: nn.Sequential, x: Tensor) -> tuple[Tensor, Tensor]:
    """`convs` (conv blocks) on x, and the output of the first block's convolution (before pool, norm, GELU)."""
    first = convs[0][0](x)  # (B, C, H, W)
    h = first
    for layer in list(convs[0])[1:] + list(convs)[1:]:
        h = layer(h)
    return h, first


def channel_stats(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """(B, 2C): per-channel mean, then std, of a map x (B, C, T, M) over its positions (with mask (B, T): over
    the real steps of T only, every M).

    One pass of sums and sums of squares over the channels-last layout the convolutions give (a third of the
    cost of `torch.var_mean` over the spatial axes).
    """
    h = x.permute(0, 2, 3, 1)  # (B, T, M, C): a view for a channels-last map
    n = float(h.shape[1] * h.shape[2])
    if mask is not None:
        h = h * mask.to(h.dtype)[:, :, None, None]  # padded steps count for nothing
        n = (mask.sum(1, keepdim=True) * h.shape[2]).clamp_min(1).to(h.dtype)  # (B, 1)
    h = h.flatten(1, 2)  # (B, T*M, C)
    mean = h.sum(1) / n  # (B, C)
    square = torch.linalg.vector_norm(h, dim=1) ** 2 / n  # (B, C) mean of squares
    return torch.cat([mean, (square - mean**2).clamp_min(0).sqrt()], 1)


def window_any(mask: Tensor, stride: int, n: int) -> Tensor:
    """(B, n): whether each of the first n windows of `stride` steps of mask (B, T) holds a True step.

    Same as a max-pool of stride `stride`, written with cumulative sums so that ONNX exporters keep T dynamic.
    """
    counts = F.pad(mask.long().cumsum(1), (1, 0))  # (B, T + 1) real steps before each position
    ends = (torch.arange(n, device=mask.device) + 1) * stride  # (n,)
    return (counts.index_select(1, ends) - counts.index_select(1, ends - stride)) > 0


@ENCODERS.register("image_cnn")
class ImageCNN(Encoder):
    """Conv-pool-BN-GELU blocks doubling the width; tokens are the final feature map's positions. Outside
    training, `stats` are the per-channel mean and std of the first convolution's output.

    Args:
        in_channels: image channels (derived).
        out_dim: feature width D.
        width: channels of the first block.
        blocks: number of conv blocks (each halves the resolution).
    """

    modalities = ("image",)
    derived = ("in_channels",)

    def __init__(self, in_channels: int, out_dim: int = 128, width: int = 32, blocks: int = 3,
                 dropout: float = 0.1) -> None:
        super().__init__()
        chans = [in_channels] + [width * 2**i for i in range(blocks)]
        self.convs = nn.Sequential(*[conv_block(a, b, (2, 2)) for a, b in zip(chans[:-1], chans[1:])])
        self.proj = nn.Linear(chans[-1], out_dim)
        self.drop = nn.Dropout(dropout)
        self.out_dim = out_dim

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        fmap, first = run_convs(self.convs, inputs["pixels"])  # (B, C, h, w), (B, C1, H, W)
        tokens = self.proj(fmap.flatten(2).transpose(1, 2))  # (B, h*w, D)
        stats = None if self.training else channel_stats(first)  # (B, 2 * C1)
        return EncoderOutput(pooled=self.drop(tokens.mean(1)), tokens=tokens, stats=stats)


@ENCODERS.register("audio_cnn")
class AudioCNN(Encoder):
    """2-D convolutions over (time, mel); each time step's channels x mel bands become one token. Outside
    training, `stats` are the per-channel mean and std of the first convolution's output over the real time steps.

    Args:
        n_mels: mel bands (derived).
        out_dim: feature width D.
        width: channels of the first block.
        blocks: conv blocks; each halves both time and mel resolution.
    """

    modalities = ("audio",)
    derived = ("n_mels",)

    def __init__(self, n_mels: int, out_dim: int = 128, width: int = 32, blocks: int = 3,
                 dropout: float = 0.1) -> None:
        super().__init__()
        chans = [1] + [width * 2**i for i in range(blocks)]
        self.convs = nn.Sequential(*[conv_block(a, b, (2, 2)) for a, b in zip(chans[:-1], chans[1:])])
        self.time_stride = 2**blocks
        self.proj = nn.Linear(chans[-1] * (n_mels // 2**blocks), out_dim)
        self.drop = nn.Dropout(dropout)
        self.out_dim = out_dim

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        mel, mask = inputs["mel"], inputs["mask"]  # (B, T, M), (B, T)
        t = mel.shape[1]
        if t < self.time_stride:
            mel = F.pad(mel, (0, 0, 0, self.time_stride - t))
            mask = F.pad(mask, (0, self.time_stride - t))
        fmap, first = run_convs(self.convs, mel[:, None])  # (B, C, T', M'), (B, C1, T, M): same T (padding 1)
        tokens = self.proj(fmap.transpose(1, 2).flatten(2))  # (B, T', C*M') -> (B, T', D)
        tmask = window_any(mask, self.time_stride, tokens.shape[1])  # (B, T')
        stats = None if self.training else channel_stats(first, mask)  # (B, 2 * C1)
        return EncoderOutput(pooled=self.drop(masked_mean(tokens, tmask)), tokens=tokens, mask=tmask, stats=stats)
