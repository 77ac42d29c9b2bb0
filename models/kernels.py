"""Which implementation each Mamba2 op runs: the one place that imports mamba-ssm and causal-conv1d.

Paths, by op:
  ssd   mamba-ssm's chunk-scan kernels (Triton, CUDA) as the custom op tokengap::mamba_ssd  |  models.ssd.ssd_chunked_torch
  norm  mamba_ssm.layernorm_gated.rmsnorm_fn (Triton, CUDA)  |  models.ssd.gated_rms_norm_torch
  conv  causal_conv1d_fn (CUDA extension)  |  models.conv_triton (ours, Triton, CUDA)
        |  fla.modules.causal_conv1d (Triton, CUDA; only when asked for, see set_conv_preference)
        |  models.ssd.causal_conv1d_torch (F.conv1d, cuDNN on GPU; also the reference)
and, for every model, the residual add + RMSNorm and the training loss:
  norm  models.norm_triton (ours, Triton, CUDA)  |  x + y, then nn.RMSNorm (models.lm.add_rms_norm_torch)
  loss  models.ce_triton (ours, Triton, CUDA)  |  lm_head + F.cross_entropy (the twin)

On CUDA the conv takes the first of causal-conv1d, ours, F.conv1d that imports. The Triton convs read the
(b, l, c) layout in place and fuse the SiLU; F.conv1d needs (b, c, l), i.e. two transposes, and spent about
13 ms of a 100 ms hybrid `small` train step in BENCHMARKS.md's profile. Ours is the default over fla's: less
device time per layer (0.51 against 0.87 ms at `base`), the same kernel in every process (fixed tiles), and
it needs only triton (BENCHMARKS.md). causal-conv1d cannot be built on an offline machine without nvcc.

mamba-ssm's package __init__ imports its compiled Mamba1 scan (`selective_scan_cuda`) unconditionally, so a
pure-Python install (the only kind buildable without network/nvcc, see briefs/gpu.md) cannot even be imported.
We register an empty placeholder module under that name, then import only the Triton modules we use. The one
thing the placeholder breaks is Mamba1's `selective_scan_fn`, which this package never calls.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
import sys
import types
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from models.ssd import causal_conv1d_torch, gated_rms_norm_torch, ssd_chunked_torch

log = logging.getLogger("tokengap.models")


@functools.cache
def mamba_ssm_triton() -> tuple[Optional[types.SimpleNamespace], str]:
    """(namespace with ssd_fwd, ssd_bwd (mamba_chunk_scan_combined's halves), rmsnorm_fn, version, "") or (None, why)."""
    if importlib.util.find_spec("mamba_ssm") is None:
        return None, "mamba-ssm is not installed (pip install 'tokengap[cuda]')"
    # mamba-ssm's kernels are autotuned, ~11 s in the first batch of a process on an H100 (BENCHMARKS.md). Triton
    # keeps the chosen configs on disk when asked, so later processes on the machine skip the tuning (kernels whose
    # configs have pre-hooks, some of the backward's, are still tuned each time). An autotuner reads the switch when
    # it is defined: set only around this import (other libraries' kernels are left as they are), and an explicit
    # TRITON_CACHE_AUTOTUNING from the user is left alone. No effect if mamba-ssm was imported before.
    cache_switch = "TRITON_CACHE_AUTOTUNING" not in os.environ
    if cache_switch:
        os.environ["TRITON_CACHE_AUTOTUNING"] = "1"
    placeholder = False
    if "selective_scan_cuda" not in sys.modules and importlib.util.find_spec("selective_scan_cuda") is None:
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")  # see module docstring
        placeholder = True
    try:
        from mamba_ssm.ops.triton.layernorm_gated import rmsnorm_fn
        from mamba_ssm.ops.triton.ssd_combined import _mamba_chunk_scan_combined_bwd, _mamba_chunk_scan_combined_fwd
    except Exception as exc:  # a broken install must not take the reference path down with it
        return None, f"mamba-ssm import failed: {type(exc).__name__}: {exc}"
    finally:
        if cache_switch:
            del os.environ["TRITON_CACHE_AUTOTUNING"]
    import mamba_ssm

    note = " (without its compiled Mamba1 extension)" if placeholder else ""
    ns = types.SimpleNamespace(rmsnorm_fn=rmsnorm_fn, ssd_fwd=_mamba_chunk_scan_combined_fwd,
                               ssd_bwd=_mamba_chunk_scan_combined_bwd, version=getattr(mamba_ssm, "__version__", "?") + note)
    return ns, ""


# mamba-ssm's SSD as custom ops: torch.compile keeps them in the graph as opaque calls, so a compiled step is
# one graph (its autograd.Function, behind torch.compiler.disable, broke the graph in every Mamba2 layer). Not
# faster by itself: the GPU idle time of the hybrid's forward is the CPU cost of mamba-ssm's own five launches
# (BENCHMARKS.md). Same kernels, same arguments as MambaChunkScanCombinedFn (z=None, no initial states).
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


@functools.cache
def causal_conv1d_cuda() -> tuple[Optional[Callable], str]:
    if importlib.util.find_spec("causal_conv1d") is None:
        return None, "causal-conv1d is not installed"
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception as exc:
        return None, f"causal-conv1d import failed: {type(exc).__name__}: {exc}"
    return causal_conv1d_fn, ""


@functools.cache
def fla_triton_conv() -> tuple[Optional[Callable], str]:
    """(fla.modules.causal_conv1d.causal_conv1d, version) or (None, why not). Importing fla takes ~10 s."""
    if importlib.util.find_spec("fla") is None:
        return None, "flash-linear-attention (fla) is not installed"
    try:
        import fla
        from fla.modules.causal_conv1d import causal_conv1d
    except Exception as exc:
        return None, f"fla import failed: {type(exc).__name__}: {exc}"
    return causal_conv1d, getattr(fla, "__version__", "?")


@functools.cache
def _ours(module: str, name: str) -> tuple[Optional[Callable], str]:
    """(models.<module>.<name>, "") or (None, why not): our Triton kernels import wherever triton does."""
    if importlib.util.find_spec("triton") is None:
        return None, "triton is not installed"
    try:
        return getattr(importlib.import_module(f"models.{module}"), name), ""
    except Exception as exc:
        return None, f"models.{module} import failed: {type(exc).__name__}: {exc}"


def tokengap_triton_conv() -> tuple[Optional[Callable], str]:
    return _ours("conv_triton", "causal_conv1d_triton")


def tokengap_triton_ce() -> tuple[Optional[Callable], str]:
    return _ours("ce_triton", "linear_cross_entropy_triton")


# Whether the training loss on CUDA runs our Triton linear cross-entropy (True) or lm_head + F.cross_entropy.
# Changed only by scripts/bench.py, to time the two against each other.
_fused_ce = True


def set_fused_ce(on: bool) -> None:
    global _fused_ce
    _fused_ce = bool(on)


def _ours_on_cuda(device: torch.device, enabled: bool, lookup: Callable, name: str, twin: str,
                  what: str) -> tuple[Optional[Callable], str]:
    """(kernel, name) on CUDA when `enabled` and lookup() finds it, else (None, twin); why a CUDA device runs the
    twin is logged once."""
    if device.type == "cuda" and enabled:
        fn, why = lookup()
        if fn is not None:
            return fn, name
        if why not in _warned:
            _warned.add(why)
            log.warning("%s on CUDA runs %s: %s", what, twin, why)
    return None, twin


def loss_kernel(device: torch.device) -> tuple[Optional[Callable], str]:
    """The training loss's implementation on `device`: (linear_cross_entropy_triton, name) on CUDA when triton
    imports, else (None, name of the twin: lm_head + F.cross_entropy)."""
    return _ours_on_cuda(device, _fused_ce, tokengap_triton_ce, "tokengap-triton linear cross-entropy",
                         "lm_head + torch F.cross_entropy", "training loss")


def tokengap_triton_norm() -> tuple[Optional[Callable], str]:
    return _ours("norm_triton", "add_rms_norm_triton")


# Whether the residual add + RMSNorm on CUDA runs our Triton kernels (True) or the twin, traced when compiled.
# Changed only by scripts/bench.py, to time the two against each other.
_fused_norm = True


def set_fused_norm(on: bool) -> None:
    global _fused_norm
    _fused_norm = bool(on)


def norm_kernel(device: torch.device, d_model: int) -> tuple[Optional[Callable], str]:
    """The residual add + RMSNorm on `device`: (add_rms_norm_triton, name) on CUDA when triton imports and a row
    of d_model fits its kernel, else (None, name of the twin: x + y, nn.RMSNorm)."""
    def lookup():
        fn, why = tokengap_triton_norm()
        if fn is not None and d_model > importlib.import_module("models.norm_triton").MAX_D:
            return None, f"d_model {d_model} is longer than the kernel's rows (models.norm_triton.MAX_D)"
        return fn, why
    return _ours_on_cuda(device, _fused_norm, lookup, "tokengap-triton add + RMSNorm", "x + y, torch nn.RMSNorm",
                         "residual add + RMSNorm")


# Which conv the CUDA path prefers: "auto" (causal-conv1d, then ours, then torch) or one of "cuda" | "triton" |
# "fla" | "torch". Changed only through set_conv_preference (scripts/bench.py times the others against auto);
# training leaves it at auto.
_conv_preference = "auto"
CONV_PREFERENCES = ("auto", "cuda", "triton", "fla", "torch")


def set_conv_preference(name: str) -> None:
    global _conv_preference
    if name not in CONV_PREFERENCES:
        raise ValueError(f"conv preference: expected one of {' | '.join(CONV_PREFERENCES)}, got {name!r}")
    _conv_preference = name
    _select_cached.cache_clear()


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
    @torch.compiler.disable  # a custom autograd Function: keep it out of dynamo
    def triton_norm(x, z, weight, eps, group_size):
        return rmsnorm_fn(x, weight, None, z=z, eps=eps, group_size=group_size, norm_before_gate=False)

    def norm(x, z, weight, eps, group_size):
        # Under torch.compile the twin is traced instead: inductor fuses it with the gate and the surrounding
        # reshapes, and the layer loses a graph break (hybrid `small` step 107.0 -> 102.5 ms, BENCHMARKS.md). Eager (e.g.
        # scoring), mamba-ssm's kernel is faster than the unfused twin.
        if _compiled_norm and torch.compiler.is_compiling():
            return gated_rms_norm_torch(x, z, weight, eps, group_size)
        return triton_norm(x, z, weight, eps, group_size)
    return norm


# Whether a compiled model traces the gated norm's PyTorch twin (True) or calls mamba-ssm's kernel (False).
# Changed only by scripts/bench.py, to time the two against each other.
_compiled_norm = True


def set_compiled_norm(on: bool) -> None:
    global _compiled_norm
    _compiled_norm = bool(on)
    _select_cached.cache_clear()


def _wrap_causal_conv1d(fn):
    def conv(x, weight, bias, activation=True):  # x: (b, l, c); the extension wants (b, c, l)
        return fn(x.transpose(1, 2), weight, bias, activation="silu" if activation else None).transpose(1, 2)
    return conv


def _wrap_fla_conv(fn):
    def conv(x, weight, bias, activation=True):  # x: (b, l, c); weight: (c, k)
        # no copy: fla reads the strided view that in_proj's split gives (tests/test_models.py checks it on CUDA)
        return fn(x, weight, bias, activation="silu" if activation else None)[0]
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
        ssd = mamba_ssd
        norm = _wrap_mamba_norm(ns.rmsnorm_fn)
        names = [f"mamba_ssm-triton {ns.version}",
                 "mamba_ssm-triton, traced twin when compiled" if _compiled_norm else "mamba_ssm-triton"]
    conv, conv_name = _select_conv(_conv_preference)
    return Mamba2Ops(ssd, norm, conv, (*names, conv_name))


def _select_conv(preference: str) -> tuple[Callable, str]:
    """The CUDA conv for `preference`; a preferred one that is unavailable is an error, never a silent swap."""
    if preference in ("auto", "cuda"):
        fn, why = causal_conv1d_cuda()
        if fn is not None:
            return torch.compiler.disable(_wrap_causal_conv1d(fn)), "causal_conv1d-cuda"
        if preference == "cuda":
            raise RuntimeError(f"conv preference cuda but {why}")
    if preference in ("auto", "triton"):
        fn, why = tokengap_triton_conv()
        if fn is not None:
            return fn, "tokengap-triton"  # custom ops: stay in the compiled graph
        if preference == "triton":
            raise RuntimeError(f"conv preference triton but {why}")
        if why not in _warned:
            _warned.add(why)
            log.warning("Mamba2 conv on CUDA runs F.conv1d (no fused kernel): %s", why)
    if preference == "fla":
        fn, info = fla_triton_conv()  # info: fla's version, or why it is unavailable
        if fn is None:
            raise RuntimeError(f"conv preference fla but {info}")
        return torch.compiler.disable(_wrap_fla_conv(fn)), f"fla-triton {info}"
    return causal_conv1d_torch, "torch-conv1d"


def select_mamba2_ops(kernels: str, device: torch.device) -> Mamba2Ops:
    """The ops a Mamba2 layer runs for `model.kernels` on `device` (auto | reference | triton)."""
    return _select_cached(kernels, device.type == "cuda")
