"""The gated delta rule as a token-by-token recurrence: slow, obviously right; what `reference.py` is tested
against (and, in tests, compared with transformers' own torch recurrence)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def gdn_recurrent_naive(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: Optional[float] = None,
                        initial_state: Optional[Tensor] = None, return_final_state: bool = False):
    """S_t = e^{g_t} S_{t-1} + k_t (beta_t (v_t - e^{g_t} S_{t-1}^T k_t))^T,  o_t = S_t^T (scale q_t).

    Same shapes as `gdn_chunked_torch`: q, k (b, l, h, K); v (b, l, h, V); g, beta (b, l, h). O(l) Python steps."""
    b, l, h, dk = q.shape
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = dk ** -0.5 if scale is None else scale
    q, k, v, g, beta = (t.to(ct) for t in (q, k, v, g, beta))
    S = torch.zeros(b, h, dk, v.shape[-1], dtype=ct, device=q.device) if initial_state is None else initial_state.to(ct)
    outs = []
    for t in range(l):
        S = S * torch.exp(g[:, t])[..., None, None]
        pred = torch.einsum("bhkv,bhk->bhv", S, k[:, t])
        delta = (v[:, t] - pred) * beta[:, t, :, None]
        S = S + torch.einsum("bhk,bhv->bhkv", k[:, t], delta)
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t] * scale))
    o = torch.stack(outs, dim=1).to(q.dtype)
    return (o, S) if return_final_state else o
