"""Mamba2 (SSD) mixer with the standard parameterisation of mamba_ssm.modules.mamba2.Mamba2.

in_proj -> [z | xBC | dt];  xBC -> short causal depthwise conv + SiLU -> [x | B | C];
y = SSD(x, dt, A, B, C) + D x  (per-head scalar A and dt);  y = RMSNorm(y * silu(z));  out_proj(y).

Parameter names and shapes equal mamba-ssm's (ngroups, no d_ssm split, no biases on the projections), so a
state dict loads into either; `scripts/gpu_check.py` does exactly that to compare the two on the GPU.
Which implementation of each op runs is decided per call by `models.kernels.select_mamba2_ops`.
"""
from __future__ import annotations

import logging
import math
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from models.config import ModelConfig
from models.kernels import Mamba2Ops, select_mamba2_ops

log = logging.getLogger("tokengap.models")


class GatedRMSNorm(nn.Module):
    """Holds the weight of the gated RMSNorm; the op itself comes from `select_mamba2_ops`."""

    def __init__(self, d: int, group_size: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.group_size, self.eps = group_size, eps


class Mamba2(nn.Module):
    """u: (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0):
        super().__init__()
        m = cfg.mamba
        self.cfg, self.layer_idx, self.kernels = m, layer_idx, cfg.kernels
        self.d_model, self.d_inner = cfg.d_model, m.expand * cfg.d_model
        self.headdim, self.d_state, self.ngroups = m.headdim, m.d_state, m.ngroups
        self.nheads = self.d_inner // m.headdim
        self.conv_dim = self.d_inner + 2 * m.ngroups * m.d_state
        self.in_proj = nn.Linear(cfg.d_model, self.d_inner + self.conv_dim + self.nheads, bias=False)  # [z, xBC, dt]
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, kernel_size=m.d_conv, groups=self.conv_dim,
                                padding=m.d_conv - 1, bias=m.conv_bias)
        self.dt_bias = nn.Parameter(torch.empty(self.nheads))
        self.A_log = nn.Parameter(torch.empty(self.nheads))
        self.D = nn.Parameter(torch.empty(self.nheads))
        self.norm = GatedRMSNorm(self.d_inner, group_size=self.d_inner // m.ngroups)
        self.out_proj = nn.Linear(self.d_inner, cfg.d_model, bias=False)
        self.out_proj.is_residual_out = True
        self.path = None  # e.g. "ssd=mamba_ssm-triton norm=... conv=...": what the last forward ran
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Mamba2 init: dt log-uniform in [dt_min, dt_max] (stored as softplus^-1), A ~ U[A_min, A_max], D = 1."""
        m = self.cfg
        dt = torch.exp(torch.rand(self.nheads) * (math.log(m.dt_max) - math.log(m.dt_min)) + math.log(m.dt_min))
        dt = dt.clamp(min=m.dt_init_floor)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log.copy_(torch.log(torch.empty(self.nheads).uniform_(m.A_init_min, m.A_init_max)))
        self.D.fill_(1.0)

    @torch.compiler.disable  # bookkeeping in Python: keep it out of compiled graphs
    def _ops(self, device: torch.device):
        ops = select_mamba2_ops(self.kernels, device)
        if self.path != ops.describe():
            self.path = ops.describe()
            log.debug("layer %d mamba2 on %s: %s", self.layer_idx, device.type, self.path)
        return ops

    def forward(self, u: Tensor, ops: Optional[Mamba2Ops] = None) -> Tensor:
        """ops: what to run (LM resolves them once per forward, outside the compiled graph); else looked up."""
        b, l, _ = u.shape
        ops = ops if ops is not None else self._ops(u.device)
        z, xBC, dt = self.in_proj(u).split([self.d_inner, self.conv_dim, self.nheads], dim=-1)
        xBC = ops.conv(xBC, self.conv1d.weight.squeeze(1), self.conv1d.bias)
        x, B, C = xBC.split([self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        A = -torch.exp(self.A_log.float())
        y = ops.ssd(
            x.reshape(b, l, self.nheads, self.headdim), dt, A,
            B.reshape(b, l, self.ngroups, self.d_state), C.reshape(b, l, self.ngroups, self.d_state),
            chunk_size=self.cfg.chunk_size, D=self.D, dt_bias=self.dt_bias, dt_softplus=True,
        )
        y = ops.norm(y.reshape(b, l, self.d_inner), z, self.norm.weight, self.norm.eps, self.norm.group_size)
        return self.out_proj(y)
