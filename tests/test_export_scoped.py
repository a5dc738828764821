"""Export changes nothing process-wide: torch's fast-path switch stays as it was during and after export, and the
export copy keeps Transformer layers and attention off the fused kernels per module."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.export.graph import exportable


class Stack(nn.Module):
    """A Transformer encoder stack with padding, then self-attention asking for its weights."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2,
                                             enable_nested_tensor=True)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        h = self.encoder(x, src_key_padding_mask=padding)  # (B, T, D)
        return self.attention(h, h, h, key_padding_mask=padding, need_weights=True)[0]  # (B, T, D)


FUSED = ("_transformer_encoder_layer_fwd", "_nested_tensor_from_mask", "_native_multi_head_attention")


def fused_ops(module: nn.Module, args: tuple[Tensor, ...]) -> set[str]:
    graph = str(torch.jit.trace(module, args, check_trace=False).inlined_graph)
    return {op for op in FUSED if op in graph}


def test_export_leaves_the_fast_path_switch_alone_and_keeps_its_copy_off_the_fused_kernels() -> None:
    torch.manual_seed(0)
    model = Stack().eval()
    x, padding = torch.randn(2, 5, 8), torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    assert torch.backends.mha.get_fastpath_enabled()
    with torch.no_grad():
        assert fused_ops(model, (x, padding))  # the library takes its fused path on this model
        expected = model(x, padding)
    with exportable(model) as friendly:
        during = torch.backends.mha.get_fastpath_enabled()  # e.g. a server thread's view while export runs
        used = fused_ops(friendly, (x, padding))
        got = friendly(x, padding)
    assert during and torch.backends.mha.get_fastpath_enabled()
    assert used == set()
    real = ~padding  # padded positions carry no meaning
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert fused_ops(model, (x, padding))  # the original module is untouched
