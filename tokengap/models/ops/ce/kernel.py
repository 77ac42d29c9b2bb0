"""The training loss, mean cross-entropy of logits = h @ W^T, with the logits' gradient computed in the forward.

    loss = mean over targets != -100 of (logsumexp(logits[i]) - logits[i, target[i]])

Twin: `reference.linear_cross_entropy_torch` beside this file (F.cross_entropy of lm_head(h) in float32; what
`LM.forward` runs on CPU). Parity: `tests/test_ce_triton.py` (the Triton interpreter on CPU, so CI runs it; the
compiled kernel on CUDA).

Why: the logits are the largest tensor of the step ((tokens, vocab), 2.1 GB in bf16 at `base`). Traced, the loss
reads them once forward and once more backward, where it also writes their gradient. The loss is the last op of
the step and its gradient is softmax - onehot up to the upstream scalar, so one kernel computes both in the
forward (Liger-Kernel's trick): per row, it finds logsumexp and writes the gradient over the logits in place.
A row of up to MAX_ONE_TILE (32,768) columns is held in registers (16 warps above 16,384) and read once; a
longer one is read twice in MAX_BLOCK pieces (online max and sum, then the gradient). The upstream scalar is
applied to the two small GEMM outputs in the backward (dh, dW), not to the (tokens, vocab) gradient.
Its gain over the traced twin, and one tile against two passes: BENCHMARKS.md.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch import Tensor

IGNORE_INDEX = -100
# A row of up to MAX_ONE_TILE columns is held in registers (one read of the logits); longer rows are read twice
# in MAX_BLOCK pieces. MAX_ONE_TILE is the longest row measured (BENCHMARKS.md): 64 columns a thread at 16 warps;
# 8 warps (128 a thread) spilled and 32 were slower too.
MAX_ONE_TILE, MAX_BLOCK, NUM_WARPS = 32768, 4096, 8


@triton.jit
def _ce_fwd_grad_kernel(logits_ptr, targets_ptr, loss_ptr, scale_ptr, V, stride_row,
                        IGNORE: tl.constexpr, BLOCK: tl.constexpr, ONE_TILE: tl.constexpr):
    """One row: loss[row] = lse - x[target] (0 if ignored); x[row] <- (softmax(x) - onehot) * scale, in place.
    ONE_TILE (BLOCK >= V): the row is held in registers, read once; else two passes of BLOCK columns."""
    row = tl.program_id(0).to(tl.int64)
    x_row = logits_ptr + row * stride_row
    t = tl.load(targets_ptr + row).to(tl.int64)
    valid = t != IGNORE
    scale = tl.where(valid, tl.load(scale_ptr), 0.0)
    if ONE_TILE:
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        m = tl.max(x, 0)
        e = tl.exp(x - m)
        s = tl.sum(e, 0)
        x_t = tl.sum(tl.where(cols == t, x, 0.0), 0)
        tl.store(loss_ptr + row, tl.where(valid, m + tl.log(s) - x_t, 0.0))
        g = (e / s - tl.where(cols == t, 1.0, 0.0)) * scale
        tl.store(x_row + cols, g.to(logits_ptr.dtype.element_ty), mask=cols < V)
    else:
        m = tl.full((), float("-inf"), tl.float32)
        s = tl.zeros((), tl.float32)
        for off in range(0, V, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            x = tl.load(x_row + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, 0))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
            m = m_new
        lse = m + tl.log(s)
        x_t = tl.load(x_row + tl.where(valid, t, 0)).to(tl.float32)
        tl.store(loss_ptr + row, tl.where(valid, lse - x_t, 0.0))
        for off in range(0, V, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            x = tl.load(x_row + cols, mask=cols < V, other=0.0).to(tl.float32)
            g = (tl.exp(x - lse) - tl.where(cols == t, 1.0, 0.0)) * scale
            tl.store(x_row + cols, g.to(logits_ptr.dtype.element_ty), mask=cols < V)


def _num_warps(block: int, v: int) -> int:
    """A whole row in registers: up to 64 columns a thread (16 warps at 32,768); the two-pass loop: NUM_WARPS."""
    return min(16, max(NUM_WARPS, block // 2048)) if block >= v else NUM_WARPS


@torch.library.custom_op("tokengap::linear_cross_entropy_fwd", mutates_args=())
def _lce_fwd(h: Tensor, weight: Tensor, targets: Tensor, dtype: torch.dtype, block: int) -> tuple[Tensor, Tensor]:
    """h: (n, d); weight: (v, d); targets: (n,). Returns (mean loss: 0-dim float32, dlogits: (n, v) in dtype,
    the gradient of the mean loss with respect to the logits)."""
    with torch.autocast(h.device.type, enabled=False):
        logits = h.to(dtype) @ weight.to(dtype).T  # becomes dlogits in place
    n, v = logits.shape
    t = targets.contiguous()
    # F.cross_entropy refuses a target outside [0, vocab) other than -100; the kernel would read another row.
    # Asynchronous: no host sync, so it can sit inside a captured CUDA graph.
    torch._assert_async(((t == IGNORE_INDEX) | ((t >= 0) & (t < v))).all(),
                        "linear_cross_entropy: a target is outside [0, vocab) and is not -100")
    n_valid = (t != IGNORE_INDEX).sum()
    scale = 1.0 / n_valid.float()  # inf when nothing is valid: loss 0 * inf = nan, as F.cross_entropy
    row_loss = torch.empty(n, device=h.device, dtype=torch.float32)
    if n:
        with torch.cuda.device(h.device) if h.is_cuda else contextlib.nullcontext():
            _ce_fwd_grad_kernel[(n,)](logits, t, row_loss, scale.reshape(1), v, logits.stride(0),
                                      IGNORE=IGNORE_INDEX, BLOCK=block, ONE_TILE=block >= v,
                                      num_warps=_num_warps(block, v))
    return row_loss.sum() * scale, logits


@_lce_fwd.register_fake
def _(h, weight, targets, dtype, block):
    return h.new_empty((), dtype=torch.float32), h.new_empty((h.shape[0], weight.shape[0]), dtype=dtype)


def _lce_setup(ctx, inputs, output):
    h, weight, targets, dtype, block = inputs
    ctx.save_for_backward(h, weight, output[1])
    ctx.mark_non_differentiable(output[1])  # dlogits is an intermediate handed to the backward, not a result
    ctx.dtype = dtype


def _lce_backward(ctx, dloss, _ddlogits):
    h, weight, dlogits = ctx.saved_tensors
    with torch.autocast(h.device.type, enabled=False):
        dh = (dlogits @ weight.to(ctx.dtype)).float() * dloss
        dw = (dlogits.T @ h.to(ctx.dtype)).float() * dloss
    return dh.to(h.dtype), dw.to(weight.dtype), None, None, None


_lce_fwd.register_autograd(_lce_backward, setup_context=_lce_setup)


def linear_cross_entropy_triton(h: Tensor, weight: Tensor, targets: Tensor, dtype: torch.dtype | None = None,
                                block: int | None = None) -> Tensor:
    """Mean cross-entropy of (h @ weight.T) against targets (-100: ignored), a 0-dim float32 tensor.
    h: (..., d); weight: (vocab, d); targets: (...). The GEMMs run in `dtype` (default h's dtype; pass the
    autocast dtype under autocast: custom ops are not autocast). Same as F.cross_entropy(logits.float(), ...)."""
    v = weight.shape[0]
    if block is None:
        block = triton.next_power_of_2(v) if v <= MAX_ONE_TILE else MAX_BLOCK
    return _lce_fwd(h.reshape(-1, h.shape[-1]), weight, targets.reshape(-1), dtype or h.dtype, block)[0]
