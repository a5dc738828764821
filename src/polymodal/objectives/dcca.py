"""Deep canonical correlation analysis between modality pairs (Andrew et al., ICML 2013)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from polymodal.objectives.base import OBJECTIVES, Objective

if TYPE_CHECKING:
    from polymodal.data.batch import Batch
    from polymodal.output import Output


@OBJECTIVES.register("dcca")
class DCCA(Objective):
    """Maximizes the total canonical correlation between linear projections of each pair's pooled features.

    The loss is minus the sum of the `k` canonical correlations (at best -k), over the records where both
    modalities are present (pairs with fewer than 2 are skipped), averaged over pairs.

    Args:
        in_dims: pooled encoder width per modality (derived).
        fused_dim: fused width (derived, unused).
        k: projected width per modality (number of canonical correlations).
        ridge: added to the diagonal of each covariance, for stability on small batches.
    """

    def __init__(self, in_dims: Mapping[str, int], fused_dim: int, k: int = 16, ridge: float = 1e-3) -> None:
        super().__init__(in_dims, fused_dim)
        self.proj = nn.ModuleDict({m: nn.Linear(d, k) for m, d in in_dims.items()})
        self.ridge = ridge

    def forward(self, model: Callable[[Batch], Output], batch: Batch, out: Output) -> Tensor:
        h = {m: self.proj[m](x) for m, x in out.features.items()}  # each (B, k)
        losses = []
        for a, b in self.pairs():
            both = batch.present[a] & batch.present[b]  # (B,)
            if int(both.sum()) >= 2:
                losses.append(-total_correlation(h[a][both], h[b][both], self.ridge))
        return torch.stack(losses).mean() if losses else self.zero()


def total_correlation(h1: Tensor, h2: Tensor, ridge: float = 1e-3) -> Tensor:
    """Sum of the canonical correlations of (N, k1) and (N, k2): the trace norm of S11^-1/2 S12 S22^-1/2.

    The whitening uses Cholesky factors (S = L L^T; L^-1 S12 L2^-T has the same singular values as the
    symmetric form), and the singular values come from `eigvalsh` of T^T T, whose gradient stays finite when
    eigenvalues repeat. Computed in float64.
    """
    n = h1.shape[0]
    x1, x2 = (h - h.mean(dim=0) for h in (h1.double(), h2.double()))
    s11 = x1.T @ x1 / (n - 1) + ridge * torch.eye(x1.shape[1], dtype=x1.dtype, device=x1.device)  # (k1, k1)
    s22 = x2.T @ x2 / (n - 1) + ridge * torch.eye(x2.shape[1], dtype=x2.dtype, device=x2.device)  # (k2, k2)
    s12 = x1.T @ x2 / (n - 1)  # (k1, k2)
    l1, l2 = torch.linalg.cholesky(s11), torch.linalg.cholesky(s22)
    left = torch.linalg.solve_triangular(l1, s12, upper=False)  # L1^-1 S12, (k1, k2)
    t = torch.linalg.solve_triangular(l2, left.T, upper=False).T  # L1^-1 S12 L2^-T, (k1, k2)
    eig = torch.linalg.eigvalsh(t.T @ t)  # (k2,) squared canonical correlations
    return eig.clamp(min=1e-10).sqrt().sum().to(h1.dtype)
