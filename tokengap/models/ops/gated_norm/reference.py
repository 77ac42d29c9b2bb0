"""The gated RMSNorm of Mamba2 and GDN layers in PyTorch: the twin of mamba_ssm's `rmsnorm_fn` (Triton), which
`mamba_ssm.py` beside this file wraps."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def gated_rms_norm_torch(x: Tensor, z: Tensor, weight: Tensor, eps: float, group_size: int,
                         norm_before_gate: bool = False) -> Tensor:
    """Gated RMSNorm per group of `group_size` channels, times weight, with mamba_ssm's two orders:

      norm_before_gate=False (Mamba2):  RMSNorm(x * silu(z)) * weight
      norm_before_gate=True  (GDN, fla's FusedRMSNormGated):  RMSNorm(x) * weight * silu(z)

    x, z: (..., d); weight: (d,). Computed in float32, returned in x.dtype."""
    dtype = x.dtype
    gate = F.silu(z.float())
    y = x.float() if norm_before_gate else x.float() * gate
    yg = y.unflatten(-1, (-1, group_size))
    yg = yg * torch.rsqrt(yg.square().mean(-1, keepdim=True) + eps)
    y = yg.flatten(-2) * weight.float()
    return (y * gate if norm_before_gate else y).to(dtype)


class GatedRMSNorm(nn.Module):
    """Holds the weight of a gated RMSNorm (d,) and its group size; the op itself is MixerOps.gated_norm."""

    def __init__(self, d: int, group_size: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.group_size, self.eps = group_size, eps
