"""The gated delta rule (Gated DeltaNet, Yang et al., ICLR 2025) in chunks, pure PyTorch: the CPU path and the
reference of the fla kernel (`fla.py` beside this file). Tested against the token-by-token recurrence in
`naive.py` in float64, values and gradients (tests/test_gdn.py).

Per head, with state S (K x V), decay a_t = exp(g_t) and write strength beta_t:

    S_t = a_t S_{t-1} + k_t (beta_t (v_t - a_t S_{t-1}^T k_t))^T,      o_t = S_t^T (scale q_t)

Within a chunk of C tokens starting from state S_0, write G_i = g_1 + ... + g_i (log decay since the chunk began).
The corrected values u'_j = beta_j (v_j - (prediction of v_j)) solve a unit lower-triangular system (the WY
representation, DeltaNet, Yang et al. 2024):

    (I + A) U' = beta V - (beta e^G K) S_0,      A_ji = beta_j (k_j . k_i) e^{G_j - G_i}   (i < j)

so U' = u - w S_0 with u = (I + A)^-1 beta V and w = (I + A)^-1 beta e^G K, both computed for every chunk at once;
then per chunk, in order,

    O   = (scale q e^G) S_0 + ((scale Q K^T) o e^{G_i - G_j}, j <= i) U'
    S_C = e^{G_C} S_0 + (K e^{G_C - G})^T U'

Every exponent is <= 0 (g <= 0), so nothing overflows. Only the pass over chunks is sequential.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor


def _tf32(t: Tensor, truncate: bool = False) -> Tensor:
    i = t.view(torch.int32)
    return torch.where(torch.isfinite(t), ((i if truncate else i + 0x1000) & ~0x1FFF).view(torch.float32), t)


class _RoundTF32(torch.autograd.Function):
    """Rounding whose backward rounds the incoming gradient too, as a cast to bfloat16 does under autograd."""

    @staticmethod
    def forward(ctx, t, truncate):
        ctx.truncate = truncate
        return _tf32(t, truncate)

    @staticmethod
    def backward(ctx, g):
        return _tf32(g.float(), ctx.truncate), None


def round_tf32(t: Tensor, truncate: bool = False) -> Tensor:
    """float32 t rounded to TF32 (8-bit exponent, 10-bit mantissa: the low 13 bits of the mantissa cleared): to
    nearest, ties away from zero, or with truncate toward zero, as Hopper's wgmma reads float32 operands from memory
    (PTX ISA: ".tf32 ... will truncate lower 13 bits"); differentiable like a dtype cast (the gradient is rounded
    the same way). Non-finite values are left alone."""
    return _RoundTF32.apply(t.float(), truncate)


def gdn_chunked_torch(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: Optional[float] = None,
                      chunk_size: int = 64, initial_state: Optional[Tensor] = None,
                      return_final_state: bool = False, mm_dtype: Optional[Union[torch.dtype, str]] = None):
    """Chunked gated delta rule.

    q, k: (b, l, h, K) (L2-normalised by the caller); v: (b, l, h, V); g: (b, l, h) log decay (<= 0);
    beta: (b, l, h); scale: multiplies q (default K^-0.5); initial_state: (b, h, K, V).
    Returns o: (b, l, h, V) in q.dtype (and the final state (b, h, K, V) if asked); computes in float32, or float64
    when q is float64. mm_dtype (e.g. bfloat16): round the operands of every matrix product to it, products summed
    in the compute dtype, as a tensor-core kernel on bf16 inputs does (its autograd rounds the gradients flowing
    through them too): the precision floor a bf16 kernel is read against (scripts/gpu_check.py), not a training
    path. mm_dtype "tf32" / "tf32-trunc": operands rounded to TF32's 10-bit mantissa to nearest / toward zero
    (`round_tf32`), the floor of a float32 kernel on tensor cores (fla's dots run in TF32; Hopper truncates)."""
    b, l, h, dk = q.shape
    dv, out_dtype = v.shape[-1], q.dtype
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = dk ** -0.5 if scale is None else scale
    rnd = (lambda t: t) if mm_dtype is None else round_tf32 if mm_dtype == "tf32" else \
        (lambda t: round_tf32(t, truncate=True)) if mm_dtype == "tf32-trunc" else (lambda t: t.to(mm_dtype).to(ct))
    mm = torch.matmul if mm_dtype is None else (lambda a, b: rnd(a) @ rnd(b))
    C = chunk_size
    pad = (-l) % C
    # (b, h, l, .) in the compute dtype; padded steps (g = 0, beta = 0, k = v = q = 0) come after every real one
    # and neither decay nor write the state
    q, k, v = (F.pad(t.transpose(1, 2).to(ct), (0, 0, 0, pad)) for t in (q, k, v))
    g, beta = (F.pad(t.transpose(1, 2).to(ct), (0, pad)) for t in (g, beta))
    n = (l + pad) // C
    q, k, v = (t.reshape(b, h, n, C, -1) for t in (q, k, v))
    G = g.reshape(b, h, n, C).cumsum(-1)  # (b, h, n, C)
    beta = beta.reshape(b, h, n, C, 1)

    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    pair = torch.exp((G[..., :, None] - G[..., None, :]).masked_fill(~causal, -torch.inf))  # e^{G_i - G_j}, j <= i
    kb = k * beta
    A = (mm(kb, k.transpose(-1, -2)) * pair).tril(-1)  # strictly lower: the diagonal of I + A is 1
    eG = G.exp()[..., None]
    # unitriangular: solve_triangular reads A's strict lower triangle and takes the diagonal as 1, i.e. I + A
    u = torch.linalg.solve_triangular(A, v * beta, upper=False, unitriangular=True)
    w = torch.linalg.solve_triangular(A, kb * eG, upper=False, unitriangular=True)
    attn = mm(q, k.transpose(-1, -2)) * pair * scale  # (b, h, n, C, C), j <= i
    q_in = q * eG * scale  # reads the incoming state
    G_end = G[..., -1:]  # (b, h, n, 1)
    k_out = k * torch.exp(G_end - G)[..., None]  # writes the outgoing state

    S = torch.zeros(b, h, dk, dv, dtype=ct, device=q.device) if initial_state is None else initial_state.to(ct)
    outs = []
    for c in range(n):
        v_new = u[:, :, c] - mm(w[:, :, c], S)
        outs.append(mm(q_in[:, :, c], S) + mm(attn[:, :, c], v_new))
        S = S * torch.exp(G_end[:, :, c])[..., None] + mm(k_out[:, :, c].transpose(-1, -2), v_new)
    o = torch.stack(outs, dim=2).reshape(b, h, n * C, dv)[:, :, :l].transpose(1, 2).to(out_dtype)
    return (o, S) if return_final_state else o


def l2_normalize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dim, in float32 (fla's l2norm, use_qk_l2norm_in_kernel), returned in
    x.dtype."""
    xf = x.float() if x.dtype != torch.float64 else x
    return (xf * torch.rsqrt(xf.square().sum(-1, keepdim=True) + eps)).to(x.dtype)
