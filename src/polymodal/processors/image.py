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
        source, name = file_source(value, root)
        try:
            with Image.open(source) as img:
                return np.asarray(img.convert("L" if self.spec.channels == 1 else "RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            reason = str(err).replace(f" {source!r}", "")  # Pillow names an in-memory file by its object repr
            raise RecordError(f"cannot decode image {name} ({type(err).__name__}: {reason})") from None

    def features(self, raw: np.ndarray) -> Arrays:
        img = Image.fromarray(np.ascontiguousarray(raw, dtype=np.uint8))
        img = img.resize((self.spec.size, self.spec.size), Image.Resampling.BILINEAR)
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
