"""Decoder-only language model whose layers follow a pattern over mixers (attention, swa, mamba2, gdn, ...).

Each layer is a pre-norm residual block: x + mixer(norm(x)), then x + SwiGLU(norm(x)) (Llama / Olmo style).
A block hands on its MLP output un-added: each residual add runs with the norm after it (`add_norm`), one
fused kernel forward and backward on CUDA (tokengap/models/ops/add_norm/). What each mixer name stands for comes from
the registry (tokengap/models/mixers/); which implementation each op runs, from a frozen
tokengap.models.kernels.KernelChoice.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from tokengap.models import mixers
from tokengap.models.config import ModelConfig, resolve_layers, validate
from tokengap.models.kernels import KernelChoice, MixerOps, loss_kernel, mixer_ops, norm_kernel
from tokengap.models.mixers.attention import rope_tables_cached, window_block_mask
from tokengap.models.ops.add_norm.reference import add_rms_norm_torch, autocast_dtype, fused_add_rms_norm
from tokengap.models.ops.ce.reference import chunked_cross_entropy, linear_cross_entropy_torch


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


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, mixer: str, layer_idx: int):
        super().__init__()
        self.mixer_name = mixer
        self.norm1 = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mixer = mixers.get(mixer).build(cfg, layer_idx)
        self.norm2 = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.ffn_dim)

    def forward(self, x: Tensor, y: Optional[Tensor], rope: tuple[Tensor, Tensor], ops: Optional[MixerOps] = None,
                add_norm: Callable = add_rms_norm_torch) -> tuple[Tensor, Tensor]:
        """x: residual stream (b, l, d); y: the previous block's MLP output, not yet added (None in the first).
        Returns (x, y) for the next block: x + y + mixer(...) and this block's MLP output."""
        x, h = add_norm(x, y, self.norm1)
        x, h = add_norm(x, self.mixer(h, rope, ops), self.norm2)
        return x, self.mlp(h)


class LM(nn.Module):
    """input_ids: (batch, seqlen) int64 -> logits (batch, seqlen, vocab).

    kernels: which implementation each op runs (default: KernelChoice(scans=cfg.kernels)); `set_kernels` swaps it."""

    def __init__(self, cfg: ModelConfig, kernels: Optional[KernelChoice] = None):
        super().__init__()
        validate(cfg)
        if cfg.vocab_size < 1:
            raise ValueError("model.vocab_size: not set (it comes from the tokenizer)")
        self.cfg = cfg
        self.layer_types = resolve_layers(cfg)
        self.kernels = kernels or KernelChoice(scans=str(getattr(cfg.kernels, "value", cfg.kernels)))
        # the MixerOps fields the layers run (none for a pure transformer)
        self.needs = tuple(dict.fromkeys(op for m in self.layer_types for op in mixers.get(m).ops))
        self.window = cfg.window if "swa" in self.layer_types else None  # FlexAttention's, when compiled on CUDA
        self.last_ops: Optional[MixerOps] = None  # what the last forward ran, for kernel_report
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
        # the recurrent mixers' A_log / dt_bias / D keep their own init; conv1d keeps PyTorch's default (as mamba-ssm)

    def set_kernels(self, kernels: KernelChoice) -> None:
        """Run other implementations from the next forward on (a compiled model recompiles: bench and checks)."""
        self.kernels = kernels

    # ---- forward passes ------------------------------------------------------------------------------
    def hidden_states(self, input_ids: Tensor) -> Tensor:
        """(b, l) -> final-normed hidden states (b, l, d_model); in the autocast dtype where the fused norm runs
        (CUDA), else in the residual stream's dtype."""
        l = input_ids.shape[1]
        rope = rope_tables_cached(l, self.cfg.head_dim, self.cfg.rope_theta, input_ids.device)
        if self.window is not None and self.window < l and input_ids.is_cuda and torch.compiler.is_compiling():
            rope = (*rope, window_block_mask(l, self.window, input_ids.device))  # swa layers run FlexAttention
        ops = self._mixer_ops(input_ids.device)
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
        if fused is not None:  # the logits' gradient computed in the forward (tokengap/models/ops/ce/kernel.py)
            return fused(h, self.lm_head.weight, targets, autocast_dtype() or h.dtype)
        return linear_cross_entropy_torch(h, self.lm_head.weight, targets)

    def token_losses(self, input_ids: Tensor, targets: Tensor, chunk_tokens: int = 8192) -> Tensor:
        """Per-token NLL (b, l), float32, without materialising (b, l, vocab) logits at once."""
        h = self.hidden_states(input_ids)
        return chunked_cross_entropy(h, self.lm_head.weight, targets, chunk_tokens)

    # ---- bookkeeping ---------------------------------------------------------------------------------
    @torch.compiler.disable  # Python bookkeeping, once per forward at the top of the graph, not once per layer
    def _mixer_ops(self, device: torch.device) -> Optional[MixerOps]:
        if not self.needs:
            return None
        self.last_ops = mixer_ops(self.kernels, device, self.needs)
        return self.last_ops

    @torch.compiler.disable  # resolves (and, the first time, imports) the kernel: not for dynamo to trace
    def _add_norm(self, device: torch.device) -> Callable:
        fn = norm_kernel(self.kernels, device, self.cfg.d_model)[0]
        return fused_add_rms_norm(fn) if fn is not None else add_rms_norm_torch

    @torch.compiler.disable  # resolves (and, the first time, imports) the kernel: not for dynamo to trace
    def _loss_kernel(self, device: torch.device) -> Optional[Callable]:
        return loss_kernel(self.kernels, device)[0]

    def kernel_paths(self, device: torch.device) -> dict[str, str]:
        """{op: implementation} this model runs on `device`, resolved now (imports the kernels; raises RuntimeError
        where model.kernels=triton asks for one that is missing)."""
        ops = mixer_ops(self.kernels, device, self.needs) if self.needs else None
        return {**dict(ops.names if ops else ()), "add_norm": norm_kernel(self.kernels, device, self.cfg.d_model)[1],
                "loss": loss_kernel(self.kernels, device)[1]}

    def check_kernels(self, device: torch.device, dtype: Optional[torch.dtype] = None) -> list[str]:
        """Run each mixer's kernel check for `device` and the training dtype (fla's GDN backward against its twin,
        once per head-dim shape); raises on a failed check. Returns one line per check run."""
        ops = mixer_ops(self.kernels, device, self.needs) if self.needs else None
        lines, seen = [], set()
        for i, b in enumerate(self.blocks):
            spec = mixers.get(b.mixer_name)
            if spec.check is None:
                continue
            errs = spec.check(b.mixer, ops, torch.device(device), dtype or torch.float32)
            if errs is not None and tuple(errs.items()) not in seen:
                seen.add(tuple(errs.items()))
                lines.append(f"layer {i:2d} {b.mixer_name} kernel check: " +
                             ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
        return lines

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied weight once
        if non_embedding:
            n -= self.embed.weight.numel()
            if not self.cfg.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def kernel_report(self) -> list[str]:
        """One line per layer: the mixer and which implementation of its ops the last forward ran."""
        lines = [f"layer {i:2d} {b.mixer_name:9s} {mixers.get(b.mixer_name).describe(b.mixer, self.last_ops)}"
                 for i, b in enumerate(self.blocks)]
        device = self.lm_head.weight.device
        lines.append(f"add + RMSNorm  {norm_kernel(self.kernels, device, self.cfg.d_model)[1]}")
        lines.append(f"training loss  {loss_kernel(self.kernels, device)[1]}")
        return lines


def build_model(cfg: ModelConfig, vocab_size: Optional[int] = None) -> LM:
    if vocab_size is not None:
        cfg.vocab_size = vocab_size
    return LM(cfg)


__all__ = ["Block", "LM", "SwiGLU", "build_model", "chunked_cross_entropy"]
