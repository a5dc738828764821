"""`poe`: product of Gaussian experts over a shared latent (MVAE).

Wu and Goodman, "Multimodal Generative Models for Scalable Weakly-Supervised Learning" (NeurIPS 2018). Each
modality is an expert giving a diagonal Gaussian (mu_m, logvar_m) over a latent; the joint posterior is the
product of the present experts and a standard-normal prior expert, i.e. precision-weighted: precision
T = 1 + sum_m 1/var_m, mean = (sum_m mu_m/var_m) / T. The fused vector is a reparameterised sample in
training and the mean in eval; the KL of the joint posterior to N(0, I), times `beta`, is an auxiliary loss.
Missing modality: its expert is left out of the product (its input is replaced by zeros before the expert
and its precision is set to exactly zero); with no modality present the posterior is the prior N(0, I).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polymodal.fusion.base import FUSIONS, Fusion, FusionOutput, zero_missing
from polymodal.layers import EncoderOutput, mlp


def product_of_experts(mu: Tensor, logvar: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Joint (mu, logvar) (B, L) of the experts (B, N, L) where mask (B, N) is True, times an N(0, I) prior."""
    keep = mask[..., None]  # (B, N, 1)
    precision = torch.where(keep, torch.exp(-logvar), torch.zeros_like(logvar))  # (B, N, L)
    weighted = torch.where(keep, mu * precision, torch.zeros_like(mu))  # (B, N, L)
    total = 1.0 + precision.sum(1)  # (B, L), the prior contributes precision 1 and mean 0
    return weighted.sum(1) / total, -torch.log(total)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) of (B, L) Gaussians, summed over L, averaged over the batch."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(1).mean()


@FUSIONS.register("poe")
class PoEFusion(Fusion):
    """Product of per-modality Gaussian experts and a standard-normal prior.

    Args:
        in_dims: feature width per modality (derived).
        expert_hidden: hidden width of each expert's MLP.
        hidden: latent size, also the fused width.
        beta: weight of the KL term in `aux_losses["kl"]`.
        dropout: dropout inside the experts.
        max_logvar: experts' log-variances are clamped to [-max_logvar, max_logvar] for stability.
    """

    def __init__(self, in_dims: Mapping[str, int], expert_hidden: int = 128, hidden: int = 64, beta: float = 1e-3,
                 dropout: float = 0.1, max_logvar: float = 10.0) -> None:
        super().__init__(in_dims)
        self.experts = nn.ModuleDict({m: mlp(d, expert_hidden, 2 * hidden, 2, dropout)
                                      for m, d in self.in_dims.items()})
        self.beta = beta
        self.max_logvar = max_logvar
        self.out_dim = hidden

    def posterior(self, features: Mapping[str, EncoderOutput],
                  present: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Joint posterior (mu, logvar), each (B, hidden)."""
        stats = [self.experts[m](zero_missing(features[m].pooled, present[m])) for m in self.modalities]
        mu, logvar = torch.stack(stats, dim=1).chunk(2, dim=-1)  # (B, N, L) each
        logvar = logvar.clamp(-self.max_logvar, self.max_logvar)
        mask = torch.stack([present[m].bool() for m in self.modalities], dim=1)  # (B, N)
        return product_of_experts(mu, logvar, mask)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, Tensor]) -> FusionOutput:
        mu, logvar = self.posterior(features, present)  # (B, L) each
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu  # (B, L)
        return FusionOutput(fused=z, aux_losses={"kl": self.beta * kl_to_standard_normal(mu, logvar)})
