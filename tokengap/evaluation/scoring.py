"""Per-token negative log-likelihood of a model on an EvalSet: `score` and the two kinds of scorer (a tokengap
LM, a transformers causal LM). Shared by training's evaluation (tokengap/train/loop.py) and
`python -m tokengap.analysis score`.

The loss never materialises (batch, seqlen, vocab) logits: hidden states are projected chunk by chunk
(`tokengap.models.ops.ce.reference.chunked_cross_entropy`).
"""
from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import Mapping, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from tokengap.evaluation.evalset import EvalSet
from tokengap.models.ops.ce.reference import chunked_cross_entropy


# ---- what a scorer needs from a model ---------------------------------------------------------------
class ZooScorer:
    """A tokengap LM: final hidden states, then the (tied or untied) output embedding."""

    def __init__(self, model):
        self.model = model

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, chunk_tokens: int):
        h = self.model.hidden_states(inputs)
        return chunked_cross_entropy(h, self.model.lm_head.weight, targets, chunk_tokens, return_correct=True)


class HFScorer:
    """A transformers causal LM: last hidden state of its decoder, then its output embedding (+ bias)."""

    def __init__(self, model):
        self.model = model
        self.decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        self.head = model.get_output_embeddings()
        if getattr(model.config, "final_logit_softcapping", None):
            raise ValueError("logit soft-capping is not supported by the chunked scorer")

    def __call__(self, inputs, targets, chunk_tokens):
        h = self.decoder(input_ids=inputs, use_cache=False).last_hidden_state  # no cache to fill: scoring only
        return chunked_cross_entropy(h, self.head.weight, targets, chunk_tokens, bias=self.head.bias,
                                     return_correct=True)


class LogitsScorer:
    """Any causal LM as a callable from input ids (b, l) int64 to logits (b, l, vocab): an nn.Module or a function
    whose output is the logits, a tuple starting with them, or an object with `.logits`. The logits materialise
    (b, l, vocab) at once, unlike the two scorers above; the loss is computed from them in float32."""

    def __init__(self, model):
        self.model = model

    def __call__(self, inputs, targets, chunk_tokens):
        out = self.model(inputs)
        logits = getattr(out, "logits", out)
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        if not isinstance(logits, torch.Tensor) or logits.shape[:2] != inputs.shape:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"the model returned {got} for input ids {tuple(inputs.shape)}: expected logits "
                             "(batch, seqlen, vocab)")
        logits = logits.float()
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none")
        return loss.view_as(targets), logits.argmax(-1) == targets


def scorer_for(model):
    """The scorer of a model: a tokengap LM, a transformers causal LM (PreTrainedModel with an output
    embedding), else any callable from input ids to logits."""
    if hasattr(model, "hidden_states") and hasattr(model, "lm_head"):
        return ZooScorer(model)
    try:
        from transformers import PreTrainedModel
    except ImportError:  # transformers is a dependency; a broken install still scores through the logits
        PreTrainedModel = ()
    if isinstance(model, PreTrainedModel) and model.get_output_embeddings() is not None:
        return HFScorer(model)
    if not callable(model):
        raise TypeError(f"{type(model).__name__} is not a model: expected a callable from input ids to logits")
    return LogitsScorer(model)


def masked_means(loss: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """{name: mean of loss (N,) over the tokens of mask (N,) bool}; NaN for a mask with no token. Training's
    evaluation and the in-loop library (tokengap/analysis/inloop.py) both report through this one function."""
    return {k: float(loss[m].mean()) if m.any() else float("nan") for k, m in masks.items()}


# ---- scoring ------------------------------------------------------------------------------------------
def score(scorer, evalset: EvalSet, context_len: int, batch_size: int = 8, device: Union[str, torch.device] = "cpu",
          dtype: Optional[torch.dtype] = None, chunk_tokens: int = 8192, progress: bool = True,
          pad_multiple: int = 256, pad_batch: Optional[bool] = None,
          max_batch_tokens: Optional[int] = None, desc: str = "scoring") -> tuple[np.ndarray, np.ndarray]:
    """Score every eval token once (docs/formats.md, "Contexts"). Returns loss (N,) float32, correct (N,) bool.

    Windows are batched by length (longest first) and right-padded with ignored targets to a multiple of
    `pad_multiple` (few distinct shapes); results are written back by token index, so batching never changes
    which prefix a token is scored with. Attention runs on the flash / memory-efficient SDPA kernels: cuDNN's
    builds a plan per new shape, tens of seconds of warm-up over the eval set's window lengths (BENCHMARKS.md).
    pad_batch (default: on CUDA): every batch gets `batch_size` rows (the last, short one is padded with ignored
    rows) and at least 2 * pad_multiple columns. Triton specialises a kernel on integer arguments that are 1 or
    not a multiple of 16 (a batch of 19 rows; one SSD chunk of 256): each new case compiled mamba-ssm's kernels
    afresh inside the first pass (BENCHMARKS.md). max_batch_tokens: at most this many (padded) tokens a batch, so
    batches of short windows hold more rows (up to batch_size) than batches of long ones."""
    device = torch.device(device)
    pad_batch = device.type == "cuda" if pad_batch is None else pad_batch
    min_len = 2 * pad_multiple if pad_batch else 0
    wins = sorted(evalset.windows(context_len), key=lambda w: -w[2])
    loss = np.full(evalset.n_tokens, np.nan, dtype=np.float32)
    correct = np.zeros(evalset.n_tokens, dtype=bool)
    toks = torch.from_numpy(evalset.tokens.astype(np.int64))
    doc_start = evalset.doc_starts
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None and dtype != torch.float32 \
        else nullcontext()
    bar = None
    if progress and sys.stderr.isatty():  # a progress bar (tokens/s) on a terminal; none in a redirected log
        from tqdm import tqdm
        bar = tqdm(total=evalset.n_tokens, unit="tok", unit_scale=True, desc=desc, leave=False)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with torch.inference_mode(), autocast, sdpa_kernel(backends):
        i = 0
        while i < len(wins):
            L = -(-wins[i][2] // pad_multiple) * pad_multiple if pad_multiple else wins[i][2]
            L = min(max(L, min_len), context_len)  # the longest window of the batch, padded
            size = batch_size if not max_batch_tokens else max(1, min(batch_size, max_batch_tokens // L))
            batch, i = wins[i:i + size], i + size
            rows = size if pad_batch else len(batch)
            inputs = torch.full((rows, L), evalset.eot_id, dtype=torch.long)
            targets = torch.full((rows, L), -100, dtype=torch.long)
            for r, (d, s, n) in enumerate(batch):
                targets[r, :n] = toks[s:s + n]
                if s == doc_start[d]:  # first window of a document: EOT, then the document
                    inputs[r, 1:n] = toks[s:s + n - 1]
                else:
                    inputs[r, :n] = toks[s - 1:s + n - 1]
            lo, ok = scorer(inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True), chunk_tokens)
            lo, ok = lo.float().cpu().numpy(), ok.cpu().numpy()
            for r, (d, s, n) in enumerate(batch):
                loss[s:s + n], correct[s:s + n] = lo[r, :n], ok[r, :n]
            if bar is not None:
                bar.update(sum(w[2] for w in batch))
    if bar is not None:
        bar.close()
    if np.isnan(loss).any():
        raise RuntimeError(f"{int(np.isnan(loss).sum())} eval tokens were not scored (non-finite loss or a bug)")
    return loss, correct
