"""mamba-ssm's chunked SSD kernels (Triton) as torch.library custom ops: tokengap::mamba_ssd and its backward.

torch.compile keeps custom ops in the graph as opaque calls, so a compiled step is one graph (mamba-ssm's own
autograd.Function, behind torch.compiler.disable, broke the graph in every Mamba2 layer). Same kernels and
arguments as mamba_ssm's MambaChunkScanCombinedFn (z=None, no initial states). Twin: `reference.py`
(`ssd_chunked_torch`, same signature as `mamba_ssd`).
"""
from __future__ import annotations

import torch

from tokengap.models.ops.external import mamba_ssm_triton

_T = torch.Tensor


@torch.library.custom_op("tokengap::mamba_ssd", mutates_args=())
def _mamba_ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
               D: torch.Tensor, dt_bias: torch.Tensor, chunk_size: int) -> torch.Tensor:
    out, *_ = mamba_ssm_triton()[0].ssd_fwd(x, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias, dt_softplus=True)
    return out


@_mamba_ssd.register_fake
def _(x, dt, A, B, C, D, dt_bias, chunk_size):
    return x.new_empty(x.shape)


@torch.library.custom_op("tokengap::mamba_ssd_bwd", mutates_args=())
def _mamba_ssd_bwd(dout: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                   C: torch.Tensor, out: torch.Tensor, D: torch.Tensor, dt_bias: torch.Tensor,
                   chunk_size: int) -> tuple[_T, _T, _T, _T, _T, _T, _T]:
    """(dx, ddt, dA, dB, dC, dD, ddt_bias), each contiguous in its input's dtype (what the fake promises)."""
    dx, ddt, dA, dB, dC, dD, _dz, ddt_bias, _ = mamba_ssm_triton()[0].ssd_bwd(
        dout, x, dt, A, B, C, out, chunk_size, D=D, dt_bias=dt_bias, dt_softplus=True)
    return tuple(g.to(r.dtype).contiguous() for g, r in zip((dx, ddt, dA, dB, dC, dD, ddt_bias), (x, dt, A, B, C, D, dt_bias)))


@_mamba_ssd_bwd.register_fake
def _(dout, x, dt, A, B, C, out, D, dt_bias, chunk_size):
    return tuple(r.new_empty(r.shape) for r in (x, dt, A, B, C, D, dt_bias))


def _ssd_setup(ctx, inputs, output):
    *tensors, ctx.chunk_size = inputs
    ctx.save_for_backward(*tensors, output)


def _ssd_backward(ctx, dout):
    x, dt, A, B, C, D, dt_bias, out = ctx.saved_tensors
    return (*_mamba_ssd_bwd(dout, x, dt, A, B, C, out, D, dt_bias, ctx.chunk_size), None)


_mamba_ssd.register_autograd(_ssd_backward, setup_context=_ssd_setup)


def mamba_ssd(x, dt, A, B, C, chunk_size, D=None, dt_bias=None, dt_softplus=False):
    """mamba_chunk_scan_combined for what Mamba2 passes (D, dt_bias, softplus); same signature as the twin."""
    if D is None or dt_bias is None or not dt_softplus:
        raise ValueError("mamba_ssd: needs D, dt_bias and dt_softplus=True (as Mamba2 passes them)")
    return _mamba_ssd(x, dt, A, B, C, D, dt_bias, chunk_size)
