"""Per-token negative log-likelihood of a model on an EvalSet: our checkpoints or any HF causal LM.

    python -m analysis score --model runs/hybrid/checkpoints/final --eval build/corpus/small --out scores/hybrid.npz
    python -m analysis score --hf allenai/Olmo-3-1025-7B --eval build/corpus/small --out scores/olmo3.npz

The loss never materialises (batch, seqlen, vocab) logits: hidden states are projected chunk by chunk
(`models.lm.chunked_cross_entropy`).
"""
from __future__ import annotations

import argparse
import datetime as _dt
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from analysis.evalset import EvalSet, TextTokenizer
from analysis.scorefile import Scores, check_comparable, code_version, load_scores, save_scores  # noqa: F401
from models.lm import chunked_cross_entropy


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
        h = self.decoder(input_ids=inputs).last_hidden_state
        return chunked_cross_entropy(h, self.head.weight, targets, chunk_tokens, bias=self.head.bias,
                                     return_correct=True)


# ---- scoring ------------------------------------------------------------------------------------------
def score(scorer, evalset: EvalSet, context_len: int, batch_size: int = 8, device: Union[str, torch.device] = "cpu",
          dtype: Optional[torch.dtype] = None, chunk_tokens: int = 8192, progress: bool = True,
          pad_multiple: int = 256, pad_batch: Optional[bool] = None) -> tuple[np.ndarray, np.ndarray]:
    """Score every eval token once (docs/formats.md, "Contexts"). Returns loss (N,) float32, correct (N,) bool.

    Windows are batched by length (longest first) and right-padded with ignored targets to a multiple of
    `pad_multiple` (few distinct shapes); results are written back by token index, so batching never changes
    which prefix a token is scored with. Attention runs on the flash / memory-efficient SDPA kernels: cuDNN's
    builds a plan per new shape, which cost ~45 s of warm-up over the eval set's window lengths on an H100.
    pad_batch (default: on CUDA): every batch gets `batch_size` rows (the last, short one is padded with ignored
    rows) and at least 2 * pad_multiple columns. Triton specialises a kernel on integer arguments that are 1 or
    not a multiple of 16 (a batch of 19 rows; one SSD chunk of 256): each new case compiled mamba-ssm's kernels
    afresh inside the first pass, 1.7 s of a 2.3 s pass over 1M tokens on an H100 (BENCHMARKS.md)."""
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
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=evalset.n_tokens, unit="tok", unit_scale=True, desc="scoring", leave=False)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with torch.inference_mode(), autocast, sdpa_kernel(backends):
        for i in range(0, len(wins), batch_size):
            batch = wins[i:i + batch_size]
            L = -(-batch[0][2] // pad_multiple) * pad_multiple if pad_multiple else batch[0][2]
            L = min(max(L, min_len), context_len)
            rows = batch_size if pad_batch else len(batch)
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


# ---- CLI ----------------------------------------------------------------------------------------------
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a tokengap model directory (config.json + model.safetensors)")
    src.add_argument("--hf", help="a Hugging Face causal LM name or path (its own tokenizer is used)")
    p.add_argument("--eval", required=True, help="built corpus directory holding docs/eval.jsonl")
    p.add_argument("--out", required=True, help="score file to write (.npz)")
    p.add_argument("--name", default=None, help="label for the model in reports (default: from the path)")
    p.add_argument("--context", type=int, default=2048, help="context length T (window size)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="autocast dtype (default bf16 on CUDA)")
    p.add_argument("--kernels", choices=["auto", "reference", "triton"], default=None)


@dataclass
class LoadedModel:
    scorer: object  # ZooScorer | HFScorer
    name: str
    info: dict  # a tokengap model's config.json ({} for Hugging Face models)
    tokenizer: Optional[TextTokenizer]  # a Hugging Face model's own; None for ours (it uses its corpus's)
    model: torch.nn.Module

    def check_tokenizer(self, sha256: str, what: str) -> None:
        """Refuse text tokenized by another tokenizer than the one the model was trained with."""
        want = self.info.get("tokenizer_sha256")
        if want and want != sha256:
            raise SystemExit(f"error: {self.name} was trained with tokenizer {want[:16]}…, {what} uses {sha256[:16]}…")

    def kernel_report(self) -> list[str]:
        return self.model.kernel_report() if hasattr(self.model, "kernel_report") else []


def run_name(model_dir: str) -> str:
    """runs/<name>/model or runs/<name>/checkpoints/<step> -> <name>."""
    p = Path(model_dir).resolve()
    return p.parent.parent.name if p.parent.name == "checkpoints" else p.parent.name


def load_for_scoring(model: Optional[str] = None, hf: Optional[str] = None, device="cpu", dtype=torch.float32,
                     kernels: Optional[str] = None, name: Optional[str] = None) -> LoadedModel:
    """A tokengap model directory (`model`) or a Hugging Face causal LM (`hf`), in eval mode on `device`."""
    device = torch.device(device)
    if model:
        from models.io import from_pretrained, read_config

        info = read_config(model)
        lm = from_pretrained(model, device=device, kernels=kernels).eval()
        return LoadedModel(ZooScorer(lm), name or info.get("run") or run_name(model), info, None, lm)
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=dtype).to(device).eval()
    return LoadedModel(HFScorer(lm), name or hf, {}, TextTokenizer.from_hf(hf), lm)


def default_dtype(arg: Optional[str], device: torch.device) -> torch.dtype:
    return DTYPES[arg] if arg else (torch.bfloat16 if device.type == "cuda" else torch.float32)


def run(args: argparse.Namespace) -> int:
    import logging
    import time

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    dtype = default_dtype(args.dtype, device)
    lm = load_for_scoring(args.model, args.hf, device, dtype, args.kernels, args.name)
    ev = EvalSet.from_corpus(args.eval, tokenizer=lm.tokenizer)
    lm.check_tokenizer(ev.tokenizer_sha256, f"the eval set ({args.eval})")
    t0 = time.perf_counter()
    loss, correct = score(lm.scorer, ev, args.context, args.batch_size, device, dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    for line in lm.kernel_report():
        logging.info(line)
    meta = {"name": lm.name, "model": args.model or args.hf, "arch": lm.info.get("model", {}).get("name"),
            "step": lm.info.get("step"), "tokenizer_sha256": ev.tokenizer_sha256,
            "eval_hash": ev.eval_hash, "context_len": args.context, "dtype": str(dtype).removeprefix("torch."),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "n_tokens": ev.n_tokens, "mean_loss": float(loss.mean()), "seconds": secs,
            "tokens_per_s": ev.n_tokens / secs, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version()}
    save_scores(args.out, loss, correct, meta)
    print(f"{lm.name}: mean loss {loss.mean():.4f} nats over {ev.n_tokens:,} tokens, "
          f"{ev.n_tokens / secs:,.0f} tokens/s on {meta['device']} -> {args.out}")
    return 0
