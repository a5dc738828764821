"""Images: decode with Pillow, convert mode, resize, normalize; random shift + brightness jitter in training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from polymodal.config import ImageSpec
from polymodal.errors import RecordError
from polymodal.processors.base import Arrays, Processor, file_source, mean_std


class ImageProcessor(Processor):
    kind = "image"
    spec: ImageSpec

    def __init__(self, spec: ImageSpec, field: str) -> None:
        super().__init__(spec, field)
        self.mean = list(spec.mean) if spec.mean is not None else [0.5] * spec.channels
        self.std = list(spec.std) if spec.std is not None else [0.25] * spec.channels

    def decode_raw(self, value: Any, root: Path) -> np.ndarray:
        """(H, W) uint8 for 1 channel, (H, W, 3) for 3, at the file's own resolution."""
        source, name = file_source(value, root, self.allow_outside_root)
        try:
            with Image.open(source) as img:
                img.seek(frame_index(img, self.spec.frame))
                flat = composite(img, tuple(self.spec.background))
                return np.asarray(flat.convert("L" if self.spec.channels == 1 else "RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            reason = str(err).replace(f" {source!r}", "")  # Pillow names an in-memory file by its object repr
            raise RecordError(f"cannot decode image {name} ({type(err).__name__}: {reason})") from None

    def features(self, raw: np.ndarray) -> Arrays:
        img = Image.fromarray(np.ascontiguousarray(raw, dtype=np.uint8))
        img = fit_square(img, self.spec.size, self.spec.resize, tuple(self.spec.background))
        pixels = np.asarray(img, dtype=np.uint8)
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (C, H, W)
        return {"pixels": np.ascontiguousarray(pixels)}

    def blank(self) -> Arrays:
        return {"pixels": np.zeros((self.spec.channels, self.spec.size, self.spec.size), dtype=np.uint8)}

    def fit_items(self, items: list[Arrays]) -> None:
        if self.spec.mean is not None:  # fixed statistics (e.g. ImageNet's for a pretrained encoder)
            return
        stacked = np.stack([it["pixels"] for it in items]).astype(np.float32) / 255.0  # (N, C, H, W)
        self.mean, self.std = mean_std(stacked, axis=(0, 2, 3))

    def encoder_inputs(self) -> dict[str, Any]:
        return {"in_channels": self.spec.channels}

    def to_model(self, inputs: dict[str, Tensor], train: bool) -> dict[str, Tensor]:
        x = inputs["pixels"].float() / 255.0  # (B, C, H, W)
        if train and self.spec.augment:
            x = random_shift(x, max_shift=max(1, self.spec.size // 14))
            x = x * torch.empty(x.shape[0], 1, 1, 1, device=x.device).uniform_(0.8, 1.2)
        mean = self.stats("mean", x).view(1, -1, 1, 1)
        std = self.stats("std", x).view(1, -1, 1, 1)
        return {"pixels": (x - mean) / std}

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"], state["std"]


def frame_index(img: Image.Image, frame: int | str) -> int:
    """The frame to read of a (possibly animated) image: `middle`, or an index capped at the last."""
    count = int(getattr(img, "n_frames", 1))
    return count // 2 if frame == "middle" else min(int(frame), count - 1)


def composite(img: Image.Image, background: tuple[int, ...]) -> Image.Image:
    """Transparent pixels (alpha channel or a palette's transparent index) blended onto `background`."""
    if img.mode not in ("RGBA", "LA", "PA") and "transparency" not in img.info:
        return img
    rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*background[:3], 255))
    return Image.alpha_composite(canvas, rgba)


def fit_square(img: Image.Image, size: int, mode: str, background: tuple[int, ...]) -> Image.Image:
    """size x size: stretched (squash), the whole image centred on `background` (pad) or its centre (crop)."""
    if mode == "squash":
        return img.resize((size, size), Image.Resampling.BILINEAR)
    w, h = img.size
    scale = size / (max(w, h) if mode == "pad" else min(w, h))
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    if mode == "crop":
        left, top = (nw - size) // 2, (nh - size) // 2
        return img.crop((left, top, left + size, top + size))
    fill = background[0] if img.mode == "L" else tuple(background[:3])
    canvas = Image.new(img.mode, (size, size), fill)  # type: ignore[arg-type]
    canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
    return canvas


def random_shift(x: Tensor, max_shift: int) -> Tensor:
    """Shift each image by up to `max_shift` pixels in each direction (zero-padded), one draw per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)  # (B, C, H+2s, W+2s)
    dy = torch.randint(0, 2 * max_shift + 1, (b,))
    dx = torch.randint(0, 2 * max_shift + 1, (b,))
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # (B, H)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # (B, W)
    idx = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
