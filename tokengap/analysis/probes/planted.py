"""Planted-repeat probe: in-context retrieval with nothing to memorise.

A span of random tokens (drawn from the corpus unigram distribution) is planted twice in a window of random
filler tokens (drawn the same way), the second copy `gap` tokens after the end of the first. Nothing in the
filler predicts the span, and no pretraining text contains it, so only in-context retrieval can predict the
second copy. The retrieval gain at a gap is loss(first copy) − loss(second copy), over the copies' tokens after
their first (the first token of a copy follows random filler and cannot be predicted either time).

    python -m tokengap.analysis probes planted-generate --corpus build/corpus/small --out build/planted [--window 2048]
    python -m tokengap.analysis probes planted-score --model runs/X/model --planted build/planted/planted.npz \\
        --out probes/planted/<arch>-s<seed>.npz
    python -m tokengap.analysis probes planted-compare results/probes/planted/*.npz

Arrays (planted.npz): tokens (n, window) int32 (the targets; the model's input is EOT followed by all but the
last), first (n,) and second (n,) int32 start positions of the copies, gap (n,) int32, span (scalar), meta JSON.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

GAPS = (64, 128, 256, 512, 1024, 1792)


@dataclass(frozen=True)
class PlantedConfig:
    window: int = 2048
    span: int = 32
    gaps: tuple = GAPS
    per_gap: int = 32  # sequences per gap
    lead: int = 16  # filler tokens before the first copy, at least
    check_n: int = 4  # no n-gram of the span occurs in the filler (so the second copy is the only copy)
    seed: int = 0


def _ngrams(seq: np.ndarray, n: int) -> set:
    return {tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)}


def foreign_copies(tokens: np.ndarray, first: int, second: int, span: int, n: int) -> np.ndarray:
    """Positions (start of an n-gram) outside the two copies where an n-gram of the span occurs, n-grams that
    straddle a copy's boundary included. Empty = the span's only copies are the two planted ones."""
    grams = _ngrams(tokens[first:first + span], n)
    inside = np.zeros(len(tokens), bool)
    for s in (first, second):
        inside[s:s + span - n + 1] = True  # n-grams wholly within a copy
    hits = [i for i in range(len(tokens) - n + 1) if not inside[i] and tuple(tokens[i:i + n]) in grams]
    return np.array(hits, dtype=np.int64)


def generate(unigram_counts: np.ndarray, cfg: PlantedConfig = PlantedConfig(), exclude: Sequence[int] = (0,)
             ) -> dict:
    """The probe's arrays. unigram_counts: (vocab,) token counts of the training corpus; `exclude` (EOT) is never
    drawn. Filler that would repeat an n-gram of the span is redrawn until the span's only copies are the two."""
    p = np.asarray(unigram_counts, dtype=np.float64).copy()
    p[list(exclude)] = 0
    if p.sum() <= 0:
        raise ValueError("unigram counts are all zero")
    p /= p.sum()
    for g in cfg.gaps:
        if cfg.lead + 2 * cfg.span + g > cfg.window:
            raise ValueError(f"gap {g} with span {cfg.span} and lead {cfg.lead} does not fit window {cfg.window}")
    rng = np.random.default_rng(cfg.seed)
    vocab = np.arange(len(p))
    rows, firsts, seconds, gaps = [], [], [], []
    for g in cfg.gaps:
        for _ in range(cfg.per_gap):
            seq = rng.choice(vocab, size=cfg.window, p=p)
            first = int(rng.integers(cfg.lead, cfg.window - 2 * cfg.span - g + 1))
            second = first + cfg.span + g
            seq[second:second + cfg.span] = seq[first:first + cfg.span]
            for _try in range(100):
                bad = foreign_copies(seq, first, second, cfg.span, cfg.check_n)
                if not bad.size:
                    break
                for i in bad:  # redraw the filler tokens of each offending n-gram
                    for j in range(i, i + cfg.check_n):
                        if not (first <= j < first + cfg.span or second <= j < second + cfg.span):
                            seq[j] = rng.choice(vocab, p=p)
            else:
                raise RuntimeError("could not make the planted span unique; use a larger vocabulary or span")
            rows.append(seq.astype(np.int32))
            firsts.append(first)
            seconds.append(second)
            gaps.append(g)
    return {"tokens": np.stack(rows), "first": np.array(firsts, np.int32), "second": np.array(seconds, np.int32),
            "gap": np.array(gaps, np.int32), "span": np.int32(cfg.span), "meta": json.dumps(asdict(cfg))}


def save(path: Union[str, Path], arrays: dict) -> Path:
    from tokengap.models.atomic import atomic_write_stream

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_stream(Path(path), lambda f: np.savez(f, **arrays))


def load(path: Union[str, Path], members=("tokens",), kind: str = "a planted-repeat set (from `planted-generate`)") -> dict:
    from tokengap.analysis.errors import check_npz
    check_npz(path, members, kind)
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def corpus_counts(corpus: Union[str, Path]) -> tuple[np.ndarray, dict]:
    """Unigram counts of a built corpus's train.bin, and its train.json."""
    from tokengap.analysis.categories.context import unigram_counts

    corpus = Path(corpus)
    info = json.loads((corpus / "train.json").read_text())
    tokens = np.memmap(corpus / "train.bin", dtype=np.dtype(info["dtype"]), mode="r")
    return unigram_counts(tokens, int(info["vocab_size"])), info


def score_sequences(scorer, tokens: np.ndarray, batch_size: int = 8, device="cpu", dtype=None,
                    chunk_tokens: int = 8192, eot: int = 0) -> np.ndarray:
    """(n, window) per-token loss of `scorer` (tokengap.evaluation.scoring.ZooScorer / HFScorer): input EOT +
    tokens[:-1]."""
    import torch

    device = torch.device(device)
    out = np.empty(tokens.shape, np.float32)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None and dtype != torch.float32 else \
        torch.autocast(device.type, enabled=False)
    with torch.inference_mode(), autocast:
        for s in range(0, len(tokens), batch_size):
            t = torch.as_tensor(tokens[s:s + batch_size], dtype=torch.long)
            inp = torch.cat([torch.full((t.shape[0], 1), eot, dtype=torch.long), t[:, :-1]], 1)
            loss, _ = scorer(inp.to(device), t.to(device), chunk_tokens)
            out[s:s + batch_size] = loss.float().cpu().numpy()
    return out


def retrieval_gain(loss: np.ndarray, arrays: dict, n_boot: int = 1000, seed: int = 0):
    """DataFrame per gap: mean loss on the first and second copies (tokens 2.. of each copy), the gain
    first − second with a 95% bootstrap interval over sequences, and n."""
    import pandas as pd

    span = int(arrays["span"])
    idx = np.arange(1, span)
    rows_first = np.take_along_axis(loss, arrays["first"][:, None] + idx[None], 1).mean(1)
    rows_second = np.take_along_axis(loss, arrays["second"][:, None] + idx[None], 1).mean(1)
    rng = np.random.default_rng(seed)
    out = []
    for g in np.unique(arrays["gap"]):
        m = arrays["gap"] == g
        gain = rows_first[m] - rows_second[m]
        boots = gain[rng.integers(0, len(gain), (n_boot, len(gain)))].mean(1)
        lo, hi = np.quantile(boots, [0.025, 0.975])
        out.append({"gap": int(g), "n": int(m.sum()), "loss_first": float(rows_first[m].mean()),
                    "loss_second": float(rows_second[m].mean()), "gain": float(gain.mean()), "lo": float(lo),
                    "hi": float(hi)})
    return pd.DataFrame(out)
