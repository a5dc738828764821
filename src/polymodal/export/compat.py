"""Export-time stand-ins that compute the same values as the eager code with operations ONNX can express, bound to
the modules of an export copy of the model (never to the library classes: a server in the same process keeps
the library versions)."""

from __future__ import annotations

from copy import deepcopy
from types import MethodType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.encoders.recurrent import BiGRU


def unpacked_bigru(self: BiGRU, x: Tensor, mask: Tensor) -> Tensor:
    """`BiGRU.forward` without packed sequences: (B, T, E) + mask (B, T) -> (B, T, D), zeros at padding.

    The forward direction runs over the padded batch (padding only follows the real steps); the backward
    direction runs over each sequence reversed within its own length, then is reversed back. Same weights,
    same lengths (at least 1) as the packed version.
    """
    gru = self.gru
    lengths = mask.sum(1).clamp_min(1)  # (B,)
    steps = torch.arange(x.shape[1], device=x.device)[None]  # (1, T)
    real = steps < lengths[:, None]  # (B, T)
    rev = torch.where(real, lengths[:, None] - 1 - steps, steps)  # (B, T) an involution
    h = x
    for layer in range(gru.num_layers):
        fwd = _direction(gru, layer, "", h)  # (B, T, H)
        bwd = _gather(_direction(gru, layer, "_reverse", _gather(h, rev)), rev)  # (B, T, H)
        both = torch.cat([fwd, bwd], dim=-1)  # (B, T, 2H)
        h = torch.where(real[..., None], both, torch.zeros_like(both))
    return h


def _direction(gru: torch.nn.GRU, layer: int, suffix: str, x: Tensor) -> Tensor:
    names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if gru.bias else ())
    params = [getattr(gru, f"{n}_l{layer}{suffix}") for n in names]
    h0 = x.new_zeros(1, x.shape[0], gru.hidden_size)  # (1, B, H)
    return torch.gru(x, h0, params, gru.bias, 1, 0.0, False, False, True)[0]  # (B, T, H)


def _gather(x: Tensor, index: Tensor) -> Tensor:
    """x (B, T, D) reordered along T by index (B, T)."""
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))


_LIBRARY_ATTENTION = nn.MultiheadAttention.forward


def plain_attention(self: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor,
                    key_padding_mask: Tensor | None = None, need_weights: bool = True,
                    attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                    is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
    """`nn.MultiheadAttention.forward` (batch first, packed in-projection, padding mask only, no weights) in
    shape-agnostic reshapes: the TorchScript-based exporter freezes the key length of the library version.
    Any other configuration runs the library version."""
    if (not self.batch_first or not self._qkv_same_embed_dim or self.bias_k is not None or self.add_zero_attn
            or attn_mask is not None or is_causal or need_weights or query.dim() != 3):
        key = key.view_as(key) if key is query else key  # another tensor object: keeps the library off its fused
        value = value.view_as(value) if value is query else value  # kernel, which reads only `query is key`
        return _LIBRARY_ATTENTION(self, query, key, value, key_padding_mask, need_weights, attn_mask,
                                  average_attn_weights, is_causal)
    heads = self.num_heads
    w = self.in_proj_weight.chunk(3)
    b = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
    q, k, v = (_heads(F.linear(x, wi, bi), heads) for x, wi, bi in zip((query, key, value), w, b))  # (B, H, T, d)
    scores = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5)  # (B, H, Tq, Tk)
    if key_padding_mask is not None:
        ignore = key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk)
        bias = torch.where(ignore, float("-inf"), 0.0) if ignore.dtype == torch.bool else ignore.to(scores.dtype)
        scores = scores + bias
    out = (scores.softmax(-1) @ v).transpose(1, 2)  # (B, Tq, H, d)
    return self.out_proj(out.reshape(out.shape[0], out.shape[1], -1)), None  # (B, Tq, D)


def _heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, D) -> (B, H, T, D / H)."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def export_friendly(module: nn.Module) -> nn.Module:
    """A copy of `module` whose `BiGRU`s run without packed sequences, whose multi-head attention runs without the
    reshapes the exporters cannot keep dynamic, and whose Transformer encoder stacks and layers never take torch's
    fused inference path (`aten::_transformer_encoder_layer_fwd`, nested tensors), per module rather than through
    the process-wide `torch.backends.mha` switch; all compute the same values. `module` is left as it is."""
    copy = deepcopy(module)
    for m in copy.modules():
        if isinstance(m, BiGRU):
            m.forward = MethodType(unpacked_bigru, m)  # type: ignore[method-assign]
        elif isinstance(m, nn.MultiheadAttention):
            m.forward = MethodType(plain_attention, m)  # type: ignore[method-assign]
        elif isinstance(m, nn.TransformerEncoder):
            m.use_nested_tensor = False  # the stack's sparsity fast path
        elif isinstance(m, nn.TransformerEncoderLayer):
            m.activation_relu_or_gelu = 0  # the layer's fast path; the plain path calls `m.activation` as before
    return copy
