"""Scoring throughput of released-size pretrained models, built from their configs with random weights (no
download): an Olmo-3-style 1B and 7B and an OlmoHybrid-style 1B, scored by `tokengap.evaluation.scoring.score` through
the HFScorer exactly as `python -m tokengap.analysis score --hf` scores them (bf16, batched by length, context 8192).

    python -m scripts.hf_throughput --lengths .carry/eval_doc_lengths.npy [--models olmo3-1b olmo3-7b olmo_hybrid-1b]
        [--attn sdpa|flex_attention|eager] [--compile]

The eval set is the small corpus's: its 332 documents at their lengths under our tokenizer (1,113,174 tokens), with
random token ids from the model's vocabulary (throughput does not depend on the ids; the Olmo tokenizer is not
available offline). Reported per model: tokens/s of a first pass (compiles, autotunes) and a second, and forward
MFU = forward FLOPs per token x tokens/s / 989e12, with forward FLOPs = 2 x matmul parameters (lm_head included) +
attention's QK^T and AV over the keys each query attends (the window on sliding layers) + the GDN layers' chunked
products (tokengap/models/mixers/gdn.py, forward third). fla's Hopper guard concerns only the backward: scoring does not
lift it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tokengap.evaluation.evalset import EvalSet
from tokengap.evaluation.scoring import HFScorer, score
from tokengap.models.mixers.attention import keys_attended

PEAK = 989e12
CONTEXT = 8192


def configs():
    import transformers
    common = dict(vocab_size=100352, max_position_embeddings=65536, tie_word_embeddings=False, pad_token_id=None,
                  bos_token_id=None, eos_token_id=None)  # rope theta: no bearing on throughput
    return {
        # OLMo-2 1B's widths with Olmo 3's layer layout (3 sliding-window layers, then full, window 4096)
        "olmo3-1b": transformers.Olmo3Config(**common, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                             num_attention_heads=16, sliding_window=4096),
        # Olmo 3 7B (allenai/Olmo-3-1025-7B's config)
        "olmo3-7b": transformers.Olmo3Config(**common, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                             num_attention_heads=32, sliding_window=4096),
        # Olmo Hybrid's layout at 1B: GDN on 3 of 4 layers (key head dim 0.75 d / heads = 96, values 192)
        "olmo_hybrid-1b": transformers.OlmoHybridConfig(**common, hidden_size=2048, intermediate_size=8192,
                                                        num_hidden_layers=16, num_attention_heads=16),
    }


def forward_flops_per_token(cfg, window_lengths: np.ndarray, matmul_params: int) -> float:
    """Mean forward FLOPs per scored token over windows of these lengths: 2 x matmul parameters + attention's QK^T
    and AV over the keys each query attends (within the window on sliding layers) + GDN's chunked products."""
    d, h = cfg.hidden_size, cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or d // h
    total = 0.0
    for n in window_lengths.tolist():
        f = 2.0 * matmul_params
        for t in cfg.layer_types:
            if t in ("full_attention", "sliding_attention"):
                f += 4 * h * hd * keys_attended(n, cfg.sliding_window if t == "sliding_attention" else None)
            elif t == "linear_attention":
                K, V, hv = cfg.linear_key_head_dim, cfg.linear_value_head_dim, cfg.linear_num_value_heads
                f += hv * (64 * (3 * K + 2 * V) + 6 * K * V)
        total += n * f
    return total / window_lengths.sum()


def synthetic_evalset(lengths: np.ndarray, vocab: int) -> EvalSet:
    rng = np.random.default_rng(0)
    toks = rng.integers(1, vocab, size=int(lengths.sum())).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    docs = [{"id": str(i), "domain": "x", "source": "x", "text": ""} for i in range(len(lengths))]
    return EvalSet(docs, toks, np.repeat(np.arange(len(lengths), dtype=np.int32), lengths),
                   np.zeros((len(toks), 2), np.int32), starts, 0, "synthetic")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", required=True, help=".npy of the eval set's document lengths in tokens")
    ap.add_argument("--models", nargs="+", default=list(configs()))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-batch-tokens", type=int, default=65536)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "flex_attention", "eager"],
                    help="transformers' attention implementation (the --hf path loads with sdpa)")
    ap.add_argument("--compile", action="store_true",
                    help="experiment: torch.compile the decoder (dynamic shapes); not what --hf does today")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    import transformers
    lengths = np.load(args.lengths)
    results = []
    for name in args.models:
        cfg = configs()[name]
        cfg._attn_implementation = args.attn
        torch.manual_seed(0)
        t0 = time.perf_counter()
        with torch.device("cuda"):
            model = transformers.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16).eval()
        build_s = time.perf_counter() - t0
        mm = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
        ev = synthetic_evalset(lengths, cfg.vocab_size)
        flops = forward_flops_per_token(cfg, np.array([w[2] for w in ev.windows(CONTEXT)]), mm)
        scorer = HFScorer(model)
        if args.compile:
            scorer.decoder = torch.compile(scorer.decoder, dynamic=True)
        rates = []
        for _ in range(2):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            score(scorer, ev, CONTEXT, args.batch_size, "cuda", torch.bfloat16, progress=False,
                  max_batch_tokens=args.max_batch_tokens)
            torch.cuda.synchronize()
            rates.append(ev.n_tokens / (time.perf_counter() - t0))
        r = {"model": name, "class": type(model).__name__, "attn": args.attn, "compiled": args.compile,
             "params": sum(p.numel() for p in model.parameters()),
             "matmul_params": mm, "tokens": ev.n_tokens, "first_pass_tokens_per_s": rates[0],
             "second_pass_tokens_per_s": rates[1], "forward_flops_per_token": flops,
             "forward_mfu": flops * rates[1] / PEAK, "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9,
             "build_seconds": build_s}
        print(json.dumps(r), flush=True)
        results.append(r)
        del model
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    print(f"\n{'model':16} {'class':24} {'params':>8} {'tok/s 1st':>10} {'tok/s 2nd':>10} {'fwd MFU':>8} {'mem GB':>7}")
    for r in results:
        print(f"{r['model']:16} {r['class']:24} {r['params'] / 1e9:7.2f}B {r['first_pass_tokens_per_s']:10,.0f} "
              f"{r['second_pass_tokens_per_s']:10,.0f} {100 * r['forward_mfu']:7.1f}% {r['peak_mem_gb']:7.1f}")
    env = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "transformers": transformers.__version__}
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
