"""Decoder-only language model whose layers follow a pattern over mixers (attention, swa, mamba2).

Each layer is a pre-norm residual block: x + mixer(norm(x)), then x + SwiGLU(norm(x)) (Llama / Olmo style).
A block hands on its MLP output un-added: each residual add runs with the norm after it (`add_rms_norm_*`), one
fused kernel forward and backward on CUDA (models/norm_triton.py).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.attention import Attention, rope_tables_cached
from models.config import ModelConfig, resolve_layers, validate
from models.kernels import Mamba2Ops, loss_kernel, norm_kernel
from models.mamba2 import Mamba2


class SwiGLU(nn.Module):
    """x: (..., d) -> (..., d); hidden size cfg.ffn_dim (Shazeer 2020)."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.w_gate_up = nn.Linear(d, 2 * hidden, bias=False)
        self.w_down = nn.Linear(hidden, d, bias=False)
        self.w_down.is_residual_out = True

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w_gate_up(x).chunk(2, dim=-1)
        return self.w_down(F.silu(gate) * up)


def _autocast_dtype() -> Optional[torch.dtype]:
    """The CUDA autocast dtype when autocast is on (what a Linear casts its input to), else None."""
    return torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None


def add_rms_norm_torch(x: Tensor, y: Optional[Tensor], norm: nn.RMSNorm) -> tuple[Tensor, Tensor]:
    """(s, h) = (x + y, norm(x + y)); y = None: (x, norm(x)). x, y: (..., d). The twin of add_rms_norm_triton."""
    s = x if y is None else x + y
    return s, norm(s)


@functools.cache  # one wrapper per kernel: torch.compile sees the same function every forward
def fused_add_rms_norm(fn: Callable) -> Callable:
    """add_rms_norm_torch's signature over models.norm_triton.add_rms_norm_triton (`fn`); h comes out in the
    autocast dtype (what the Linear after it would cast it to), else in s's dtype."""
    def add_norm(x: Tensor, y: Optional[Tensor], norm: nn.RMSNorm) -> tuple[Tensor, Tensor]:
        if norm.weight is None:  # not a configuration of ours; keep nn.RMSNorm's semantics
            return add_rms_norm_torch(x, y, norm)
        return fn(x, y, norm.weight, norm.eps, _autocast_dtype())
    return add_norm


def make_mixer(name: str, cfg: ModelConfig, layer_idx: int) -> nn.Module:
    if name == "attention":
        return Attention(cfg)
    if name == "swa":
        return Attention(cfg, window=cfg.window)
    if name == "mamba2":
        return Mamba2(cfg, layer_idx)
    raise ValueError(f"unknown mixer {name!r}")  # unreachable after validate()


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, mixer: str, layer_idx: int):
        super().__init__()
        self.mixer_name = mixer
        self.norm1 = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mixer = make_mixer(mixer, cfg, layer_idx)
        self.norm2 = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.ffn_dim)

    def forward(self, x: Tensor, y: Optional[Tensor], rope: tuple[Tensor, Tensor], ops: Optional[Mamba2Ops] = None,
                add_norm: Callable = add_rms_norm_torch) -> tuple[Tensor, Tensor]:
        """x: residual stream (b, l, d); y: the previous block's MLP output, not yet added (None in the first).
        Returns (x, y) for the next block: x + y + mixer(...) and this block's MLP output."""
        x, h = add_norm(x, y, self.norm1)
        y = self.mixer(h, rope) if isinstance(self.mixer, Attention) else self.mixer(h, ops)
        x, h = add_norm(x, y, self.norm2)
        return x, self.mlp(h)


class LM(nn.Module):
    """input_ids: (batch, seqlen) int64 -> logits (batch, seqlen, vocab)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        validate(cfg)
        if cfg.vocab_size < 1:
            raise ValueError("model.vocab_size: not set (it comes from the tokenizer)")
        self.cfg = cfg
        self.layer_types = resolve_layers(cfg)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, m, i) for i, m in enumerate(self.layer_types))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """N(0, init_std) for matrices; residual-output projections scaled by 1/sqrt(2 n_layers) (GPT-2)."""
        std = self.cfg.init_std
        if isinstance(module, nn.Linear):
            scale = 1 / math.sqrt(2 * self.cfg.n_layers) if getattr(module, "is_residual_out", False) else 1.0
            nn.init.normal_(module.weight, mean=0.0, std=std * scale)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        # Mamba2's A_log / dt_bias / D keep their own init; conv1d keeps PyTorch's default (as mamba-ssm)

    # ---- forward passes ------------------------------------------------------------------------------
    def hidden_states(self, input_ids: Tensor) -> Tensor:
        """(b, l) -> final-normed hidden states (b, l, d_model); in the autocast dtype where the fused norm runs
        (CUDA), else in the residual stream's dtype."""
        rope = rope_tables_cached(input_ids.shape[1], self.cfg.head_dim, self.cfg.rope_theta, input_ids.device)
        ops = self._mamba_ops(input_ids.device)
        add_norm = self._add_norm(input_ids.device)
        x, y = self.embed(input_ids), None
        for block in self.blocks:
            x, y = block(x, y, rope, ops, add_norm)
        return add_norm(x, y, self.norm)[1]

    def forward(self, input_ids: Tensor, targets: Optional[Tensor] = None) -> Tensor:
        """Logits (b, l, vocab); or, with targets (b, l), the mean next-token cross-entropy over
        targets != -100 (the training loss, computed in float32)."""
        fused = self._loss_kernel(input_ids.device) if targets is not None else None
        h = self.hidden_states(input_ids)
        if targets is None:
            return self.lm_head(h)
        if fused is not None:  # the logits' gradient computed in the forward (models/ce_triton.py)
            return fused(h, self.lm_head.weight, targets, _autocast_dtype() or h.dtype)
        return F.cross_entropy(self.lm_head(h).float().flatten(0, 1), targets.flatten(), ignore_index=-100)

    def token_losses(self, input_ids: Tensor, targets: Tensor, chunk_tokens: int = 8192) -> Tensor:
        """Per-token NLL (b, l), float32, without materialising (b, l, vocab) logits at once."""
        h = self.hidden_states(input_ids)
        return chunked_cross_entropy(h, self.lm_head.weight, targets, chunk_tokens)

    # ---- bookkeeping ---------------------------------------------------------------------------------
    @torch.compiler.disable  # Python bookkeeping, once per forward at the top of the graph, not once per layer
    def _mamba_ops(self, device: torch.device) -> Optional[Mamba2Ops]:
        ops = None
        for b in self.blocks:
            if isinstance(b.mixer, Mamba2):
                ops = b.mixer._ops(device)  # every layer shares cfg.kernels; each records its path
        return ops

    @torch.compiler.disable  # resolves (and, the first time, imports) the kernel: not for dynamo to trace
    def _add_norm(self, device: torch.device) -> Callable:
        fn = norm_kernel(device, self.cfg.d_model)[0]
        return fused_add_rms_norm(fn) if fn is not None else add_rms_norm_torch

    @torch.compiler.disable  # resolves (and, the first time, imports) the kernel: not for dynamo to trace
    def _loss_kernel(self, device: torch.device) -> Optional[Callable]:
        return loss_kernel(device)[0]

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied weight once
        if non_embedding:
            n -= self.embed.weight.numel()
            if not self.cfg.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def kernel_report(self) -> list[str]:
        """One line per layer: the mixer and, for Mamba2, which implementation its last forward ran."""
        lines = []
        for i, b in enumerate(self.blocks):
            if isinstance(b.mixer, Mamba2):
                lines.append(f"layer {i:2d} mamba2    {b.mixer.path or 'not run yet'}")
            else:
                win = f" window={b.mixer.window}" if b.mixer.window else ""
                lines.append(f"layer {i:2d} {b.mixer_name:9s} torch-sdpa{win}")
        device = self.lm_head.weight.device
        lines.append(f"add + RMSNorm  {norm_kernel(device, self.cfg.d_model)[1]}")
        lines.append(f"training loss  {loss_kernel(device)[1]}")
        return lines


def chunked_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, chunk_tokens: int = 8192,
                          bias: Optional[Tensor] = None, return_correct: bool = False):
    """Per-token cross-entropy of logits = hidden @ weight.T (+ bias), computed `chunk_tokens` rows at a time.

    hidden: (b, l, d); weight: (vocab, d); targets: (b, l) with -100 = ignore (loss 0). Returns loss (b, l)
    float32, and with return_correct also (b, l) bool: the target is the arg-max logit.
    Peak memory is chunk_tokens x vocab floats instead of b x l x vocab."""
    flat_h, flat_t = hidden.flatten(0, 1), targets.flatten()
    loss = torch.empty(flat_t.shape, dtype=torch.float32, device=hidden.device)
    correct = torch.empty(flat_t.shape, dtype=torch.bool, device=hidden.device) if return_correct else None
    for s in range(0, flat_h.shape[0], chunk_tokens):
        logits = (flat_h[s:s + chunk_tokens] @ weight.T).float()
        if bias is not None:
            logits = logits + bias.float()
        t = flat_t[s:s + chunk_tokens]
        loss[s:s + chunk_tokens] = F.cross_entropy(logits, t, ignore_index=-100, reduction="none")
        if correct is not None:
            correct[s:s + chunk_tokens] = logits.argmax(-1) == t
    loss = loss.view_as(targets)
    return (loss, correct.view_as(targets)) if return_correct else loss


def build_model(cfg: ModelConfig, vocab_size: Optional[int] = None) -> LM:
    if vocab_size is not None:
        cfg.vocab_size = vocab_size
    return LM(cfg)
