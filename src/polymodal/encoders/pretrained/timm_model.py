"""`timm_model`: any timm image model (needs the optional `timm` package, which needs torchvision) as an
image encoder, with weights from a local checkpoint file (timm's own download is never used)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from polymodal.encoders.base import ENCODERS, Encoder
from polymodal.encoders.pretrained.weights import unavailable
from polymodal.layers import EncoderOutput


def import_timm() -> Any:
    try:
        import timm
    except Exception as err:  # timm missing, or failing on a torchvision that does not match torch
        raise ImportError(f"encoder timm_model needs the timm package (and a torchvision matching torch), which "
                          f"cannot be imported here ({type(err).__name__}: {err}); install them, or use "
                          "mobilenet_v2, efficientnet_lite0 or hf_model") from None
    return timm


@ENCODERS.register("timm_model")
class TimmEncoder(Encoder):
    """A timm model's `forward_features`: tokens are its feature map positions (or ViT tokens), pooled by mean.

    Args:
        in_channels: image channels (derived).
        model: timm model name, e.g. resnet18, vit_tiny_patch16_224.
        checkpoint: local weights file for that model; none starts from random weights.
        out_dim: project to this width (a new trainable layer); default the model's `num_features`.
    """

    modalities = ("image",)
    derived = ("in_channels",)

    def __init__(self, in_channels: int, model: str = "resnet18", checkpoint: str | None = None,
                 out_dim: int | None = None) -> None:
        super().__init__()
        timm = import_timm()
        self.backbone = timm.create_model(model, pretrained=False, num_classes=0, in_chans=in_channels,
                                          checkpoint_path=checkpoint or "")
        width = int(self.backbone.num_features)
        self.proj = nn.Identity() if out_dim is None else nn.Linear(width, out_dim)
        self.out_dim = width if out_dim is None else out_dim

    @classmethod
    def unavailable(cls) -> str | None:
        return unavailable(module="timm")

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        feats = self.backbone.forward_features(inputs["pixels"])  # (B, C, h, w) or (B, T, C)
        if feats.dim() == 4:
            feats = feats.flatten(2).transpose(1, 2)  # (B, h*w, C)
        tokens = self.proj(feats)  # (B, T, D)
        return EncoderOutput(pooled=tokens.mean(1), tokens=tokens)
