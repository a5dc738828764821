"""Video encoders: the image CNN on every frame, then temporal pooling or a temporal Transformer.

Both take `frames` (B, T, C, H, W) and `mask` (B, T) from the video processor and return one token per frame.
With `motion` (default), each frame is stacked with its difference to the next frame before the CNN, so that a
per-frame feature already knows which way things move; without it, mean/max pooling is blind to frame order (a
clip and its reverse get the same features) and only the Transformer, through its positions, sees time.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.encoders.cnn import ImageCNN
from polymodal.encoders.transformer import PositionalTransformer
from polymodal.layers import EncoderOutput, masked_mean


class FrameEncoder(nn.Module):
    """`ImageCNN` applied to the real (unpadded) frames only: (B, T, C, H, W) + (B, T) -> (B, T, D), 0 at padding."""

    def __init__(self, in_channels: int, out_dim: int, width: int, blocks: int, motion: bool) -> None:
        super().__init__()
        self.motion = motion
        self.cnn = ImageCNN(in_channels * (2 if motion else 1), out_dim, width, blocks, dropout=0.0)

    def forward(self, frames: Tensor, mask: Tensor) -> Tensor:
        x = torch.cat([frames, frame_differences(frames, mask)], dim=2) if self.motion else frames  # (B, T, C', H, W)
        feats = self.cnn({"pixels": x[mask]}).pooled  # (N real frames, D)
        out = feats.new_zeros(*mask.shape, feats.shape[-1])  # (B, T, D)
        out[mask] = feats
        return out


def frame_differences(frames: Tensor, mask: Tensor) -> Tensor:
    """Next frame minus this frame where both are real, else 0: (B, T, C, H, W) -> same shape."""
    diff = torch.zeros_like(frames)
    diff[:, :-1] = frames[:, 1:] - frames[:, :-1]
    both = torch.zeros_like(mask)
    both[:, :-1] = mask[:, 1:] & mask[:, :-1]  # (B, T)
    return diff * both[:, :, None, None, None]


@ENCODERS.register("video_cnn_pool")
class VideoCNNPool(Encoder):
    """Per-frame image CNN + masked mean or max over time; tokens are the frames' features.

    Args:
        in_channels: frame channels (derived).
        out_dim: feature width D.
        width, blocks: the frame CNN's first width and number of conv blocks.
        pool: temporal pooling, "mean" or "max" (over real frames only).
        motion: feed each frame with its difference to the next (see the module docstring).
    """

    modalities = ("video",)
    derived = ("in_channels",)

    def __init__(self, in_channels: int, out_dim: int = 128, width: int = 32, blocks: int = 3,
                 pool: Literal["mean", "max"] = "mean", motion: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        if pool not in ("mean", "max"):
            raise ValueError(f"pool: {pool!r} is not one of mean, max")
        self.frames = FrameEncoder(in_channels, out_dim, width, blocks, motion)
        self.pool = pool
        self.drop = nn.Dropout(dropout)
        self.out_dim = out_dim

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        mask = inputs["mask"]  # (B, T)
        tokens = self.frames(inputs["frames"], mask)  # (B, T, D)
        if self.pool == "mean":
            pooled = masked_mean(tokens, mask)
        else:
            pooled = tokens.masked_fill(~mask[..., None], float("-inf")).amax(1)  # (B, D)
            pooled = torch.where(mask.any(1, keepdim=True), pooled, torch.zeros_like(pooled))
        return EncoderOutput(pooled=self.drop(pooled), tokens=tokens, mask=mask)


@ENCODERS.register("video_transformer")
class VideoTransformer(PositionalTransformer):
    """Per-frame image CNN + learned frame positions + pre-norm Transformer over time; pooled by masked mean.

    Args:
        in_channels: frame channels (derived).
        out_dim: model width D (divisible by heads).
        width, blocks: the frame CNN's first width and number of conv blocks.
        layers, heads: temporal Transformer depth and attention heads.
        max_frames: most frames handled (later frames are cut).
        motion: feed each frame with its difference to the next.
    """

    modalities = ("video",)
    derived = ("in_channels",)

    def __init__(self, in_channels: int, out_dim: int = 128, width: int = 32, blocks: int = 3, layers: int = 2,
                 heads: int = 4, max_frames: int = 64, motion: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        self.frames = FrameEncoder(in_channels, out_dim, width, blocks, motion)
        self.init_stack(out_dim, layers, heads, max_frames, dropout)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        t = min(inputs["mask"].shape[1], self.pos.shape[1])
        mask = inputs["mask"][:, :t]  # (B, T)
        return self.contextualize(self.frames(inputs["frames"][:, :t], mask), mask)
