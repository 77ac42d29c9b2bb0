"""Which implementation each op runs: a frozen KernelChoice in, the resolved ops out. No module-level switches.

Ops and their paths (each op's folder under tokengap/models/ops/ holds its kernel, its PyTorch twin and its wrapper):
  ssd         mamba-ssm's chunk-scan kernels (Triton) as tokengap::mamba_ssd  |  ops/ssd/reference.ssd_chunked_torch
  gdn         fla's chunked gated delta rule (Triton) as tokengap::gdn_fwd/bwd, behind our backward check
              |  ops/gdn/reference.gdn_chunked_torch
  gated_norm  mamba_ssm's rmsnorm_fn (Triton; traced twin when compiled)  |  ops/gated_norm/reference.gated_rms_norm_torch
  conv        causal-conv1d (CUDA extension)  |  ours (ops/conv/kernel.py, Triton)  |  fla's (Triton; only when asked)
              |  ops/conv/reference.causal_conv1d_torch (F.conv1d; also the reference)
and, for every model:
  add + norm  ours (ops/add_norm/kernel.py, Triton)  |  x + y, then nn.RMSNorm (ops/add_norm/reference.py)
  loss        ours (ops/ce/kernel.py, Triton)  |  lm_head + F.cross_entropy (ops/ce/reference.py)

CPU always runs the twins. On CUDA, `KernelChoice.scans` (= model.kernels) picks the recurrent layers' scans: auto
(the kernels when importable, else the twins, said once in the log), reference (always the twins) or triton (fail if
a kernel is missing). The conv takes the first of causal-conv1d, ours, F.conv1d that imports: the Triton convs read
the (b, l, c) layout in place and fuse the SiLU, F.conv1d needs two transposes. Ours is the default over fla's: the
same fixed tiles in every process and only triton needed; BENCHMARKS.md has the timings. The other fields exist to
time one path against another (scripts/bench.py) and to check them against each other (scripts/gpu_check.py).
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from tokengap.models.ops.conv.external import wrap_causal_conv1d, wrap_fla_conv
from tokengap.models.ops.conv.reference import causal_conv1d_torch
from tokengap.models.ops.external import (causal_conv1d_cuda, fla_gated_delta_rule, fla_triton_conv, mamba_ssm_triton,
                                          tokengap_triton)
from tokengap.models.ops.gated_norm.mamba_ssm import wrap_mamba_norm
from tokengap.models.ops.gated_norm.reference import gated_rms_norm_torch
from tokengap.models.ops.gdn.reference import gdn_chunked_torch
from tokengap.models.ops.ssd.reference import ssd_chunked_torch

log = logging.getLogger("tokengap.models")

SCANS = ("auto", "reference", "triton")
CONVS = ("auto", "cuda", "triton", "fla", "torch")


@dataclass(frozen=True)
class KernelChoice:
    """Which implementation each op runs on CUDA (CPU runs the PyTorch twins whatever is chosen)."""
    scans: str = "auto"
    """model.kernels: the recurrent layers' scans (Mamba2's SSD, GDN): auto | reference | triton."""
    conv: str = "auto"
    """The short causal conv: auto (causal-conv1d, then ours, then F.conv1d) | cuda | triton | fla | torch."""
    compiled_gated_norm_twin: bool = True
    """Compiled models trace the gated norm's twin (inductor fuses it) instead of calling mamba-ssm's kernel."""
    fused_loss: bool = True
    """The training loss as our Triton linear cross-entropy (else lm_head + F.cross_entropy)."""
    fused_add_norm: bool = True
    """The residual add + RMSNorm as our Triton kernels (else x + y, nn.RMSNorm)."""

    def __post_init__(self):
        if self.scans not in SCANS:
            raise ValueError(f"model.kernels: expected {'|'.join(SCANS)}, got {self.scans!r}")
        if self.conv not in CONVS:
            raise ValueError(f"conv preference: expected one of {' | '.join(CONVS)}, got {self.conv!r}")


@dataclass(frozen=True)
class MixerOps:
    """The ops the recurrent mixers run (None: not needed by this model), and their names for the log."""
    ssd: Optional[Callable] = None
    gdn: Optional[Callable] = None
    gated_norm: Optional[Callable] = None
    conv: Optional[Callable] = None
    names: tuple[tuple[str, str], ...] = ()  # (op, implementation) for the ops resolved

    def name(self, op: str) -> str:
        return dict(self.names).get(op, "not resolved")


OPS = ("ssd", "gdn", "gated_norm", "conv")
_TWINS = {"ssd": (ssd_chunked_torch, "torch-chunked(reference)"), "gdn": (gdn_chunked_torch, "torch-chunked(reference)"),
          "gated_norm": (gated_rms_norm_torch, "torch(reference)"), "conv": (causal_conv1d_torch, "torch-conv1d")}
_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)


def _kernel(op: str, choice: KernelChoice) -> tuple[Optional[Callable], str, str]:
    """(fn, name, "") of op's CUDA kernel, or (None, "", why not)."""
    if op == "conv":
        return (*select_conv(choice.conv), "")
    if op in ("ssd", "gated_norm"):
        ns, why = mamba_ssm_triton()
        if ns is None:
            return None, "", why
        if op == "ssd":
            from tokengap.models.ops.ssd.mamba_ssm import mamba_ssd
            return mamba_ssd, f"mamba_ssm-triton {ns.version}", ""
        twin = choice.compiled_gated_norm_twin
        return (wrap_mamba_norm(ns.rmsnorm_fn, twin),
                "mamba_ssm-triton" + (", traced twin when compiled" if twin else ""), "")
    ns, why = fla_gated_delta_rule()
    if ns is None:
        return None, "", why
    from tokengap.models.ops.gdn.fla import chunk_gdn_fla
    return chunk_gdn_fla, f"fla-triton {ns.version}", ""


@functools.cache
def _mixer_ops(choice: KernelChoice, is_cuda: bool, needs: frozenset) -> MixerOps:
    if choice.scans == "triton" and not is_cuda:
        raise RuntimeError("model.kernels=triton: the Triton kernels need a CUDA device")
    ops, names = {}, []
    for op in sorted(needs, key=OPS.index):
        fn, name = _TWINS[op]
        if is_cuda and choice.scans != "reference":
            kernel, kname, why = _kernel(op, choice)
            if kernel is not None:
                fn, name = kernel, kname
            elif choice.scans == "triton":
                raise RuntimeError(f"model.kernels=triton but {why}")
            else:
                slow = " (slow)" if op in ("ssd", "gdn") else ""
                _warn_once(f"{op} on CUDA runs its pure-PyTorch twin{slow}: {why}")
        ops[op] = fn
        names.append((op, name))
    return MixerOps(**ops, names=tuple(names))


def mixer_ops(choice: KernelChoice, device: torch.device, needs=OPS) -> MixerOps:
    """The ops in `needs` (names of MixerOps fields) for `choice` on `device`; the others stay None."""
    unknown = set(needs) - set(OPS)
    if unknown:
        raise ValueError(f"unknown ops {sorted(unknown)} (known: {', '.join(OPS)})")
    return _mixer_ops(choice, torch.device(device).type == "cuda", frozenset(needs))


def select_conv(preference: str) -> tuple[Callable, str]:
    """The CUDA conv for `preference`; a preferred one that is unavailable is an error, never a silent swap."""
    if preference in ("auto", "cuda"):
        fn, why = causal_conv1d_cuda()
        if fn is not None:
            return torch.compiler.disable(wrap_causal_conv1d(fn)), "causal_conv1d-cuda"
        if preference == "cuda":
            raise RuntimeError(f"conv preference cuda but {why}")
    if preference in ("auto", "triton"):
        fn, why = tokengap_triton("conv.kernel", "causal_conv1d_triton")
        if fn is not None:
            return fn, "tokengap-triton"  # custom ops: stay in the compiled graph
        if preference == "triton":
            raise RuntimeError(f"conv preference triton but {why}")
        _warn_once(f"the short conv on CUDA runs F.conv1d (no fused kernel): {why}")
    if preference == "fla":
        fn, info = fla_triton_conv()  # info: fla's version, or why it is unavailable
        if fn is None:
            raise RuntimeError(f"conv preference fla but {info}")
        return torch.compiler.disable(wrap_fla_conv(fn)), f"fla-triton {info}"
    return causal_conv1d_torch, "torch-conv1d"


def _ours_on_cuda(device: torch.device, enabled: bool, lookup: Callable, name: str, twin: str,
                  what: str) -> tuple[Optional[Callable], str]:
    """(kernel, name) on CUDA when `enabled` and lookup() finds it, else (None, twin); why a CUDA device runs the
    twin is logged once."""
    if torch.device(device).type == "cuda" and enabled:
        fn, why = lookup()
        if fn is not None:
            return fn, name
        _warn_once(f"{what} on CUDA runs {twin}: {why}")
    return None, twin


def loss_kernel(choice: KernelChoice, device: torch.device) -> tuple[Optional[Callable], str]:
    """The training loss on `device`: (linear_cross_entropy_triton, name) on CUDA when triton imports, else
    (None, name of the twin: lm_head + F.cross_entropy)."""
    return _ours_on_cuda(device, choice.fused_loss, lambda: tokengap_triton("ce.kernel", "linear_cross_entropy_triton"),
                         "tokengap-triton linear cross-entropy", "lm_head + torch F.cross_entropy", "training loss")


def norm_kernel(choice: KernelChoice, device: torch.device, d_model: int) -> tuple[Optional[Callable], str]:
    """The residual add + RMSNorm on `device`: (add_rms_norm_triton, name) on CUDA when triton imports and a row of
    d_model fits its kernel, else (None, name of the twin: x + y, nn.RMSNorm)."""
    def lookup():
        fn, why = tokengap_triton("add_norm.kernel", "add_rms_norm_triton")
        if fn is not None:
            from tokengap.models.ops.add_norm.kernel import MAX_D
            if d_model > MAX_D:
                return None, (f"d_model {d_model} is longer than the kernel's rows "
                              "(tokengap.models.ops.add_norm.kernel.MAX_D)")
        return fn, why
    return _ours_on_cuda(device, choice.fused_add_norm, lookup, "tokengap-triton add + RMSNorm",
                         "x + y, torch nn.RMSNorm", "residual add + RMSNorm")
