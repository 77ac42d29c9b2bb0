"""Mamba2's short causal depthwise conv (+ SiLU) as two Triton kernels, forward and backward.

    y[b, t, c] = silu(bias[c] + sum_k weight[c, k] * x[b, t - (K-1) + k, c])      (x = 0 before t = 0)

Twin: `models.ssd.causal_conv1d_torch` (F.conv1d). Parity: `tests/test_conv_triton.py` (the Triton interpreter
on CPU, so CI runs it; the compiled kernels on CUDA) and `scripts/gpu_check.py`.

Why our own rather than fla's `causal_conv1d`: it needs only triton (a core dependency; fla is optional), and
uses fixed tiles, so every process runs the same kernel. It is not reliably faster: one layer forward + backward
on an H100 (scripts/conv_sweep.py) took 1.35-1.43 ms at `small` and 1.32-1.37 ms at `base`, fla's autotuned
kernel 1.49-2.01 and 1.27-1.41 ms in two processes (BENCHMARKS.md). fla's backward reruns the forward in a
separate pass to get the pre-activation and reloads it once per tap; here the backward recomputes it from the
x tile it loads anyway (the taps hit L1/L2), so each of x, dy and dx crosses HBM once. The weight and bias
gradients are reduced per (batch, time tile) in the kernel and summed over tiles by torch: one float32 (C, K)
row per BLOCK_L positions, 84 MB at the hybrid's `small` shape, about 40% on top of x, dy and dx.

Layout: x (b, l, c) with unit channel stride and any batch/time strides, so the strided view that Mamba2's
in_proj split gives is read in place; y and dx come out contiguous. Computes in float32, stores in x.dtype.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

# Fixed, no autotuning: every process runs the same kernel. Chosen by scripts/conv_sweep.py on an H100 (27
# configs at the hybrid `small` and `base` shapes, results/gpu/conv_sweep.log): within 3% of the best at both.
# Larger tiles spill registers in the backward: 64 x 128 with 4 warps took 3x (small) to 12x (base) as long.
BLOCK_L, BLOCK_C, NUM_WARPS = 16, 64, 2


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
def _conv_fwd_kernel(x_ptr, w_ptr, bias_ptr, y_ptr, L, C, sxb, sxl, syb, syl,
                     K: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
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
def _conv_bwd_kernel(x_ptr, w_ptr, bias_ptr, dy_ptr, dx_ptr, dw_ptr, db_ptr, L, C, n_lt,
                     sxb, sxl, sdyb, sdyl, sdxb, sdxl,
                     K: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, BL: tl.constexpr, BC: tl.constexpr):
    """dx[t] = sum_m weight[K-1-m] * g[t+m] with g = dy * silu'(pre); partial dw, db of this tile into row
    (b * n_lt + time tile) of dw (rows, C, K) and db (rows, C)."""
    pid_l, pid_c, pid_b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    t = pid_l * BL + tl.arange(0, BL)
    c = pid_c * BC + tl.arange(0, BC)
    cm = c < C
    xb = x_ptr + pid_b.to(tl.int64) * sxb
    dyb = dy_ptr + pid_b.to(tl.int64) * sdyb
    row = pid_b.to(tl.int64) * n_lt + pid_l
    dx = tl.zeros((BL, BC), dtype=tl.float32)
    for m in tl.static_range(K):  # output position s = t + m feeds dx[t] through tap K-1-m
        s = t + m
        g = _rows(dyb, s, sdyl, c, cm, L)
        if ACT:  # the pre-activation is recomputed from x (L1/L2 hits), not stored by the forward
            pre = _pre_activation(xb, s, sxl, c, cm, w_ptr, bias_ptr, L, K, HAS_BIAS, BL, BC)
            sig = tl.sigmoid(pre)
            g = g * sig * (1.0 + pre * (1.0 - sig))
        dx += g * _tap(w_ptr, c, cm, K, K - 1 - m)
        if m == 0:  # the tile's own positions: each output position is counted by exactly one tile
            for k in tl.static_range(K):
                dwk = tl.sum(g * _rows(xb, t - (K - 1) + k, sxl, c, cm, L), axis=0)
                tl.store(dw_ptr + (row * C + c) * K + k, dwk, mask=cm)
            if HAS_BIAS:
                tl.store(db_ptr + row * C + c, tl.sum(g, axis=0), mask=cm)
    tl.store(dx_ptr + pid_b.to(tl.int64) * sdxb + t.to(tl.int64)[:, None] * sdxl + c[None, :],
             dx.to(dx_ptr.dtype.element_ty), mask=(t < L)[:, None] & cm[None, :])


def _unit_channel_stride(x: Tensor) -> Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


class CausalConv1dTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: bool,
                block_l: int, block_c: int, num_warps: int) -> Tensor:
        b, l, c = x.shape
        k = weight.shape[-1]
        x, weight = _unit_channel_stride(x), weight.contiguous()
        bias = bias.contiguous() if bias is not None else None
        y = torch.empty((b, l, c), device=x.device, dtype=x.dtype)
        grid = (triton.cdiv(l, block_l), triton.cdiv(c, block_c), b)
        with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
            _conv_fwd_kernel[grid](x, weight, bias if bias is not None else weight, y, l, c,
                                   x.stride(0), x.stride(1), y.stride(0), y.stride(1),
                                   K=k, HAS_BIAS=bias is not None, ACT=activation, BL=block_l, BC=block_c,
                                   num_warps=num_warps)
        ctx.save_for_backward(x, weight, bias)
        ctx.cfg = (activation, block_l, block_c, num_warps)
        return y

    @staticmethod
    @once_differentiable  # no double backward: raise rather than silently drop second-order terms
    def backward(ctx, dy: Tensor):
        x, weight, bias = ctx.saved_tensors
        activation, block_l, block_c, num_warps = ctx.cfg
        b, l, c = x.shape
        k = weight.shape[-1]
        dy = _unit_channel_stride(dy)
        n_lt = triton.cdiv(l, block_l)
        dx = torch.empty((b, l, c), device=x.device, dtype=x.dtype)
        dw = torch.empty((b * n_lt, c, k), device=x.device, dtype=torch.float32)
        db = torch.empty((b * n_lt, c), device=x.device, dtype=torch.float32) if bias is not None else dw
        with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
            _conv_bwd_kernel[(n_lt, triton.cdiv(c, block_c), b)](
                x, weight, bias if bias is not None else weight, dy, dx, dw, db, l, c, n_lt,
                x.stride(0), x.stride(1), dy.stride(0), dy.stride(1), dx.stride(0), dx.stride(1),
                K=k, HAS_BIAS=bias is not None, ACT=activation, BL=block_l, BC=block_c, num_warps=num_warps)
        dbias = db.sum(0).to(bias.dtype) if bias is not None else None
        return dx, dw.sum(0).to(weight.dtype), dbias, None, None, None, None


def causal_conv1d_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: bool = True,
                         block_l: Optional[int] = None, block_c: Optional[int] = None,
                         num_warps: Optional[int] = None) -> Tensor:
    """x: (b, l, c), unit channel stride preferred (else copied); weight: (c, k); bias: (c,) or None.
    Returns silu(causal depthwise conv) (b, l, c) contiguous, in x.dtype. Same as causal_conv1d_torch.
    Block sizes default to the module's BLOCK_L, BLOCK_C, NUM_WARPS."""
    return CausalConv1dTriton.apply(x, weight, bias, activation, block_l or BLOCK_L, block_c or BLOCK_C,
                                    num_warps or NUM_WARPS)
