"""Causal self-attention (`attention`) and sliding-window attention (`swa`): RoPE, SDPA (flash on GPU),
QK-norm, grouped KV heads.

A sliding window is a boolean mask for SDPA (eager, CPU and scoring), which rules out the flash kernel and
computes the whole score matrix; compiled on CUDA (training) it runs FlexAttention with a block mask instead,
which skips the blocks outside the window. Both compute the same attention (scripts/gpu_check.py compares them).
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from tokengap.models.mixers import MixerSpec, register


def rope_tables(seqlen: int, head_dim: int, theta: float, device, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """cos, sin: (seqlen, head_dim/2) for rotate-half RoPE (GPT-NeoX / Llama layout)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    freqs = torch.outer(torch.arange(seqlen, device=device, dtype=torch.float32), inv_freq)
    return freqs.cos().to(dtype), freqs.sin().to(dtype)


@torch.compiler.disable
def rope_tables_cached(seqlen: int, head_dim: int, theta: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """rope_tables (float32), computed once per (seqlen, head_dim, theta, device) and kept outside the compiled
    graph: traced, the tables were recomputed (cos/sin of every position) inside each fused RoPE kernel, forward
    and backward (BENCHMARKS.md)."""
    return _rope_tables_cache(seqlen, head_dim, theta, torch.device(device))


@functools.cache  # never evicted: a captured CUDA graph (train.cuda_graph) reads the tables by address
def _rope_tables_cache(seqlen: int, head_dim: int, theta: float, device: torch.device) -> tuple[Tensor, Tensor]:
    with torch.inference_mode(False), torch.no_grad():  # usable by autograd even if first built while scoring
        return rope_tables(seqlen, head_dim, theta, device)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: (b, l, heads, head_dim); cos, sin: (l, head_dim/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos[:, None, :].to(x.dtype), sin[:, None, :].to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


@functools.cache  # never evicted, as the RoPE tables (a few lengths per process: windows are padded)
def sliding_window_mask(seqlen: int, window: int, device: torch.device) -> Tensor:
    """(seqlen, seqlen) bool, True where query i may attend key j: 0 <= i - j < window."""
    i = torch.arange(seqlen, device=device)
    dist = i[:, None] - i[None, :]
    return (dist >= 0) & (dist < window)


@torch.compiler.disable
def window_block_mask(seqlen: int, window: int, device: torch.device):
    """FlexAttention's BlockMask of sliding_window_mask, built once per (seqlen, window, device), outside the
    compiled graph (as the RoPE tables)."""
    return _window_block_mask(seqlen, window, torch.device(device))


@functools.cache  # never evicted: a captured CUDA graph reads it by address
def _window_block_mask(seqlen: int, window: int, device: torch.device):
    def in_window(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < window)
    with torch.inference_mode(False), torch.no_grad():
        return create_block_mask(in_window, None, None, seqlen, seqlen, device=device)


def attention_math_reference(q: Tensor, k: Tensor, v: Tensor, window: Optional[int] = None) -> Tensor:
    """softmax(q k^T / sqrt(d) + causal/window mask) v in float32, repeating KV heads. q: (b, h, l, d)."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1).float(), v.repeat_interleave(rep, dim=1).float()
    s = q.float() @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    l = q.shape[2]
    allowed = sliding_window_mask(l, window, q.device) if window else torch.ones(l, l, dtype=torch.bool, device=q.device).tril()
    return (s.masked_fill(~allowed, float("-inf")).softmax(-1) @ v).to(q.dtype)


class Attention(nn.Module):
    """x: (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""

    def __init__(self, cfg, window: Optional[int] = None):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.window = window
        self.wqkv = nn.Linear(cfg.d_model, (self.n_heads + 2 * self.n_kv_heads) * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, cfg.d_model, bias=False)
        self.wo.is_residual_out = True  # scaled init, see LM._init_weights
        self.q_norm = nn.RMSNorm(self.head_dim, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=cfg.norm_eps) if cfg.qk_norm else None

    def forward(self, x: Tensor, rope: tuple, ops=None) -> Tensor:
        """rope: (cos, sin) tables, and for a sliding window run with FlexAttention its block mask third
        (LM.hidden_states adds it when compiled on CUDA)."""
        b, l, _ = x.shape
        block_mask = rope[2] if len(rope) > 2 else None
        h, kv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        qk, v = self.wqkv(x).split([(h + kv) * hd, kv * hd], dim=-1)
        qk = qk.view(b, l, h + kv, hd)  # q and k heads side by side: one RoPE over both
        if self.q_norm is not None:
            q, k = qk.split([h, kv], dim=2)
            qk = torch.cat([self.q_norm(q), self.k_norm(k)], dim=2)
        # One RoPE over q and k together, not one each: compiled, the backward of two separate RoPEs fuses into
        # the concatenation of dq, dk, dv as one kernel with a masked load per branch (BENCHMARKS.md).
        q, k = apply_rope(qk, rope[0], rope[1]).split([h, kv], dim=2)
        v = v.view(b, l, kv, hd)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (b, heads, l, head_dim)
        gqa = kv != h
        if self.window is None or self.window >= l:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        elif block_mask is not None:
            y = flex_attention(q, k, v, block_mask=block_mask, enable_gqa=gqa)
        else:  # a boolean mask rules out the flash kernel; SDPA picks the memory-efficient one on GPU
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(l, self.window, x.device),
                                               enable_gqa=gqa)
        return self.wo(y.transpose(1, 2).reshape(b, l, h * hd))


# ---- registration -------------------------------------------------------------------------------------------
def num_params(cfg) -> int:
    return (cfg.d_model * (cfg.n_heads + 2 * cfg.kv_heads) * cfg.head_dim + cfg.n_heads * cfg.head_dim * cfg.d_model
            + (2 * cfg.head_dim if cfg.qk_norm else 0))


def keys_attended(seq_len: int, window: Optional[int]) -> float:
    """Mean number of keys a query attends to over a causal context of seq_len (within the window, if any)."""
    w = seq_len if window is None else min(window, seq_len)
    return (w * (w + 1) / 2 + (seq_len - w) * w) / seq_len


def _flops(window_of):
    def flops_per_token(cfg, seq_len: int) -> float:
        """QK^T and AV: 2 x 2 x head_dim x heads per key attended, forward; x3 with the backward."""
        return 3 * 4 * cfg.n_heads * cfg.head_dim * keys_attended(seq_len, window_of(cfg))
    return flops_per_token


def _check_heads(cfg) -> None:
    from tokengap.models.config import ConfigError
    if cfg.d_model % cfg.n_heads != 0:
        raise ConfigError(f"model.n_heads: {cfg.n_heads} heads do not divide model.d_model={cfg.d_model}")
    if cfg.head_dim % 2 != 0:
        raise ConfigError(f"model.n_heads: head_dim={cfg.head_dim} must be even for RoPE")
    if cfg.n_heads % cfg.kv_heads != 0:
        raise ConfigError(f"model.n_kv_heads: {cfg.kv_heads} KV heads do not divide model.n_heads={cfg.n_heads}")


def _check_window(cfg) -> None:
    from tokengap.models.config import ConfigError
    _check_heads(cfg)
    if cfg.window is not None and cfg.window < 1:
        raise ConfigError(f"model.window: 'swa' layers need a positive window (tokens), got {cfg.window}")


def _describe(module, ops) -> str:
    return "torch-sdpa" + (f" window={module.window}" if module.window else "")


def _build_swa(cfg, layer_idx):
    from tokengap.models.config import ConfigError
    if cfg.window is None:
        raise ConfigError("model.window: not set ('swa' layers; a training run sets it to half of train.seq_len)")
    return Attention(cfg, window=cfg.window)


register(MixerSpec("attention", lambda cfg, i: Attention(cfg), num_params, _flops(lambda cfg: None), _check_heads,
                   _describe, attention=True, doc="causal softmax attention, RoPE, SDPA"))
register(MixerSpec("swa", _build_swa, num_params, _flops(lambda cfg: cfg.window), _check_window, _describe,
                   attention=True, doc="sliding-window attention (model.window tokens, the current one included)"))
