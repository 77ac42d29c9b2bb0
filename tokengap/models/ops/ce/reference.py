"""Cross-entropy of logits = hidden @ weight.T in PyTorch: the training loss (the twin of `kernel.py`, Triton) and
per-token losses computed a chunk of rows at a time (what scoring runs everywhere)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def linear_cross_entropy_torch(h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of (h @ weight.T) against targets (-100: ignored), in float32; h: (b, l, d)."""
    return F.cross_entropy(F.linear(h, weight).float().flatten(0, 1), targets.flatten(), ignore_index=-100)


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
