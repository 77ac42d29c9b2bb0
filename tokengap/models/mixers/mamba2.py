"""Mamba2 (SSD) mixer with the standard parameterisation of mamba_ssm.modules.mamba2.Mamba2.

in_proj -> [z | xBC | dt];  xBC -> short causal depthwise conv + SiLU -> [x | B | C];
y = SSD(x, dt, A, B, C) + D x  (per-head scalar A and dt);  y = RMSNorm(y * silu(z));  out_proj(y).

Parameter names and shapes equal mamba-ssm's (ngroups, no d_ssm split, no biases on the projections), so a
state dict loads into either; `scripts/gpu_check.py` does exactly that to compare the two on the GPU.
Which implementation of each op runs (tokengap.models.kernels.MixerOps: ssd, gated_norm, conv) is resolved by the LM
once per forward and handed in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from tokengap.models.mixers import MixerSpec, register
from tokengap.models.ops.gated_norm.reference import GatedRMSNorm


@dataclass
class MambaConfig:
    """model.mamba: the Mamba2 layers' settings (mamba_ssm's names and defaults)."""
    d_state: int = 128  # N: state size per head
    d_conv: int = 4  # width of the short causal depthwise conv
    expand: int = 2  # d_inner = expand * d_model
    headdim: int = 64  # P: channels per SSM head; n_heads_ssm = d_inner / headdim
    ngroups: int = 1  # B/C groups (like GQA for the SSM)
    chunk_size: int = 256  # SSD chunk length (kernel and reference)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    A_init_min: float = 1.0  # A = -exp(A_log), A_log = log(U(A_init_min, A_init_max))
    A_init_max: float = 16.0
    conv_bias: bool = True


class Mamba2(nn.Module):
    """u: (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""

    def __init__(self, cfg, layer_idx: int = 0):
        super().__init__()
        m = cfg.mamba
        self.cfg, self.layer_idx = m, layer_idx
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

    def forward(self, u: Tensor, rope=None, ops=None) -> Tensor:
        """ops: the tokengap.models.kernels.MixerOps to run (the LM resolves them once per forward, outside the compiled
        graph); None: the PyTorch twins."""
        b, l, _ = u.shape
        ops = ops if ops is not None else _twins()
        z, xBC, dt = self.in_proj(u).split([self.d_inner, self.conv_dim, self.nheads], dim=-1)
        xBC = ops.conv(xBC, self.conv1d.weight.squeeze(1), self.conv1d.bias)
        x, B, C = xBC.split([self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        A = -torch.exp(self.A_log.float())
        y = ops.ssd(
            x.reshape(b, l, self.nheads, self.headdim), dt, A,
            B.reshape(b, l, self.ngroups, self.d_state), C.reshape(b, l, self.ngroups, self.d_state),
            chunk_size=self.cfg.chunk_size, D=self.D, dt_bias=self.dt_bias, dt_softplus=True,
        )
        y = ops.gated_norm(y.reshape(b, l, self.d_inner), z, self.norm.weight, self.norm.eps, self.norm.group_size)
        return self.out_proj(y)


# ---- registration -------------------------------------------------------------------------------------------
def _twins():
    from tokengap.models.kernels import KernelChoice, mixer_ops
    return mixer_ops(KernelChoice(scans="reference"), torch.device("cpu"), SPEC.ops)


def num_params(cfg) -> int:
    d, m = cfg.d_model, cfg.mamba
    di, H = m.expand * d, (m.expand * d) // m.headdim
    conv_dim = di + 2 * m.ngroups * m.d_state
    return d * (2 * di + 2 * m.ngroups * m.d_state + H) + conv_dim * (m.d_conv + int(m.conv_bias)) + 3 * H + di + di * d


def flops_per_token(cfg, seq_len: int) -> float:
    """The SSD at chunk Q, state N, groups G, head dim P, heads H: CB^T, causal (CB o L) X, chunk states, state
    outputs, 2 Q N G + Q P H + 4 N P H forward; x3 with the backward."""
    m = cfg.mamba
    H = m.expand * cfg.d_model // m.headdim
    Q, N, P, G = m.chunk_size, m.d_state, m.headdim, m.ngroups
    return 3.0 * (2 * Q * N * G + Q * P * H + 4 * N * P * H)


def validate(cfg) -> None:
    from tokengap.models.config import ConfigError
    m = cfg.mamba
    d_inner = m.expand * cfg.d_model
    if d_inner % m.headdim != 0:
        raise ConfigError(f"model.mamba.headdim: {m.headdim} does not divide d_inner={d_inner} (expand*d_model)")
    if (d_inner // m.headdim) % m.ngroups != 0:
        raise ConfigError(f"model.mamba.ngroups: {m.ngroups} does not divide the {d_inner // m.headdim} SSM heads")
    if m.chunk_size < 1 or m.d_conv < 1 or m.d_state < 1:
        raise ConfigError("model.mamba: chunk_size, d_conv and d_state must be positive")


def describe(module, ops) -> str:
    if ops is None:
        return "not run yet"
    return f"ssd={ops.name('ssd')} norm={ops.name('gated_norm')} conv={ops.name('conv')}"


SPEC = register(MixerSpec("mamba2", lambda cfg, i: Mamba2(cfg, i), num_params, flops_per_token, validate, describe,
                          ops=("ssd", "gated_norm", "conv"), recurrent=True,
                          doc="Mamba2 (SSD), mamba_ssm's parameterisation"))
