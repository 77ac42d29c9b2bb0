"""The short causal depthwise conv (+ SiLU) of Mamba2 and GDN layers as Triton kernels: one forward, a two-pass
backward.

    y[b, t, c] = silu(bias[c] + sum_k weight[c, k] * x[b, t - (K-1) + k, c])      (x = 0 before t = 0)

Twin: `reference.causal_conv1d_torch` beside this file (F.conv1d). Parity: `tests/test_conv_triton.py` (the Triton
interpreter on CPU, so CI runs it; the compiled kernels on CUDA) and `scripts/gpu_check.py`.

Why our own rather than fla's `causal_conv1d`: it needs only triton (a core dependency; fla is optional), uses
fixed tiles, so every process runs the same kernel, and is registered as custom ops, so torch.compile keeps it
in the graph. Its device time against fla's: BENCHMARKS.md.

Backward: pass 1 recomputes the pre-activation from x (the K shifted tiles hit L1/L2) and writes
g = dy * silu'(pre) in x.dtype, with the weight and bias gradients of its tile, from the float32 g (one float32
(C, K) row per BLOCK_L positions, summed over tiles by torch); pass 2 is dx[t] = sum_m weight[K-1-m] g[t+m].
g in x.dtype (bf16 under autocast) is what the twin hands its conv backward too (SiLU's bf16 gradient) and moves
fewer bytes than a float32 g. Variants measured and rejected (one pass, overlapping tiles with the shift on the
tensor cores): BENCHMARKS.md.

Layout: x (b, l, c) with unit channel stride and any batch/time strides, so the strided view that in_proj's
split gives is read in place; y and dx come out contiguous. Computes in float32, stores in x.dtype.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

# Fixed, no autotuning: every process runs the same kernel. The best of 6 configs by device time at the hybrid
# `small` and `base` shapes (scripts/conv_sweep.py; BENCHMARKS.md).
BLOCK_L, BLOCK_C, NUM_WARPS = 32, 64, 2


@triton.jit
def _rows(base, pos, stride_l, c, cm, L):
    """(BL, BC) float32 tile of rows `pos` (zero outside [0, L)) and channels `c` (masked by cm)."""
    return tl.load(base + pos.to(tl.int64)[:, None] * stride_l + c[None, :],
                   mask=((pos >= 0) & (pos < L))[:, None] & cm[None, :], other=0.0).to(tl.float32)


@triton.jit
def _tap(w_ptr, c, cm, K: tl.constexpr, k):
    """(1, BC) float32: tap k of the weight (C, K) for channels c."""
    return tl.load(w_ptr + c * K + k, mask=cm, other=0.0).to(tl.float32)[None, :]


@triton.jit
def _pre_activation(xb, s, sxl, c, cm, w_ptr, bias_ptr, L,
                    K: tl.constexpr, HAS_BIAS: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    """bias + sum_k weight[:, k] * x[s - (K-1) + k] for output positions s: (BL, BC) float32."""
    acc = tl.zeros((BL, BC), dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + c, mask=cm, other=0.0).to(tl.float32)[None, :]
    for k in tl.static_range(K):
        acc += _rows(xb, s - (K - 1) + k, sxl, c, cm, L) * _tap(w_ptr, c, cm, K, k)
    return acc


@triton.jit
def _conv_fwd_kernel(x_ptr, w_ptr, bias_ptr, y_ptr, L, C, sxb, sxl, syb, syl, SM: tl.constexpr,
                     K: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    sxb, sxl, syb, syl = sxb * SM, sxl * SM, syb * SM, syl * SM  # strides come divided by SM (see _strides)
    pid_l, pid_c, pid_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    t = pid_l * BL + tl.arange(0, BL)
    c = pid_c * BC + tl.arange(0, BC)
    cm = c < C
    acc = _pre_activation(x_ptr + pid_b.to(tl.int64) * sxb, t, sxl, c, cm, w_ptr, bias_ptr, L, K, HAS_BIAS, BL, BC)
    if ACT:
        acc = acc * tl.sigmoid(acc)
    tl.store(y_ptr + pid_b.to(tl.int64) * syb + t.to(tl.int64)[:, None] * syl + c[None, :],
             acc.to(y_ptr.dtype.element_ty), mask=(t < L)[:, None] & cm[None, :])


@triton.jit
def _conv_bwd_g_kernel(x_ptr, w_ptr, bias_ptr, dy_ptr, g_ptr, dw_ptr, db_ptr, L, C, n_lt,
                       sxb, sxl, sdyb, sdyl, sgb, sgl, SM: tl.constexpr,
                       K: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    """Backward, pass 1: g = dy * silu'(pre) into g (stored in x.dtype); the partial dw, db of this tile, from the
    float32 g, into row (b * n_lt + time tile) of dw (rows, C, K) and db (rows, C), summed over rows by torch."""
    sxb, sxl, sdyb, sdyl, sgb, sgl = sxb * SM, sxl * SM, sdyb * SM, sdyl * SM, sgb * SM, sgl * SM
    pid_l, pid_c, pid_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    t = pid_l * BL + tl.arange(0, BL)
    c = pid_c * BC + tl.arange(0, BC)
    cm = c < C
    xb = x_ptr + pid_b.to(tl.int64) * sxb
    row = pid_b.to(tl.int64) * n_lt + pid_l
    g = _rows(dy_ptr + pid_b.to(tl.int64) * sdyb, t, sdyl, c, cm, L)
    if ACT:
        pre = _pre_activation(xb, t, sxl, c, cm, w_ptr, bias_ptr, L, K, HAS_BIAS, BL, BC)
        sig = tl.sigmoid(pre)
        g = g * sig * (1.0 + pre * (1.0 - sig))
    tl.store(g_ptr + pid_b.to(tl.int64) * sgb + t.to(tl.int64)[:, None] * sgl + c[None, :],
             g.to(g_ptr.dtype.element_ty), mask=(t < L)[:, None] & cm[None, :])
    for k in tl.static_range(K):
        dwk = tl.sum(g * _rows(xb, t - (K - 1) + k, sxl, c, cm, L), axis=0)
        tl.store(dw_ptr + (row * C + c) * K + k, dwk, mask=cm)
    if HAS_BIAS:
        tl.store(db_ptr + row * C + c, tl.sum(g, axis=0), mask=cm)


@triton.jit
def _conv_bwd_dx_kernel(g_ptr, w_ptr, dx_ptr, L, C, sgb, sgl, sdxb, sdxl, SM: tl.constexpr,
                        K: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    """Backward, pass 2: dx[t] = sum_m weight[K-1-m] * g[t+m]."""
    sgb, sgl, sdxb, sdxl = sgb * SM, sgl * SM, sdxb * SM, sdxl * SM
    pid_l, pid_c, pid_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    t = pid_l * BL + tl.arange(0, BL)
    c = pid_c * BC + tl.arange(0, BC)
    cm = c < C
    gb = g_ptr + pid_b.to(tl.int64) * sgb
    dx = tl.zeros((BL, BC), dtype=tl.float32)
    for m in tl.static_range(K):
        dx += _rows(gb, t + m, sgl, c, cm, L) * _tap(w_ptr, c, cm, K, K - 1 - m)
    tl.store(dx_ptr + pid_b.to(tl.int64) * sdxb + t.to(tl.int64)[:, None] * sdxl + c[None, :],
             dx.to(dx_ptr.dtype.element_ty), mask=(t < L)[:, None] & cm[None, :])


def _unit_channel_stride(x: Tensor) -> Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _strides(*tensors: Tensor) -> tuple:
    """Batch and time strides of each (b, l, c) tensor, divided by SM, then SM: the largest power of two up to
    16 that divides them all. Multiplied back by the constexpr SM inside the kernel, they tell Triton that rows
    start on SM-element boundaries, so it can issue vector loads. Without it a row stride that is not a multiple
    of 16 (e.g. a Mamba2 in_proj width of 3352) is treated as arbitrary and every load is scalar."""
    strides = [s for t in tensors for s in (t.stride(0), t.stride(1))]
    sm = 16
    while sm > 1 and any(s % sm for s in strides):
        sm //= 2
    return (*(s // sm for s in strides), sm)


# Custom ops rather than an autograd.Function: torch.compile keeps them in the graph as opaque calls instead of
# breaking the graph around them. flexible_layout: the kernels take any batch and time strides, so inductor may
# hand over its own layout. Without the tag it matched the strides of eager mode: inductor pads in_proj's output
# rows and copied the conv's input into eager's layout, forward and backward (BENCHMARKS.md).
@torch.library.custom_op("tokengap::causal_conv1d_fwd", mutates_args=(), tags=(torch.Tag.flexible_layout,))
def _conv_fwd(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: bool,
              block_l: int, block_c: int, num_warps: int) -> Tensor:
    b, l, c = x.shape
    k = weight.shape[-1]
    x, weight = _unit_channel_stride(x), weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    y = torch.empty((b, l, c), device=x.device, dtype=x.dtype)
    grid = (triton.cdiv(l, block_l), triton.cdiv(c, block_c), b)
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        _conv_fwd_kernel[grid](x, weight, bias if bias is not None else weight, y, l, c, *_strides(x, y),
                               K=k, HAS_BIAS=bias is not None, ACT=activation, BL=block_l, BC=block_c,
                               num_warps=num_warps)
    return y


@_conv_fwd.register_fake
def _(x, weight, bias, activation, block_l, block_c, num_warps):
    return x.new_empty(x.shape)


@torch.library.custom_op("tokengap::causal_conv1d_bwd", mutates_args=(), tags=(torch.Tag.flexible_layout,))
def _conv_bwd(x: Tensor, weight: Tensor, bias: Optional[Tensor], dy: Tensor, activation: bool,
              block_l: int, block_c: int, num_warps: int) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias); dbias is empty (0,) without a bias."""
    b, l, c = x.shape
    k = weight.shape[-1]
    x, weight, dy = _unit_channel_stride(x), weight.contiguous(), _unit_channel_stride(dy)
    bias = bias.contiguous() if bias is not None else None
    n_lt = triton.cdiv(l, block_l)
    dx = torch.empty((b, l, c), device=x.device, dtype=x.dtype)
    dw = torch.empty((b * n_lt, c, k), device=x.device, dtype=torch.float32)
    db = torch.empty((b * n_lt, c), device=x.device, dtype=torch.float32) if bias is not None else dw
    g = torch.empty((b, l, c), device=x.device, dtype=x.dtype)  # dy * silu'(pre), read K times by pass 2
    grid = (n_lt, triton.cdiv(c, block_c), b)
    consts = dict(K=k, BL=block_l, BC=block_c, num_warps=num_warps)
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        _conv_bwd_g_kernel[grid](x, weight, bias if bias is not None else weight, dy, g, dw, db, l, c, n_lt,
                                 *_strides(x, dy, g), HAS_BIAS=bias is not None, ACT=activation, **consts)
        _conv_bwd_dx_kernel[grid](g, weight, dx, l, c, *_strides(g, dx), **consts)
    dbias = db.sum(0).to(bias.dtype) if bias is not None else weight.new_empty(0)
    return dx, dw.sum(0).to(weight.dtype), dbias


@_conv_bwd.register_fake
def _(x, weight, bias, dy, activation, block_l, block_c, num_warps):
    return x.new_empty(x.shape), weight.new_empty(weight.shape), \
        bias.new_empty(bias.shape) if bias is not None else weight.new_empty(0)


def _conv_setup(ctx, inputs, output):
    x, weight, bias, activation, block_l, block_c, num_warps = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.cfg = (activation, block_l, block_c, num_warps)


def _conv_backward(ctx, dy):
    x, weight, bias = ctx.saved_tensors
    dx, dw, db = _conv_bwd(x, weight, bias, dy, *ctx.cfg)
    return dx, dw, db if bias is not None else None, None, None, None, None


_conv_fwd.register_autograd(_conv_backward, setup_context=_conv_setup)


def causal_conv1d_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: bool = True,
                         block_l: Optional[int] = None, block_c: Optional[int] = None,
                         num_warps: Optional[int] = None) -> Tensor:
    """x: (b, l, c), unit channel stride preferred (else copied); weight: (c, k); bias: (c,) or None.
    Returns silu(causal depthwise conv) (b, l, c) contiguous, in x.dtype. Same as causal_conv1d_torch.
    Block sizes default to the module's BLOCK_L, BLOCK_C, NUM_WARPS."""
    return _conv_fwd(x, weight, bias, activation, block_l or BLOCK_L, block_c or BLOCK_C, num_warps or NUM_WARPS)
