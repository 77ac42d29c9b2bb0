"""Hugging Face causal LMs for scoring: which classes are verified, where they run, and one-line errors before any
weights load (not in the cache and no network; a class that cannot run on this device; an inexact Mamba2 path).

Verified classes (tests/test_hf_classes.py scores a tiny random model of each through `--hf PATH` and checks the
per-token losses against the model's own `labels=` loss): see CLASSES. Pairs of released models worth comparing:
docs/analysis.md ("Pretrained pairs") and `tokengap/conf/pairs.yaml`.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Optional

import torch

from tokengap.analysis.errors import AnalysisError

# model_type -> (class, how it runs). "cpu": False marks classes that cannot run on CPU in some installs.
CLASSES = {
    "llama": ("LlamaForCausalLM", "attention"),
    "olmo3": ("Olmo3ForCausalLM", "sliding-window + full attention (Olmo 3)"),
    "olmo_hybrid": ("OlmoHybridForCausalLM", "Gated DeltaNet + attention (Olmo Hybrid); fla's Triton kernels on CUDA"),
    "gpt_neox": ("GPTNeoXForCausalLM", "attention (Pythia)"),
    "mamba": ("MambaForCausalLM", "Mamba1 (mamba-ssm's kernels on CUDA when installed, else torch)"),
    "mamba2": ("Mamba2ForCausalLM", "Mamba2 (mamba-ssm's kernels on CUDA when installed, else torch)"),
}


def is_local(name_or_path: str) -> bool:
    return Path(name_or_path).is_dir()


HOW = ("pass a local folder (huggingface-cli download {name} --local-dir DIR where there is network) or put it in "
       "the Hugging Face cache (HF_HOME)")


def resolve(name_or_path: str, timeout: float = 5.0, flag: str = "--hf") -> str:
    """A local folder, a hub id already in the local cache, or a hub id the hub can be reached for; else one line
    saying which of the three failed, within `timeout` seconds (no retries). Every entry point that takes a hub
    name (score --hf, pipeline hf:, words --tokenizer-a, probes) resolves it here first, so transformers never
    meets an unreachable hub (its retries take about 49 s)."""
    if is_local(name_or_path):
        return name_or_path
    if Path(name_or_path).suffix in (".json", ".safetensors", ".bin") or name_or_path.startswith(("./", "/", "~")):
        raise AnalysisError(f"{flag} {name_or_path}: no such folder")
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(name_or_path, local_files_only=True,
                                 allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"])
    except Exception:
        pass  # not (completely) in the cache
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise AnalysisError(f"{flag} {name_or_path}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                            + HOW.format(name=name_or_path))
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError
    try:
        HfApi().model_info(name_or_path, timeout=timeout)
    except RepositoryNotFoundError:
        raise AnalysisError(f"{flag} {name_or_path}: no such model on the Hugging Face hub (nor a local folder)") from None
    except Exception as exc:
        why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise AnalysisError(f"{flag} {name_or_path}: not in the local Hugging Face cache and the hub cannot be reached "
                            f"({type(exc).__name__}: {why}); " + HOW.format(name=name_or_path)) from None
    return name_or_path


def tokenizer(name_or_path: str, flag: str):
    """A Hugging Face tokenizer as a TextTokenizer, resolved first (one line, within seconds, when unreachable)."""
    from tokengap.evaluation.evalset import TextTokenizer
    return TextTokenizer.from_hf(resolve(name_or_path, flag=flag))


def check_device(config, device: torch.device) -> None:
    """Refuse, before the weights load, a class that cannot run on `device` here."""
    if config.model_type == "olmo_hybrid" and device.type == "cpu" and importlib.util.find_spec("fla") is not None:
        raise AnalysisError("OlmoHybridForCausalLM cannot run on CPU while flash-linear-attention (fla) is installed: "
                            "transformers then calls fla's Triton kernels, which need CUDA (use --device cuda, or a "
                            "Python without fla for its slow torch path)")


def mamba2_chunk_check(model, vocab: int, device: torch.device, tol: float = 1e-4) -> Optional[float]:
    """Mamba2ForCausalLM's torch path must not depend on its chunk size (an older transformers' was inexact across
    chunk sizes): per-token losses of one random sequence at the configured chunk size and at a quarter of it.
    Returns the largest difference, or raises if it exceeds `tol` nats; None for other classes."""
    if getattr(model.config, "model_type", None) != "mamba2":
        return None
    mixers = [m for m in model.modules() if type(m).__name__ == "Mamba2Mixer" and hasattr(m, "chunk_size")]
    if not mixers:
        return None
    chunk = mixers[0].chunk_size
    small = max(1, chunk // 4)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (1, 2 * chunk + 7), generator=gen).to(device)
    losses = []
    for c in (chunk, small):
        for m in mixers:
            m.chunk_size = c
        with torch.inference_mode():
            logits = model(input_ids=ids).logits.float()
        losses.append(torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="none"))
    for m in mixers:
        m.chunk_size = chunk
    diff = float((losses[0] - losses[1]).abs().max())
    if not diff <= tol:
        raise AnalysisError(f"Mamba2ForCausalLM: per-token losses change by {diff:.2e} nats between chunk sizes {chunk} "
                            f"and {small} (tolerance {tol:.0e}): this transformers' Mamba2 path is inexact; refusing to "
                            "report (upgrade transformers, or install mamba-ssm's kernels)")
    return diff


def load(hf: str, device: torch.device, dtype: torch.dtype):
    """(model in eval mode on device, the resolved path): checks first, then the weights."""
    from transformers import AutoConfig, AutoModelForCausalLM
    path = resolve(hf)
    config = AutoConfig.from_pretrained(path)
    check_device(config, device)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype).to(device).eval()
    mamba2_chunk_check(model, config.vocab_size, device)
    return model, path
