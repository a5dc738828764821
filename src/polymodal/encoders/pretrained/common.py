"""What the pretrained image backbones share: feature map -> tokens + pooled, optional projection."""

from __future__ import annotations

from torch import Tensor, nn

from polymodal.encoders.base import Encoder
from polymodal.encoders.pretrained.reference import remember
from polymodal.encoders.pretrained.weights import WeightPackage
from polymodal.layers import EncoderOutput

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureMapEncoder(Encoder):
    """Runs `self.backbone` (images -> (B, C, h, w)); tokens are the map's positions, pooled their mean.

    Subclasses build `backbone` and set `width` (C) before calling `finish`.
    """

    modalities = ("image",)
    derived = ("in_channels",)
    backbone: nn.Module
    width: int

    def finish(self, out_dim: int | None, package: WeightPackage | None = None) -> None:
        """Optional linear projection C -> out_dim of tokens and pooled features; None keeps the native width.
        `package`: where the backbone's weights came from (runs then refer to them instead of copying them)."""
        remember(self, package, "backbone.")
        self.proj = nn.Identity() if out_dim is None else nn.Linear(self.width, out_dim)
        self.out_dim = self.width if out_dim is None else out_dim

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        fmap = self.backbone(inputs["pixels"])  # (B, C, h, w)
        tokens = self.proj(fmap.flatten(2).transpose(1, 2))  # (B, h*w, D)
        return EncoderOutput(pooled=tokens.mean(1), tokens=tokens)
