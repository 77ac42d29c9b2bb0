"""The one place that imports the optional kernel libraries: mamba-ssm, causal-conv1d and fla.

Each function returns (what was asked for, "") or (None, why not), and is cached: a library is imported once per
process, and a broken install never takes the PyTorch reference path down with it.

mamba-ssm's package __init__ imports its compiled Mamba1 scan (`selective_scan_cuda`) unconditionally, so a
pure-Python install (the only kind buildable without network/nvcc, see briefs/gpu.md) cannot even be imported.
We register an empty placeholder module under that name, then import only the Triton modules we use. The one
thing the placeholder breaks is Mamba1's `selective_scan_fn`, which this package never calls.

Triton autotunes mamba-ssm's and fla's kernels the first time a shape runs in a process. Triton keeps the chosen
configs on disk when TRITON_CACHE_AUTOTUNING is set while the autotuners are defined (at import): we set it
around these imports only (other libraries' kernels are left as they are), and leave a value the user set alone.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import types
from typing import Callable, Optional


@contextlib.contextmanager
def _autotune_cache():
    switch = "TRITON_CACHE_AUTOTUNING" not in os.environ
    if switch:
        os.environ["TRITON_CACHE_AUTOTUNING"] = "1"
    try:
        yield
    finally:
        if switch:
            del os.environ["TRITON_CACHE_AUTOTUNING"]


@functools.cache
def mamba_ssm_triton() -> tuple[Optional[types.SimpleNamespace], str]:
    """(namespace with ssd_fwd, ssd_bwd (mamba_chunk_scan_combined's halves), rmsnorm_fn, version, "") or (None, why)."""
    if importlib.util.find_spec("mamba_ssm") is None:
        return None, "mamba-ssm is not installed (pip install 'tokengap[cuda]')"
    placeholder = False
    if "selective_scan_cuda" not in sys.modules and importlib.util.find_spec("selective_scan_cuda") is None:
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")  # see module docstring
        placeholder = True
    try:
        with _autotune_cache():
            from mamba_ssm.ops.triton.layernorm_gated import rmsnorm_fn
            from mamba_ssm.ops.triton.ssd_combined import (_mamba_chunk_scan_combined_bwd,
                                                           _mamba_chunk_scan_combined_fwd)
    except Exception as exc:
        return None, f"mamba-ssm import failed: {type(exc).__name__}: {exc}"
    import mamba_ssm

    note = " (without its compiled Mamba1 extension)" if placeholder else ""
    ns = types.SimpleNamespace(rmsnorm_fn=rmsnorm_fn, ssd_fwd=_mamba_chunk_scan_combined_fwd,
                               ssd_bwd=_mamba_chunk_scan_combined_bwd,
                               version=getattr(mamba_ssm, "__version__", "?") + note)
    return ns, ""


@functools.cache
def causal_conv1d_cuda() -> tuple[Optional[Callable], str]:
    """causal-conv1d's CUDA kernel (x: (b, c, l))."""
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
        with _autotune_cache():
            from fla.modules.causal_conv1d import causal_conv1d
    except Exception as exc:
        return None, f"fla import failed: {type(exc).__name__}: {exc}"
    return causal_conv1d, getattr(fla, "__version__", "?")


@functools.cache
def fla_gated_delta_rule() -> tuple[Optional[types.SimpleNamespace], str]:
    """fla's chunked gated delta rule, forward and backward halves (chunk_gated_delta_rule_fwd / _bwd of
    fla.ops.gated_delta_rule.chunk, fla 0.6), and the module whose TRITON_ABOVE_3_7_1 flag guards the backward
    on Hopper (fla.ops.common.chunk_o; see tokengap/models/ops/gdn/fla.py): (namespace, "") or (None, why not)."""
    if importlib.util.find_spec("fla") is None:
        return None, "flash-linear-attention (fla) is not installed (pip install 'tokengap[cuda]')"
    try:
        import fla
        with _autotune_cache():
            chunk = importlib.import_module("fla.ops.gated_delta_rule.chunk")
            chunk_o = importlib.import_module("fla.ops.common.chunk_o")
        fwd, bwd = chunk.chunk_gated_delta_rule_fwd, chunk.chunk_gated_delta_rule_bwd
    except Exception as exc:
        return None, f"fla import failed: {type(exc).__name__}: {exc}"
    if not hasattr(chunk_o, "TRITON_ABOVE_3_7_1"):
        return None, f"fla {getattr(fla, '__version__', '?')}: no TRITON_ABOVE_3_7_1 in fla.ops.common.chunk_o " \
                     "(tested with fla 0.6.0)"
    return types.SimpleNamespace(fwd=fwd, bwd=bwd, guard_module=chunk_o,
                                 version=getattr(fla, "__version__", "?")), ""


@functools.cache
def tokengap_triton(module: str, name: str) -> tuple[Optional[Callable], str]:
    """(tokengap.models.ops.<module>.<name>, "") or (None, why not): our Triton kernels import wherever triton does."""
    if importlib.util.find_spec("triton") is None:
        return None, "triton is not installed"
    try:
        return getattr(importlib.import_module(f"tokengap.models.ops.{module}"), name), ""
    except Exception as exc:
        return None, f"tokengap.models.ops.{module} import failed: {type(exc).__name__}: {exc}"
