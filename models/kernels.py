"""Which implementation each Mamba2 op runs: the one place that imports mamba-ssm and causal-conv1d.

Paths, by op:
  ssd   mamba_ssm.mamba_chunk_scan_combined (Triton, CUDA)  |  models.ssd.ssd_chunked_torch (reference)
  norm  mamba_ssm.layernorm_gated.rmsnorm_fn (Triton, CUDA)  |  models.ssd.gated_rms_norm_torch
  conv  causal_conv1d_fn (CUDA extension)  |  models.ssd.causal_conv1d_torch (F.conv1d, cuDNN on GPU)

mamba-ssm's package __init__ imports its compiled Mamba1 scan (`selective_scan_cuda`) unconditionally, so a
pure-Python install (the only kind buildable without network/nvcc, see briefs/gpu.md) cannot even be imported.
We register an empty placeholder module under that name, then import only the Triton modules we use. The one
thing the placeholder breaks is Mamba1's `selective_scan_fn`, which this package never calls.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import sys
import types
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from models.ssd import causal_conv1d_torch, gated_rms_norm_torch, ssd_chunked_torch

log = logging.getLogger("tokengap.models")


@functools.cache
def mamba_ssm_triton() -> tuple[Optional[types.SimpleNamespace], str]:
    """(namespace with mamba_chunk_scan_combined and rmsnorm_fn, "") or (None, why not)."""
    if importlib.util.find_spec("mamba_ssm") is None:
        return None, "mamba-ssm is not installed (pip install 'tokengap[cuda]')"
    placeholder = False
    if "selective_scan_cuda" not in sys.modules and importlib.util.find_spec("selective_scan_cuda") is None:
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")  # see module docstring
        placeholder = True
    try:
        from mamba_ssm.ops.triton.layernorm_gated import rmsnorm_fn
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception as exc:  # a broken install must not take the reference path down with it
        return None, f"mamba-ssm import failed: {type(exc).__name__}: {exc}"
    import mamba_ssm

    note = " (without its compiled Mamba1 extension)" if placeholder else ""
    ns = types.SimpleNamespace(mamba_chunk_scan_combined=mamba_chunk_scan_combined, rmsnorm_fn=rmsnorm_fn,
                               version=getattr(mamba_ssm, "__version__", "?") + note)
    return ns, ""


@functools.cache
def causal_conv1d_cuda() -> tuple[Optional[Callable], str]:
    if importlib.util.find_spec("causal_conv1d") is None:
        return None, "causal-conv1d is not installed"
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception as exc:
        return None, f"causal-conv1d import failed: {type(exc).__name__}: {exc}"
    return causal_conv1d_fn, ""


@dataclass(frozen=True)
class Mamba2Ops:
    """The three ops one Mamba2 layer runs, and their names for the log."""
    ssd: Callable
    norm: Callable
    conv: Callable
    names: tuple[str, str, str]  # (ssd, norm, conv)

    def describe(self) -> str:
        return "ssd={} norm={} conv={}".format(*self.names)


def _wrap_mamba_norm(rmsnorm_fn):
    def norm(x, z, weight, eps, group_size):
        return rmsnorm_fn(x, weight, None, z=z, eps=eps, group_size=group_size, norm_before_gate=False)
    return norm


def _wrap_causal_conv1d(fn):
    def conv(x, weight, bias, activation=True):  # x: (b, l, c); the extension wants (b, c, l)
        return fn(x.transpose(1, 2), weight, bias, activation="silu" if activation else None).transpose(1, 2)
    return conv


_REFERENCE = Mamba2Ops(ssd_chunked_torch, gated_rms_norm_torch, causal_conv1d_torch,
                       ("torch-chunked(reference)", "torch(reference)", "torch-conv1d"))
_warned: set[str] = set()


@functools.cache
def _select_cached(kernels: str, is_cuda: bool) -> Mamba2Ops:
    if kernels == "reference" or not is_cuda:
        if kernels == "triton" and not is_cuda:
            raise RuntimeError("model.kernels=triton: the Triton kernels need a CUDA device")
        return _REFERENCE
    ns, why = mamba_ssm_triton()
    if ns is None:
        if kernels == "triton":
            raise RuntimeError(f"model.kernels=triton but {why}")
        if why not in _warned:
            _warned.add(why)
            log.warning("Mamba2 on CUDA runs the pure-PyTorch reference SSD (slow): %s", why)
        ssd, norm, names = ssd_chunked_torch, gated_rms_norm_torch, ["torch-chunked(reference)", "torch(reference)"]
    else:
        ssd = torch.compiler.disable(ns.mamba_chunk_scan_combined)  # custom autograd Functions: keep out of dynamo
        norm = torch.compiler.disable(_wrap_mamba_norm(ns.rmsnorm_fn))
        names = [f"mamba_ssm-triton {ns.version}", "mamba_ssm-triton"]
    conv_fn, _ = causal_conv1d_cuda()
    if conv_fn is not None:
        conv, conv_name = torch.compiler.disable(_wrap_causal_conv1d(conv_fn)), "causal_conv1d-cuda"
    else:
        conv, conv_name = causal_conv1d_torch, "torch-conv1d"
    return Mamba2Ops(ssd, norm, conv, (*names, conv_name))


def select_mamba2_ops(kernels: str, device: torch.device) -> Mamba2Ops:
    """The ops a Mamba2 layer runs for `model.kernels` on `device` (auto | reference | triton)."""
    return _select_cached(kernels, device.type == "cuda")
