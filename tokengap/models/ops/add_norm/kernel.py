"""The pre-norm residual step, s = x + y then h = RMSNorm(s), as one Triton kernel forward and one backward.

    s = x + y                                  (y: the previous branch's output; y = None: s is a copy of x)
    h = s * rsqrt(mean(s^2) + eps) * weight    (stored in out_dtype: bf16 under autocast, else s.dtype)

Twin: `reference.add_rms_norm_torch` beside this file (x + y, then nn.RMSNorm; what LM runs on CPU). Parity:
`tests/test_norm_triton.py` (the Triton interpreter on CPU, so CI runs it; the compiled kernels on CUDA) and
`scripts/gpu_check.py`.

Why: the residual stream is float32 and the branches are bf16 under autocast. Traced, inductor fuses the add
and the norm well, but the backward then casts the float32 residual gradient to bf16 for the branch's output
projection in a kernel of its own, one per add; it would not fuse the cast into its norm backward. Here the
backward writes both: dx in x.dtype (the residual stream's gradient, with the gradient that arrived for s added)
and dy in y.dtype. The forward hands h over in the dtype its consumer (a Linear under autocast) would cast it to,
and saves s and rstd. Its gain over the traced twin and its bandwidth: BENCHMARKS.md.

Backward: dx = ds + rstd * (w*dh - xhat * mean(xhat * w*dh)),  xhat = s * rstd;  dw = sum over rows dh * xhat,
summed per program over its rows (a persistent grid of a few programs per SM), then over programs by torch.
Rows are contiguous (n, d) (inputs that are not are copied); computes in float32.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

# Rows of at most MAX_D columns are held in registers, BLOCK_M = TILE // next_pow2(d) rows a program (at least
# one); the backward runs PROGRAMS_PER_SM persistent programs a SM. Fixed, no autotuning: every process runs the
# same kernel. Within 1.1% of the best of 45 configs at the `small` and `base` shapes (scripts/norm_sweep.py,
# BENCHMARKS.md); a tile of 8192 with 4 warps was slow.
# Rows longer than TILE (d_model > 4096) run one a program and have not been timed.
TILE, NUM_WARPS, PROGRAMS_PER_SM, MAX_D = 4096, 4, 2, 16384


@triton.jit
def _add_rms_norm_fwd_kernel(x_ptr, y_ptr, w_ptr, s_ptr, h_ptr, rstd_ptr, N, D, eps,
                             HAS_Y: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.arange(0, BD)
    rm, cm = rows < N, cols < D
    mask = rm[:, None] & cm[None, :]
    off = rows.to(tl.int64)[:, None] * D + cols[None, :]
    s = tl.load(x_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if HAS_Y:
        s += tl.load(y_ptr + off, mask=mask, other=0.0).to(tl.float32)
    s = s.to(s_ptr.dtype.element_ty)  # the norm reads s as stored (rounded, if s is bf16), as the twin does
    tl.store(s_ptr + off, s, mask=mask)
    s = s.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(s * s, axis=1) / D + eps)
    tl.store(rstd_ptr + rows, rstd, mask=rm)
    w = tl.load(w_ptr + cols, mask=cm, other=0.0).to(tl.float32)
    tl.store(h_ptr + off, (s * rstd[:, None] * w[None, :]).to(h_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _add_rms_norm_bwd_kernel(s_ptr, rstd_ptr, w_ptr, dh_ptr, ds_ptr, dx_ptr, dy_ptr, dw_ptr, N, D, n_blocks,
                             HAS_DS: tl.constexpr, WRITE_DY: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr):
    """Program p handles row blocks p, p + P, ...; its partial dw goes to row p of dw (P, D)."""
    pid, n_prog = tl.program_id(0), tl.num_programs(0)
    cols = tl.arange(0, BD)
    cm = cols < D
    w = tl.load(w_ptr + cols, mask=cm, other=0.0).to(tl.float32)[None, :]
    dw = tl.zeros((BM, BD), dtype=tl.float32)
    for blk in range(pid, n_blocks, n_prog):
        rows = blk * BM + tl.arange(0, BM)
        rm = rows < N
        mask = rm[:, None] & cm[None, :]
        off = rows.to(tl.int64)[:, None] * D + cols[None, :]
        rstd = tl.load(rstd_ptr + rows, mask=rm, other=0.0)[:, None]
        xhat = tl.load(s_ptr + off, mask=mask, other=0.0).to(tl.float32) * rstd
        dh = tl.load(dh_ptr + off, mask=mask, other=0.0).to(tl.float32)
        wdh = dh * w
        dx = (wdh - xhat * (tl.sum(xhat * wdh, axis=1) / D)[:, None]) * rstd
        if HAS_DS:
            dx += tl.load(ds_ptr + off, mask=mask, other=0.0).to(tl.float32)
        tl.store(dx_ptr + off, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        if WRITE_DY:
            tl.store(dy_ptr + off, dx.to(dy_ptr.dtype.element_ty), mask=mask)
        dw += dh * xhat
    tl.store(dw_ptr + pid * D + cols, tl.sum(dw, axis=0), mask=cm)


def _tiles(d: int, tile: int) -> tuple[int, int]:
    bd = triton.next_power_of_2(d)
    return max(1, tile // bd), bd


def _rows(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1]).contiguous()


def _device(t: Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


# Custom ops rather than an autograd.Function: torch.compile keeps them in the graph as opaque calls.
@torch.library.custom_op("tokengap::add_rms_norm_fwd", mutates_args=())
def _fwd(x: Tensor, y: Optional[Tensor], weight: Tensor, eps: float, out_dtype: torch.dtype,
         tile: int, num_warps: int) -> tuple[Tensor, Tensor, Tensor]:
    """(s, h, rstd): s (..., d) in promote(x, y) dtype, h (..., d) in out_dtype, rstd (n,) float32."""
    d = x.shape[-1]
    x2 = _rows(x)
    y2 = _rows(y) if y is not None else None
    s = torch.empty_like(x2, dtype=torch.promote_types(x.dtype, y.dtype) if y is not None else x.dtype)
    h = torch.empty_like(x2, dtype=out_dtype)
    rstd = torch.empty(x2.shape[0], device=x.device, dtype=torch.float32)
    bm, bd = _tiles(d, tile)
    with _device(x):
        _add_rms_norm_fwd_kernel[(triton.cdiv(x2.shape[0], bm),)](
            x2, y2 if y2 is not None else x2, weight, s, h, rstd, x2.shape[0], d, eps,
            HAS_Y=y is not None, BM=bm, BD=bd, num_warps=num_warps)
    return s.view(x.shape), h.view(x.shape), rstd


@_fwd.register_fake
def _(x, y, weight, eps, out_dtype, tile, num_warps):
    s_dtype = torch.promote_types(x.dtype, y.dtype) if y is not None else x.dtype
    return (x.new_empty(x.shape, dtype=s_dtype), x.new_empty(x.shape, dtype=out_dtype),
            x.new_empty(x.numel() // x.shape[-1], dtype=torch.float32))


@torch.library.custom_op("tokengap::add_rms_norm_bwd", mutates_args=())
def _bwd(s: Tensor, rstd: Tensor, weight: Tensor, dh: Tensor, ds: Optional[Tensor], dx_dtype: torch.dtype,
         dy_dtype: Optional[torch.dtype], tile: int, num_warps: int) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dy, dweight): dx (..., d) in dx_dtype; dy the same values in dy_dtype (empty (0,) if dy_dtype is None);
    dweight (d,) in weight.dtype. ds: the gradient that arrived for s, or None."""
    d = s.shape[-1]
    s2, dh2 = _rows(s), _rows(dh)
    ds2 = _rows(ds) if ds is not None else None
    n = s2.shape[0]
    bm, bd = _tiles(d, tile)
    n_blocks = triton.cdiv(n, bm)
    sms = torch.cuda.get_device_properties(s.device).multi_processor_count if s.is_cuda else 2
    n_prog = max(1, min(n_blocks, sms * PROGRAMS_PER_SM))
    dx = torch.empty_like(s2, dtype=dx_dtype)
    dy = torch.empty_like(s2, dtype=dy_dtype) if dy_dtype is not None else dx.new_empty(0)
    dw = torch.empty((n_prog, d), device=s.device, dtype=torch.float32)
    with _device(s):
        _add_rms_norm_bwd_kernel[(n_prog,)](
            s2, rstd, weight, dh2, ds2 if ds2 is not None else s2, dx, dy if dy_dtype is not None else dx, dw,
            n, d, n_blocks, HAS_DS=ds is not None, WRITE_DY=dy_dtype is not None, BM=bm, BD=bd,
            num_warps=num_warps)
    return dx.view(s.shape), dy.view(s.shape) if dy_dtype is not None else dy, dw.sum(0).to(weight.dtype)


@_bwd.register_fake
def _(s, rstd, weight, dh, ds, dx_dtype, dy_dtype, tile, num_warps):
    dy = s.new_empty(s.shape, dtype=dy_dtype) if dy_dtype is not None else s.new_empty(0)
    return s.new_empty(s.shape, dtype=dx_dtype), dy, weight.new_empty(weight.shape)


def _setup(ctx, inputs, output):
    x, y, weight, eps, out_dtype, tile, num_warps = inputs
    s, h, rstd = output
    ctx.save_for_backward(s, rstd, weight)
    ctx.has_y = y is not None
    # dy is written separately only if its dtype differs from dx's (bf16 branch into a float32 stream)
    ctx.dtypes = (x.dtype, y.dtype if y is not None and y.dtype != x.dtype else None)
    ctx.cfg = (tile, num_warps)
    ctx.set_materialize_grads(False)  # s unused (the final norm): ds is None, not a tensor of zeros to read


def _backward(ctx, ds, dh, drstd):
    s, rstd, weight = ctx.saved_tensors
    if dh is None:  # h unused: only s carried gradient
        dh = torch.zeros_like(s)
    dx, dy, dw = _bwd(s, rstd, weight, dh, ds, *ctx.dtypes, *ctx.cfg)
    if ctx.has_y and ctx.dtypes[1] is None:
        dy = dx  # same dtype: the same gradient for both (as an add's backward hands on)
    return dx, dy if ctx.has_y else None, dw, None, None, None, None


_fwd.register_autograd(_backward, setup_context=_setup)


def add_rms_norm_triton(x: Tensor, y: Optional[Tensor], weight: Tensor, eps: Optional[float],
                        out_dtype: Optional[torch.dtype] = None, tile: Optional[int] = None,
                        num_warps: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """x: (..., d); y: same shape or None; weight: (d,). Returns (s, h): s = x + y (a copy of x if y is None) in
    promote(x, y) dtype, h = RMSNorm(s) * weight in out_dtype (default s's dtype). Same as add_rms_norm_torch.
    eps None: machine epsilon of s's dtype (nn.RMSNorm's default). d must be at most MAX_D."""
    if x.shape[-1] > MAX_D:
        raise ValueError(f"add_rms_norm_triton: rows of {x.shape[-1]} > MAX_D={MAX_D} columns")
    s_dtype = torch.promote_types(x.dtype, y.dtype) if y is not None else x.dtype
    eps = torch.finfo(s_dtype).eps if eps is None else eps
    s, h, _ = _fwd(x, y, weight, float(eps), out_dtype or s_dtype, tile or TILE, num_warps or NUM_WARPS)
    return s, h
