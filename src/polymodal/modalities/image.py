"""Image: a file (PNG, JPEG, GIF, WebP ...) resized to size x size pixels."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from polymodal.modalities.base import (
    FILE_FORM,
    CorruptionPart,
    Modality,
    Preprocess,
    ServerInput,
    file_schema,
    kernel,
    register,
)
from polymodal.schema import Component, ModalityBase


class ImageSpec(ModalityBase):
    type: Literal["image"]
    size: int = Field(32, ge=8, description="images are resized to size x size")
    channels: Literal[1, 3] = 3
    augment: bool = Field(True, description="random shifts and brightness jitter while training")
    mean: list[float] | None = Field(None, description="per-channel mean for normalisation (pixels in 0..1), e.g. "
                                                       "ImageNet's [0.485, 0.456, 0.406] for pretrained encoders; "
                                                       "null: fitted on the training images")
    std: list[float] | None = Field(None, description="per-channel std, e.g. ImageNet's [0.229, 0.224, 0.225]; "
                                                      "set together with mean")
    resize: Literal["squash", "pad", "crop"] = Field(
        "squash", description="squash: stretch to size x size | pad: keep the aspect ratio, fill the rest with "
                              "background | crop: keep the aspect ratio, cut the centre square")
    background: list[int] = Field([255, 255, 255], min_length=3, max_length=3,
                                  description="RGB colour that transparent pixels are composited onto (and pad fills)")
    frame: int | Literal["middle"] = Field(0, description="animated images (GIF, APNG, WebP): which frame; 'middle' "
                                                          "or an index (past the last: the last)")

    @model_validator(mode="after")
    def _fixed_stats(self) -> ImageSpec:
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean, std: set both (fixed normalisation) or neither (fitted on the training images)")
        for key, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) != self.channels:
                raise ValueError(f"{key}: one value per channel ({self.channels}), got {len(values)}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError("std: values must be positive")
        return self


def describe(spec: ImageSpec, state: str) -> str:
    mode = "L (grey)" if spec.channels == 1 else "RGB"
    return (f"pixels (B, {spec.channels}, {spec.size}, {spec.size}) float32: decode the file, convert to {mode}, "
            f"resize to {spec.size}x{spec.size} (bilinear), channels first, then (uint8 / 255 - mean[c]) / std[c] "
            f"(mean/std: {state})")


IMAGE = register(Modality(
    name="image",
    spec=ImageSpec,
    processor="polymodal.processors.image:ImageProcessor",
    encoder=Component(name="image_cnn"),
    corruptions=(
        CorruptionPart("gaussian_noise", kernel("image_noise"), (0.04, 0.08, 0.12, 0.18, 0.26)),
        CorruptionPart("blur", kernel("image_blur"), (0.01, 0.02, 0.03, 0.05, 0.08)),
        CorruptionPart("occlusion", kernel("image_occlusion"), (0.05, 0.10, 0.20, 0.35, 0.50)),
        CorruptionPart("contrast", kernel("image_contrast"), (0.60, 0.45, 0.30, 0.20, 0.10)),
    ),
    server=ServerInput("file", file_schema("image"), FILE_FORM),
    describe=describe,
    preprocess=Preprocess("image"),
    extensions=(".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"),
))
