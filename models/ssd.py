"""Pure-PyTorch Mamba2 ops: the reference path (CPU, and anything without the Triton kernels).

- `ssd_chunked_torch`: the chunked state-space-dual scan (Mamba2 paper, Listing 1 / mamba_ssm `ssd_minimal`),
  same arguments as mamba_ssm's `mamba_chunk_scan_combined`; any sequence length (padded internally).
- `ssd_recurrent_naive`: the same map as a token-by-token recurrence; slow, obviously right, for tests.
- `causal_conv1d_torch`, `gated_rms_norm_torch`: twins of causal-conv1d's and mamba_ssm's gated RMSNorm kernels.

Notation: b batch, l sequence, h SSM heads, p head channels, g groups of B/C, n state size.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def _discretize_dt(dt: Tensor, dt_bias: Optional[Tensor], dt_softplus: bool) -> Tensor:
    dt = dt.float() if dt.dtype != torch.float64 else dt
    if dt_bias is not None:
        dt = dt + dt_bias.to(dt.dtype)
    return F.softplus(dt) if dt_softplus else dt


def _heads(t: Tensor, h: int) -> Tensor:
    """(b, l, g, n) -> (b, l, h, n): each group of B/C serves h/g consecutive heads."""
    return t.repeat_interleave(h // t.shape[2], dim=2)


def segsum(x: Tensor) -> Tensor:
    """(..., T) -> (..., T, T) with out[..., i, j] = sum(x[..., j+1 : i+1]) for i >= j, else -inf.

    Built from a masked cumulative sum rather than a difference of cumsums, which loses precision."""
    T = x.size(-1)
    x = x[..., None].expand(*x.shape, T)  # x[..., i, j] = x_i
    below = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=-1)
    s = torch.cumsum(x.masked_fill(~below, 0), dim=-2)
    keep = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=0)
    return s.masked_fill(~keep, -torch.inf)


def ssd_chunked_torch(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int,
    D: Optional[Tensor] = None, dt_bias: Optional[Tensor] = None, dt_softplus: bool = False,
    return_final_states: bool = False,
):
    """Chunked SSD scan.

    x: (b, l, h, p); dt: (b, l, h); A: (h,) negative; B, C: (b, l, g, n); D: (h,) or (h, p).
    Returns y: (b, l, h, p) in x.dtype (and the final state (b, h, p, n) if asked).
    Computes in float32, or float64 when x is float64.
    """
    b, l, h, p = x.shape
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    dt = _discretize_dt(dt, dt_bias, dt_softplus).to(ct)
    xs, Bh, Ch = x.to(ct), _heads(B, h).to(ct), _heads(C, h).to(ct)
    pad = (-l) % chunk_size
    if pad:  # zero dt: padded steps neither decay nor write the state, and they come after every real step
        xs, Bh, Ch = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (xs, Bh, Ch))
        dt = F.pad(dt, (0, 0, 0, pad))
    c, L = (l + pad) // chunk_size, chunk_size
    X = (xs * dt[..., None]).reshape(b, c, L, h, p)
    Adt = (dt * A.to(ct)).reshape(b, c, L, h).permute(0, 3, 1, 2)  # (b, h, c, L)
    Bc, Cc = Bh.reshape(b, c, L, h, -1), Ch.reshape(b, c, L, h, -1)

    A_cum = torch.cumsum(Adt, dim=-1)
    # 1. within-chunk outputs (the quadratic, attention-like form)
    decay = torch.exp(segsum(Adt))  # (b, h, c, L, L)
    scores = torch.einsum("bclhn,bcshn->bhcls", Cc, Bc) * decay
    y_diag = torch.einsum("bhcls,bcshp->bclhp", scores, X)
    # 2. each chunk's final state, from its own inputs
    decay_to_end = torch.exp(A_cum[..., -1:] - A_cum)  # (b, h, c, L)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bc, decay_to_end, X)
    # 3. pass states across chunks (a scan over c+1 chunk boundaries)
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
    chunk_decay = torch.exp(segsum(F.pad(A_cum[..., -1], (1, 0))))  # (b, h, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)
    states, final = states[:, :-1], states[:, -1]
    # 4. contribution of the incoming state to each position
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", Cc, states, torch.exp(A_cum))

    y = (y_diag + y_off).reshape(b, c * L, h, p)[:, :l]
    if D is not None:
        Dv = D.to(ct)
        y = y + x.to(ct) * (Dv[:, None] if Dv.dim() == 1 else Dv)
    y = y.to(x.dtype)
    return (y, final) if return_final_states else y


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


def causal_conv1d_torch(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: bool = True) -> Tensor:
    """Depthwise causal conv over time, then SiLU. x: (b, l, c); weight: (c, k); bias: (c,). Returns (b, l, c)."""
    l, k = x.shape[1], weight.shape[-1]
    y = F.conv1d(x.transpose(1, 2), weight.unsqueeze(1), bias, padding=k - 1, groups=weight.shape[0])[..., :l]
    y = y.transpose(1, 2)
    return F.silu(y) if activation else y


def gated_rms_norm_torch(x: Tensor, z: Tensor, weight: Tensor, eps: float, group_size: int) -> Tensor:
    """RMSNorm(x * silu(z)) per group of `group_size` channels, times weight (mamba_ssm norm_before_gate=False).

    x, z: (..., d); weight: (d,). Computed in float32, returned in x.dtype."""
    dtype = x.dtype
    y = x.float() * F.silu(z.float())
    yg = y.unflatten(-1, (-1, group_size))
    yg = yg * torch.rsqrt(yg.square().mean(-1, keepdim=True) + eps)
    return (yg.flatten(-2) * weight.float()).to(dtype)
