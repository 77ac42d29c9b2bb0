"""The pre-norm residual step in PyTorch, s = x + y then h = nn.RMSNorm(s): the twin of `kernel.py` (Triton), and
`fused_add_rms_norm`, which puts the kernel behind the twin's signature."""
from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
import torch.nn as nn
from torch import Tensor


def autocast_dtype() -> Optional[torch.dtype]:
    """The CUDA autocast dtype when autocast is on (what a Linear casts its input to), else None."""
    return torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None


def add_rms_norm_torch(x: Tensor, y: Optional[Tensor], norm: nn.RMSNorm) -> tuple[Tensor, Tensor]:
    """(s, h) = (x + y, norm(x + y)); y = None: (x, norm(x)). x, y: (..., d)."""
    s = x if y is None else x + y
    return s, norm(s)


@functools.cache  # one wrapper per kernel: torch.compile sees the same function every forward
def fused_add_rms_norm(fn: Callable) -> Callable:
    """add_rms_norm_torch's signature over kernel.add_rms_norm_triton (`fn`); h comes out in the autocast dtype
    (what the Linear after it would cast it to), else in s's dtype."""
    def add_norm(x: Tensor, y: Optional[Tensor], norm: nn.RMSNorm) -> tuple[Tensor, Tensor]:
        if norm.weight is None:  # not a configuration of ours; keep nn.RMSNorm's semantics
            return add_rms_norm_torch(x, y, norm)
        return fn(x, y, norm.weight, norm.eps, autocast_dtype())
    return add_norm
