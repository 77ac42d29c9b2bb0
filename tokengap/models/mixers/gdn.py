"""Gated DeltaNet (`gdn`) in Olmo Hybrid's parameterisation (OLMo-core's Olmo Hybrid 7B; transformers'
OlmoHybridGatedDeltaNet), the recurrent layer of the study's hybrid.

    [q | k | v | gate | a | b] = in_proj(x)
    q, k, v = SiLU(short causal depthwise conv([q | k | v]))      (kernel 4, no bias)
    q, k    = L2-normalised per head;  q scaled by head_dim^-0.5
    beta    = 2 sigmoid(b)   (in (0, 2): negative eigenvalues of the state transition; 1x with allow_neg_eigval off)
    g       = -exp(A_log) softplus(a + dt_bias)                   (log decay per value head and token)
    o       = gated delta rule(q, k, v, g, beta)                  (tokengap/models/ops/gdn)
    y       = out_proj(RMSNorm(o) * weight * silu(gate))          (per value head; weight shared over heads)

Defaults follow Olmo Hybrid's ratios: as many key heads as attention heads, key head dim 0.75 d_model / heads, as
many value heads, value head dim twice the key head dim. One fused in_proj stands for transformers' six
projections (q, k, v, g, a, b), concatenated in that order: `from_hf_state_dict` maps one onto the other, and
`scripts/gpu_check.py` and tests/test_gdn.py compare the two layers with the same weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from tokengap.models.mixers import MixerSpec, register
from tokengap.models.ops.gated_norm.reference import GatedRMSNorm
from tokengap.models.ops.gdn.reference import l2_normalize


@dataclass
class GDNConfig:
    """model.gdn: the Gated DeltaNet layers' settings (transformers' OlmoHybridConfig names in brackets)."""
    # key (and query) heads [linear_num_key_heads]; None: 0.75 * d_model / head_dim when head_dim is set (the key
    # width Olmo Hybrid's ratios give), else model.n_heads
    n_heads: Optional[int] = None
    n_v_heads: Optional[int] = None  # value heads, a multiple of n_heads [linear_num_value_heads]; None: n_heads
    head_dim: Optional[int] = None  # key head dim [linear_key_head_dim]; None: 0.75 * d_model / n_heads
    v_head_dim: Optional[int] = None  # value head dim [linear_value_head_dim]; None: 2 * head_dim
    conv_size: int = 4  # short causal conv on q, k, v [linear_conv_kernel_dim]
    conv_bias: bool = False
    allow_neg_eigval: bool = True  # beta = 2 sigmoid(.) [linear_allow_neg_eigval]; false: sigmoid(.)
    chunk_size: int = 64  # chunk of the WY form (fla's kernel: 16, 32 or 64; the twin: any)
    A_init_min: float = 0.0  # A ~ U(A_init_min, A_init_max), A_log = log A [linear_a_log_min/max]
    A_init_max: float = 16.0
    dt_min: float = 0.001  # softplus(dt_bias) log-uniform in [dt_min, dt_max] at init [linear_dt_min/max]
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    norm_eps: float = 1e-5  # the output's gated RMSNorm (fla's FusedRMSNormGated default)


def dims(cfg) -> tuple[int, int, int, int]:
    """(key heads, value heads, key head dim, value head dim) of cfg's GDN layers (checked by `validate`)."""
    g = cfg.gdn
    h = _key_heads(cfg)
    dk = g.head_dim if g.head_dim is not None else int(0.75 * cfg.d_model / h)
    return h, g.n_v_heads or h, dk, g.v_head_dim if g.v_head_dim is not None else 2 * dk


def _key_heads(cfg) -> int:
    g = cfg.gdn
    if g.n_heads:
        return g.n_heads
    return int(0.75 * cfg.d_model / g.head_dim) if g.head_dim else cfg.n_heads


class GatedDeltaNet(nn.Module):
    """x: (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""

    def __init__(self, cfg, layer_idx: int = 0):
        super().__init__()
        g = cfg.gdn
        self.cfg, self.layer_idx = g, layer_idx
        self.n_heads, self.n_v_heads, self.head_dim, self.v_head_dim = dims(cfg)
        self.key_dim, self.value_dim = self.n_heads * self.head_dim, self.n_v_heads * self.v_head_dim
        self.conv_dim = 2 * self.key_dim + self.value_dim
        # [q, k, v | gate | a | b]
        self.in_proj = nn.Linear(cfg.d_model, self.conv_dim + self.value_dim + 2 * self.n_v_heads, bias=False)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, kernel_size=g.conv_size, groups=self.conv_dim,
                                padding=g.conv_size - 1, bias=g.conv_bias)
        self.A_log = nn.Parameter(torch.empty(self.n_v_heads))
        self.dt_bias = nn.Parameter(torch.empty(self.n_v_heads))
        self.norm = GatedRMSNorm(self.v_head_dim, group_size=self.v_head_dim, eps=g.norm_eps)
        self.out_proj = nn.Linear(self.value_dim, cfg.d_model, bias=False)
        self.out_proj.is_residual_out = True
        self.reset_gdn_parameters()

    @torch.no_grad()
    def reset_gdn_parameters(self) -> None:
        """Olmo Hybrid's init: A ~ U[A_init_min, A_init_max] (stored as log), softplus(dt_bias) log-uniform in
        [dt_min, dt_max], floored at dt_init_floor (as Mamba2's dt)."""
        g = self.cfg
        self.A_log.copy_(torch.empty(self.n_v_heads).uniform_(g.A_init_min, g.A_init_max).log())
        dt = torch.exp(torch.rand(self.n_v_heads) * (math.log(g.dt_max) - math.log(g.dt_min)) + math.log(g.dt_min))
        dt = dt.clamp(min=g.dt_init_floor)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, x: Tensor, rope=None, ops=None) -> Tensor:
        """ops: the tokengap.models.kernels.MixerOps to run (gdn, gated_norm, conv); None: the PyTorch twins."""
        b, l, _ = x.shape
        ops = ops if ops is not None else _twins()
        h, hv, dk, dv = self.n_heads, self.n_v_heads, self.head_dim, self.v_head_dim
        qkv, gate, a, beta = self.in_proj(x).split([self.conv_dim, self.value_dim, hv, hv], dim=-1)
        qkv = ops.conv(qkv, self.conv1d.weight.squeeze(1), self.conv1d.bias)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        q, k = l2_normalize(q.reshape(b, l, h, dk)), l2_normalize(k.reshape(b, l, h, dk))
        if hv > h:  # grouped values: each key head serves hv / h value heads
            q, k = q.repeat_interleave(hv // h, dim=2), k.repeat_interleave(hv // h, dim=2)
        beta = beta.float().sigmoid() * (2.0 if self.cfg.allow_neg_eigval else 1.0)
        g = -torch.exp(self.A_log.float()) * F.softplus(a.float() + self.dt_bias.float())
        o = ops.gdn(q, k, v.reshape(b, l, hv, dv), g, beta, chunk_size=self.cfg.chunk_size)
        o = ops.gated_norm(o, gate.reshape(b, l, hv, dv), self.norm.weight, self.norm.eps, dv, True)
        return self.out_proj(o.reshape(b, l, self.value_dim))


def to_hf_state_dict(layer: GatedDeltaNet) -> dict:
    """Our layer's state dict in transformers' OlmoHybridGatedDeltaNet names (in_proj split into its six)."""
    sd = layer.state_dict()
    kd, vd, hv = layer.key_dim, layer.value_dim, layer.n_v_heads
    parts = sd["in_proj.weight"].split([kd, kd, vd, vd, hv, hv], dim=0)
    out = {f"{n}_proj.weight": w for n, w in zip(("q", "k", "v", "g", "a", "b"), parts)}
    out.update({"conv1d.weight": sd["conv1d.weight"], "A_log": sd["A_log"], "dt_bias": sd["dt_bias"],
                "o_norm.weight": sd["norm.weight"], "o_proj.weight": sd["out_proj.weight"]})
    if "conv1d.bias" in sd:
        out["conv1d.bias"] = sd["conv1d.bias"]
    return out


def from_hf_state_dict(sd: dict) -> dict:
    """transformers' OlmoHybridGatedDeltaNet state dict -> ours (the six projections concatenated into in_proj)."""
    cat = torch.cat([sd[f"{n}_proj.weight"] for n in ("q", "k", "v", "g", "a", "b")], dim=0)
    out = {"in_proj.weight": cat, "conv1d.weight": sd["conv1d.weight"], "A_log": sd["A_log"],
           "dt_bias": sd["dt_bias"], "norm.weight": sd["o_norm.weight"], "out_proj.weight": sd["o_proj.weight"]}
    if "conv1d.bias" in sd:
        out["conv1d.bias"] = sd["conv1d.bias"]
    return out


# ---- registration -------------------------------------------------------------------------------------------
def _twins():
    from tokengap.models.kernels import KernelChoice, mixer_ops
    return mixer_ops(KernelChoice(scans="reference"), torch.device("cpu"), SPEC.ops)


def num_params(cfg) -> int:
    h, hv, dk, dv = dims(cfg)
    conv_dim = 2 * h * dk + hv * dv
    in_proj = cfg.d_model * (conv_dim + hv * dv + 2 * hv)
    return in_proj + conv_dim * (cfg.gdn.conv_size + int(cfg.gdn.conv_bias)) + 2 * hv + dv + hv * dv * cfg.d_model


def flops_per_token(cfg, seq_len: int) -> float:
    """The chunked rule at chunk C, per value head (key dim K, value dim V), forward: causal K K^T and Q K^T
    (C K each), the triangular solves for u and w (C (K + V)), causal attention over the new values (C V), and
    reading, correcting and writing the state (6 K V); x3 with the backward."""
    h, hv, dk, dv = dims(cfg)
    C = cfg.gdn.chunk_size
    return 3.0 * hv * (C * (3 * dk + 2 * dv) + 6 * dk * dv)


def validate(cfg) -> None:
    from tokengap.models.config import ConfigError
    g = cfg.gdn
    if g.head_dim is not None and not g.n_heads and (g.head_dim < 1 or (0.75 * cfg.d_model / g.head_dim) % 1
                                                    or 0.75 * cfg.d_model < g.head_dim):
        raise ConfigError(f"model.gdn.head_dim: {g.head_dim} gives 0.75 * d_model / head_dim = 0.75 * {cfg.d_model} "
                          f"/ {g.head_dim} key heads, not a whole number >= 1; set model.gdn.n_heads or another head_dim")
    h = _key_heads(cfg)
    if h < 1:
        raise ConfigError(f"model.gdn.n_heads: must be positive, got {h}")
    if g.head_dim is None and (0.75 * cfg.d_model / h) % 1:
        raise ConfigError(f"model.gdn.head_dim: the default 0.75 * d_model / heads = 0.75 * {cfg.d_model} / {h} is "
                          "not a whole number; set model.gdn.head_dim (or model.gdn.n_heads)")
    h, hv, dk, dv = dims(cfg)
    if hv < h or hv % h:
        raise ConfigError(f"model.gdn.n_v_heads: {hv} value heads are not a multiple of the {h} key heads")
    if not 1 <= dk <= 256:
        raise ConfigError(f"model.gdn.head_dim: {dk} is outside 1..256 (fla's kernel takes key head dims up to 256)")
    if dv < 1:
        raise ConfigError(f"model.gdn.v_head_dim: must be positive, got {dv}")
    if g.chunk_size not in (16, 32, 64):
        raise ConfigError(f"model.gdn.chunk_size: {g.chunk_size} (fla's kernel takes 16, 32 or 64)")
    if g.conv_size < 1:
        raise ConfigError(f"model.gdn.conv_size: must be positive, got {g.conv_size}")
    if not 0 <= g.A_init_min < g.A_init_max:
        raise ConfigError(f"model.gdn.A_init_min/A_init_max: need 0 <= min < max, got {g.A_init_min}, {g.A_init_max}")


def describe(module, ops) -> str:
    if ops is None:
        return "not run yet"
    return f"gdn={ops.name('gdn')} norm={ops.name('gated_norm')} conv={ops.name('conv')}"


def check(module: GatedDeltaNet, ops, device: torch.device, dtype: torch.dtype) -> Optional[dict]:
    """Before training on fla's kernel: its backward against the twin at this layer's head dims (see ops/gdn/fla.py)."""
    from tokengap.models.ops.gdn import fla
    if ops is None or ops.gdn is not fla.chunk_gdn_fla:
        return None
    return fla.check_backward(module.head_dim, module.v_head_dim, dtype, device, module.cfg.chunk_size)


SPEC = register(MixerSpec("gdn", lambda cfg, i: GatedDeltaNet(cfg, i), num_params, flops_per_token, validate, describe,
                          ops=("gdn", "gated_norm", "conv"), recurrent=True, check=check,
                          doc="Gated DeltaNet, Olmo Hybrid's parameterisation"))
