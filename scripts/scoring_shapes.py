"""Which batches of a scoring pass are slow, and why: per-batch time of `tokengap.evaluation.scoring.score` on
bench.py's synthetic scoring set (1M random tokens, a `small` model, bf16, batch 32 x 2048), in a fresh process. GPU
only.

    TRITON_CACHE_DIR=$(mktemp -d) python -m scripts.scoring_shapes 1 hybrid    # pad_batch on (CUDA's default)
    TRITON_CACHE_DIR=$(mktemp -d) python -m scripts.scoring_shapes 0 hybrid    # off: the last batch keeps its rows

Prints the warm-up time (5 documents), then for two passes: tokens/s, and every batch over 3x the median time with
its (rows, length). A batch shape Triton has not specialised mamba-ssm's kernels for is compiled inside the pass
(results/gpu/score_diag.log; BENCHMARKS.md). A fresh TRITON_CACHE_DIR keeps an earlier process's kernels out.
"""
import statistics
import sys
import time

import torch


from tokengap.evaluation.scoring import ZooScorer, score
from tokengap.models import LM
from scripts.bench import T, scoring_set, zoo_cfg


class TimedScorer(ZooScorer):
    """ZooScorer that records (input shape, seconds) of each batch, synchronised."""

    def __init__(self, model):
        super().__init__(model)
        self.log = []

    def __call__(self, inputs, targets, chunk_tokens):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = super().__call__(inputs, targets, chunk_tokens)
        torch.cuda.synchronize()
        self.log.append((tuple(inputs.shape), time.perf_counter() - t0))
        return out


def main() -> int:
    if not torch.cuda.is_available():
        print("needs CUDA", file=sys.stderr)
        return 2
    pad, name = bool(int(sys.argv[1])), sys.argv[2] if len(sys.argv) > 2 else "hybrid"
    model = LM(zoo_cfg(name, "small", vocab_size=16384)).cuda().eval()
    ev = scoring_set()
    scorer = TimedScorer(model)
    t0 = time.perf_counter()
    score(scorer, ev.subset(5)[0], T, 32, "cuda", torch.bfloat16, progress=False, pad_batch=pad)
    print(f"{name} pad_batch={pad} warm-up {time.perf_counter() - t0:.1f}s shapes {sorted(set(s for s, _ in scorer.log))}")
    for p in range(2):
        scorer.log = []
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        score(scorer, ev, T, 32, "cuda", torch.bfloat16, progress=False, pad_batch=pad)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        med = statistics.median(t for _, t in scorer.log)
        slow = [(s, round(t, 3)) for s, t in scorer.log if t > 3 * med]
        print(f"  pass {p + 1}: {ev.n_tokens / dt:,.0f} tok/s ({dt:.2f}s, {len(scorer.log)} batches, median "
              f"{med * 1e3:.1f} ms); in scorer {sum(t for _, t in scorer.log):.2f}s; slow: {slow}; "
              f"shapes {sorted(set(s for s, _ in scorer.log))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
