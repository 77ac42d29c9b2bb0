"""`python -m tokengap.analysis score`: per-token losses of one model on the eval set, written as a score file.

    python -m tokengap.analysis score --model runs/hybrid/checkpoints/final --eval build/corpus/small \\
        --out scores/hybrid.npz
    python -m tokengap.analysis score --hf allenai/Olmo-3-1025-7B --eval build/corpus/small --out scores/olmo3.npz

The scoring itself (contexts, batching, the two kinds of scorer) is the evaluation layer's
(tokengap/evaluation/scoring.py), which training's evaluation runs too.
"""
from __future__ import annotations

import argparse
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from tokengap.evaluation.evalset import EvalSet, TextTokenizer
from tokengap.evaluation.scorefile import code_version, save_scores
from tokengap.analysis.errors import (AnalysisError, add_source_arguments, check_output, device_arg,
                                      npz_meta, positive_int)
from tokengap.evaluation.scoring import HFScorer, ZooScorer, score

HF_CONTEXT = 2048  # a Hugging Face model's default scoring context (its config rarely says what it trained at)


# ---- CLI ----------------------------------------------------------------------------------------------
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a tokengap model directory (config.json + model.safetensors)")
    src.add_argument("--hf", help="a Hugging Face causal LM name or path (its own tokenizer is used)")
    add_source_arguments(p)
    p.add_argument("--tokenizer", default=None, help="tokenizer.json for your own text scored by one of our models "
                   "(default: the model directory's; a Hugging Face model uses its own)")
    p.add_argument("--out", required=True, help="score file to write (.npz)")
    p.add_argument("--name", default=None, help="label for the model in reports (default: from the path)")
    p.add_argument("--context", type=positive_int, default=None,
                   help="context length T (window size); default: the context the model was trained with "
                        f"(ours: its config.json; a Hugging Face model: {HF_CONTEXT})")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--device", type=device_arg, default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="autocast dtype (default bf16 on CUDA)")
    p.add_argument("--kernels", choices=["auto", "reference", "triton"], default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an --out of another model or kind")


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
            raise AnalysisError(f"{self.name} was trained with tokenizer {want[:16]}…, {what} uses {sha256[:16]}…")

    def kernel_report(self) -> list[str]:
        return self.model.kernel_report() if hasattr(self.model, "kernel_report") else []


def source_options(args) -> dict:
    """The reading options of the user's own eval text (add_source_arguments) from parsed arguments."""
    return {"text_field": args.text_field, "domain_field": args.domain_field, "split": args.split}


def run_name(model_dir: str) -> str:
    """runs/<name>/model or runs/<name>/checkpoints/<step> -> <name>."""
    p = Path(model_dir).resolve()
    return p.parent.parent.name if p.parent.name == "checkpoints" else p.parent.name


def load_for_scoring(model: Optional[str] = None, hf: Optional[str] = None, device="cpu", dtype=torch.float32,
                     kernels: Optional[str] = None, name: Optional[str] = None) -> LoadedModel:
    """A tokengap model directory (`model`) or a Hugging Face causal LM (`hf`), in eval mode on `device`."""
    device = torch.device(device)
    if model:
        from tokengap.models.io import from_pretrained, read_config

        name = model_name(model, None, name)  # refuses a path that is not a model directory, in one line
        try:
            lm = from_pretrained(model, device=device, kernels=kernels).eval()
        except (ValueError, OSError, KeyError) as exc:  # weights truncated, corrupt or not the checksummed ones
            raise AnalysisError(f"--model {model}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        except Exception as exc:  # safetensors' own SafetensorError (a truncated header): not a subclass of the above
            if type(exc).__name__ != "SafetensorError":
                raise
            raise AnalysisError(f"--model {model}: {Path(model) / 'model.safetensors'} is unreadable ({exc})") from None
        return LoadedModel(ZooScorer(lm), name, read_config(model), None, lm)
    from tokengap.analysis.hf import load

    lm, path = load(hf, device, dtype)
    return LoadedModel(HFScorer(lm), name or hf, {}, TextTokenizer.from_hf(path), lm)


def model_name(model: Optional[str], hf: Optional[str], name: Optional[str] = None) -> str:
    """The model's name in score files and reports, known before it is loaded: --name, else its run's name."""
    if name:
        return name
    if model:
        from tokengap.models.io import read_config

        check_model_dir(model)
        return read_config(model).get("run") or run_name(model)
    return hf


def check_score_out(flag: str, out, kind: str, members: tuple, want: str, overwrite: bool) -> None:
    """check_output for a file of per-token results whose meta names its model (score, probe and planted files)."""
    def holds(p):
        meta = npz_meta(p, members)
        return None if meta is None else str(meta.get("name"))
    check_output(flag, out, kind, holds, want, overwrite)


def check_model_dir(path: str) -> None:
    """One line for a --model that is not a model directory (a run directory: suggest its model)."""
    p = Path(path)
    if (p / "config.json").is_file():
        return
    if (p / "model" / "config.json").is_file():
        raise AnalysisError(f"--model {path}: a run directory, not a model; did you mean {p / 'model'}?")
    if p.name == "checkpoints" or (p / "checkpoints").is_dir():
        raise AnalysisError(f"--model {path}: no config.json; a checkpoint is checkpoints/step_NNNNNNNNN "
                            f"(or the finished model, <run>/model)")
    raise AnalysisError(f"--model {path}: {'no such directory' if not p.exists() else 'no config.json (not a tokengap model)'}")


def trained_context(info: dict, model_dir: Optional[str]) -> Optional[int]:
    """The context a tokengap model was trained with: its config.json's context_len, else its run's run.json."""
    if info.get("context_len"):
        return int(info["context_len"])
    if model_dir:
        for run_json in (Path(model_dir).parent / "run.json", Path(model_dir).parent.parent / "run.json"):
            if run_json.is_file():
                import json
                return int(json.loads(run_json.read_text())["config"]["train"]["seq_len"])
    return None


def default_dtype(arg: Optional[str], device: torch.device) -> torch.dtype:
    return DTYPES[arg] if arg else (torch.bfloat16 if device.type == "cuda" else torch.float32)


def score_to_file(out, eval_dir, model: Optional[str] = None, hf: Optional[str] = None, context: Optional[int] = None,
                  batch_size: int = 8, device="cpu", dtype_arg: Optional[str] = None, kernels: Optional[str] = None,
                  name: Optional[str] = None, progress: bool = True, extra: Optional[dict] = None,
                  overwrite: bool = False, source: Optional[dict] = None, tokenizer: Optional[str] = None) -> dict:
    """Score one model (ours: `model`, or `hf`) on the eval set of `eval_dir` (a built corpus, or the user's own text
    read with `source`: {text_field, domain_field, split}) and write the score file `out` (atomically). Returns its
    metadata. Every refusal is one line (AnalysisError, SourceError), raised before scoring. tokenizer: a
    tokenizer.json for the user's text scored by one of our models (default: the model directory's)."""
    import logging
    import sys
    import time

    device = torch.device(device)
    dtype = default_dtype(dtype_arg, device)
    from tokengap.evaluation.sources import is_corpus, load_evalset, read_docs

    if not is_corpus(eval_dir):  # the user's own text: read (and refused) before any model is loaded
        read_docs(eval_dir, **(source or {}))
    name = model_name(model, hf, name)
    check_score_out("--out", out, "a score file", ("correct", "meta"), name, overwrite)
    tok = None
    if model and not is_corpus(eval_dir):  # ours on the user's text: the tokenizer it was trained with
        tok_path = Path(tokenizer) if tokenizer else Path(model) / "tokenizer.json"
        if not tok_path.is_file():
            raise AnalysisError(f"--model {model}: no tokenizer.json beside it (runs before 2026-12 did not save one):"
                                f" pass --tokenizer <its corpus>/tokenizer.json")
        tok = TextTokenizer.from_file(tok_path)
    lm = load_for_scoring(model, hf, device, dtype, kernels, name)
    ev = load_evalset(eval_dir, lm.tokenizer or tok, **(source or {}))
    lm.check_tokenizer(ev.tokenizer_sha256, f"the eval set ({eval_dir})")
    trained = trained_context(lm.info, model)
    ctx = context or trained or HF_CONTEXT
    if context is None:
        logging.info("%s: context %d (%s)", lm.name, ctx, "what it was trained with" if trained else
                     "the default for Hugging Face models; --context to change")
    elif trained and context > trained:
        logging.warning("%s: --context %d is %.3g x the context it was trained with (%d): positions beyond %d are "
                        "extrapolation (the score file records both)", lm.name, context, context / trained, trained,
                        trained)
    t0 = time.perf_counter()
    loss, correct = score(lm.scorer, ev, ctx, batch_size, device, dtype, progress=progress and sys.stderr.isatty(),
                          desc=f"scoring {lm.name}")
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    for line in lm.kernel_report():
        logging.info(line)
    meta = {"name": lm.name, "model": model or hf, "arch": lm.info.get("model", {}).get("name"),
            "step": lm.info.get("step"), "tokenizer_sha256": ev.tokenizer_sha256,
            "eval_hash": ev.eval_hash, "tokenizer_content_sha256": ev.tokenizer_content_sha256,
            "eval_tokens_sha256": ev.eval_tokens_sha256, "context_len": ctx, "trained_context": trained,
            "dtype": str(dtype).removeprefix("torch."),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "n_tokens": ev.n_tokens, "mean_loss": float(loss.mean()), "seconds": secs,
            "tokens_per_s": ev.n_tokens / secs, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version(), **(extra or {})}
    save_scores(out, loss, correct, meta)
    print(f"{lm.name}: mean loss {loss.mean():.4f} nats over {ev.n_tokens:,} tokens, "
          f"{ev.n_tokens / secs:,.0f} tokens/s on {meta['device']} -> {out}")
    return meta


def run(args: argparse.Namespace) -> int:

    from tokengap.models.console import setup_logging
    setup_logging()
    score_to_file(args.out, args.eval, args.model, args.hf, args.context, args.batch_size, args.device, args.dtype,
                  args.kernels, args.name, overwrite=args.overwrite, source=source_options(args),
                  tokenizer=args.tokenizer)
    return 0
