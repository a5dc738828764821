"""`training.precision`: float32, mixed (autocast, with a loss scaler for float16) or the whole model in one dtype."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import fields, is_dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

DTYPES = {"16": torch.float16, "bf16": torch.bfloat16, "32": torch.float32, "64": torch.float64}


class Precision:
    """What one precision setting does: autocast around forward passes, loss scaling, casting model and inputs.

    Args:
        name: `32-true`, `16-mixed`, `bf16-mixed`, `16-true`, `bf16-true` or `64-true`.
        device: where training runs.
    """

    def __init__(self, name: str, device: torch.device) -> None:
        bits, kind = name.split("-")
        self.name, self.device, self.dtype = name, device, DTYPES[bits]
        self.mixed = kind == "mixed"
        self.cast = kind == "true" and self.dtype != torch.float32
        self.scaler = torch.amp.GradScaler(device.type) if self.mixed and self.dtype == torch.float16 else None

    def autocast(self) -> AbstractContextManager[Any]:
        """Around a forward pass: autocast (`*-mixed`), or new floating-point tensors in the model's dtype
        (`*-true`)."""
        if self.mixed:
            return torch.autocast(self.device.type, dtype=self.dtype)
        return default_dtype(self.dtype) if self.cast else nullcontext()

    def convert_module(self, module: nn.Module) -> nn.Module:
        return module.to(self.dtype) if self.cast else module

    def convert_input(self, batch: Any) -> Any:
        """Floating-point tensors of a batch in the model's dtype (`*-true`); as is otherwise."""
        return cast_floats(batch, self.dtype) if self.cast else batch

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """`value` with every floating-point tensor inside it (dicts, lists, dataclasses) cast to `dtype`."""
    if isinstance(value, Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: cast_floats(v, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cast_floats(v, dtype) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: cast_floats(getattr(value, f.name), dtype) for f in fields(value) if f.init})
    return value
