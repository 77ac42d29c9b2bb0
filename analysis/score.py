"""`python -m analysis score`: per-token losses of one model on the eval set, written as a score file.

    python -m analysis score --model runs/hybrid/checkpoints/final --eval build/corpus/small --out scores/hybrid.npz
    python -m analysis score --hf allenai/Olmo-3-1025-7B --eval build/corpus/small --out scores/olmo3.npz

The scoring itself (contexts, batching, the two kinds of scorer) is the evaluation layer's (evaluation/scoring.py),
which training's evaluation runs too.
"""
from __future__ import annotations

import argparse
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from evaluation.evalset import EvalSet, TextTokenizer
from evaluation.scorefile import code_version, save_scores
from evaluation.scoring import HFScorer, ZooScorer, score


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
    from analysis.hf import load

    lm, path = load(hf, device, dtype)
    return LoadedModel(HFScorer(lm), name or hf, {}, TextTokenizer.from_hf(path), lm)


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
