"""The short causal depthwise conv (+ SiLU) of Mamba2 and GDN layers in PyTorch (F.conv1d): the twin of
`kernel.py` (ours, Triton) and of causal-conv1d's and fla's kernels (`tokengap/models/ops/external.py`)."""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor


def causal_conv1d_torch(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: bool = True) -> Tensor:
    """Depthwise causal conv over time, then SiLU. x: (b, l, c); weight: (c, k); bias: (c,). Returns (b, l, c)."""
    l, k = x.shape[1], weight.shape[-1]
    y = F.conv1d(x.transpose(1, 2), weight.unsqueeze(1), bias, padding=k - 1, groups=weight.shape[0])[..., :l]
    y = y.transpose(1, 2)
    return F.silu(y) if activation else y
