"""The registry of dataset layouts that are not one table: name -> `load(data, label_field)` -> tables by split."""

from __future__ import annotations

from polymodal.data.splits import Table
from polymodal.registry import Registry

FORMATS: Registry[dict[str, Table]] = Registry("data format")
