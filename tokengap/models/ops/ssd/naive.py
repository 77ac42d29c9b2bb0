"""Mamba2's SSM as a token-by-token recurrence: slow, obviously right; what `reference.py` is tested against."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tokengap.models.ops.ssd.reference import _discretize_dt, _heads


def ssd_recurrent_naive(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Optional[Tensor] = None, dt_bias: Optional[Tensor] = None, dt_softplus: bool = False,
) -> Tensor:
    """Token-by-token SSM recurrence h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t^T, y_t = h_t C_t + D x_t.

    Same shapes as `ssd_chunked_torch`. O(l) Python steps: tests only."""
    b, l, h, p = x.shape
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    dt = _discretize_dt(dt, dt_bias, dt_softplus).to(ct)
    xs, Bh, Ch, A = x.to(ct), _heads(B, h).to(ct), _heads(C, h).to(ct), A.to(ct)
    state = torch.zeros(b, h, p, Bh.shape[-1], dtype=ct, device=x.device)
    ys = []
    for t in range(l):
        dA = torch.exp(dt[:, t] * A)  # (b, h)
        state = state * dA[..., None, None] + torch.einsum("bh,bhn,bhp->bhpn", dt[:, t], Bh[:, t], xs[:, t])
        ys.append(torch.einsum("bhpn,bhn->bhp", state, Ch[:, t]))
    y = torch.stack(ys, dim=1)
    if D is not None:
        Dv = D.to(ct)
        y = y + xs * (Dv[:, None] if Dv.dim() == 1 else Dv)
    return y.to(x.dtype)
