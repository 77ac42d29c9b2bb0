"""Mamba2's chunked state-space-dual scan in pure PyTorch: the reference path (CPU, and CUDA without mamba-ssm).

`ssd_chunked_torch` follows the Mamba2 paper, Listing 1 (mamba_ssm `ssd_minimal`), with the same arguments as
mamba_ssm's `mamba_chunk_scan_combined`; any sequence length (padded internally). Kernel: `mamba_ssm.py` beside
this file; the token-by-token recurrence it is tested against: `naive.py`.

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
