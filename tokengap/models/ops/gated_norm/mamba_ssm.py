"""mamba_ssm's gated RMSNorm kernel (Triton, `rmsnorm_fn`) behind the signature of its twin `reference.py`.

Under torch.compile the twin is traced instead (KernelChoice.compiled_gated_norm_twin, the default): inductor
fuses it with the gate and the reshapes around it, and the layer keeps no graph break. Eager (scoring, say),
mamba-ssm's kernel is faster than the unfused twin.
"""
from __future__ import annotations

from typing import Callable

import torch

from tokengap.models.ops.gated_norm.reference import gated_rms_norm_torch


def wrap_mamba_norm(rmsnorm_fn: Callable, compiled_twin: bool = True) -> Callable:
    """gated_rms_norm_torch's signature over mamba_ssm's `rmsnorm_fn`; with compiled_twin, traced as the twin."""
    @torch.compiler.disable  # a custom autograd Function: keep it out of dynamo
    def triton_norm(x, z, weight, eps, group_size, norm_before_gate):
        return rmsnorm_fn(x, weight, None, z=z, eps=eps, group_size=group_size, norm_before_gate=norm_before_gate)

    def norm(x, z, weight, eps, group_size, norm_before_gate=False):
        if compiled_twin and torch.compiler.is_compiling():
            return gated_rms_norm_torch(x, z, weight, eps, group_size, norm_before_gate)
        return triton_norm(x, z, weight, eps, group_size, norm_before_gate)
    return norm
