"""Readers of dataset layouts that are not one table (they produce the same per-split tables); importing this
package fills `FORMATS`."""

from polymodal.data.formats import coco, mosi, multi30k, vqa  # noqa: F401  (registration)
from polymodal.data.formats.base import FORMATS

__all__ = ["FORMATS"]
