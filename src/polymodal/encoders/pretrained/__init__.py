"""Pretrained encoders whose weights load from a local path or an installed weight package (never downloaded):
MobileNetV2 and EfficientNet-Lite0 (images), all-MiniLM-L6-v2 and any transformers model (text, images),
aiSFX (sound effects), any timm model (if timm imports). Importing this package registers them."""

from __future__ import annotations

from polymodal.encoders.pretrained import aisfx, efficientnet, hf, mobilenet, timm_model  # noqa: F401  (registration)
