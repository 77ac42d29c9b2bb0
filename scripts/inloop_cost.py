"""What one in-loop evaluation costs (docs/library.md): time and peak memory of `FilteredEval.evaluate` for a zoo
model at `small` size on the small corpus's eval set (or a `--max-tokens` subset of it), on the CPU or the GPU.

    python -m scripts.inloop_cost --corpus build/corpus/small --filters results/filters.npz \\
        --model hybrid --device cuda --dtype bfloat16 --max-tokens 0 100000 --json cost.json

The model is randomly initialised: the cost does not depend on the weights. The masks are the committed ones of
that eval set (results/filters.npz, no spaCy needed), cut to the subset. Two calls per setting: the first
includes compilation / autotuning / allocator warm-up, the second is what every later evaluation costs.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import numpy as np
import torch


def main(argv=None) -> int:
    from tokengap.analysis.inloop import FilteredEval, take_tokens
    from tokengap.analysis.labels import load_filters
    from tokengap.evaluation.evalset import EvalSet
    from tokengap.models import LM
    from tokengap.models.__main__ import load

    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="build/corpus/small")
    ap.add_argument("--filters", default="results/filters.npz")
    ap.add_argument("--model", default="hybrid")
    ap.add_argument("--size", default="small")
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="autocast dtype (bfloat16); default: float32")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, nargs="+", default=[0], help="0: the whole eval set")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    dtype = getattr(torch, a.dtype) if a.dtype else None
    full = EvalSet.from_corpus(a.corpus)
    masks, made_for = load_filters(a.filters)
    if made_for != full.eval_hash:
        print(f"--filters {a.filters} was made for eval set {made_for[:16]}…, {a.corpus} is {full.eval_hash[:16]}…",
              file=sys.stderr)
        return 2
    cfg = load([f"model={a.model}", f"size={a.size}"])
    cfg.vocab_size = int(json.load(open(f"{a.corpus}/train.json")).get("vocab_size", 0)) or int(full.tokens.max()) + 1
    torch.manual_seed(0)
    model = LM(cfg).to(device)
    if device.type == "cuda":
        model.check_kernels(device, dtype or torch.float32)
    rows = []
    for mt in a.max_tokens:
        ev, idx = (full, None) if not mt else take_tokens(full, mt)
        fe = FilteredEval(ev, {k: (m if idx is None else m[idx]) for k, m in masks.items()}, a.context,
                          min_filter_tokens=1)
        for call in ("first", "repeat"):
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            res = fe.evaluate(model, device=device, dtype=dtype, batch_size=a.batch_size)
            wall = time.perf_counter() - t0
            row = {"tokens": ev.n_tokens, "docs": len(ev.docs), "call": call, "seconds": round(wall, 2),
                   "tokens_per_s": round(ev.n_tokens / wall), "loss_all": round(res.loss["all"], 4),
                   "peak_rss_mib_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                   "rss_peak_grew_mib": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024)}
            if device.type == "cuda":
                row["gpu_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
            rows.append(row)
            print(json.dumps(row), flush=True)
    env = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
           "threads": torch.get_num_threads(), "torch": torch.__version__, "model": f"{a.model} {a.size}",
           "params": sum(p.numel() for p in model.parameters()), "dtype": a.dtype or "float32",
           "batch_size": a.batch_size, "context": a.context, "n_masks": len(fe.masks) + 1}
    print(json.dumps(env))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
