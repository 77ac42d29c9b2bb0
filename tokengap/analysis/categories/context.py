"""Document- and corpus-level labels: domain, source, position in the scoring window, and the log unigram
frequency of each token in the training corpus (a resource built once per run, see `unigram_logprob`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import numpy as np

from tokengap.analysis.categories.registry import DocView, labeler


@labeler("meta", columns=("domain", "source", "ctx_pos"), version=1)
def meta(doc: DocView) -> dict[str, np.ndarray]:
    """`domain` and `source` of the document; `ctx_pos`: position of the token in its scoring window (the
    regression uses log(1 + ctx_pos))."""
    return {"domain": np.full(doc.n, doc.domain, dtype=object), "source": np.full(doc.n, doc.source, dtype=object),
            "ctx_pos": doc.ctx_pos.astype(np.int32)}


@labeler("frequency", columns=("log_freq",), version=1, needs=("unigram_logprob",))
def frequency(doc: DocView, unigram_logprob: np.ndarray) -> dict[str, np.ndarray]:
    """`log_freq`: natural log of the token's unigram probability in the training corpus (add-k smoothed; ids
    beyond the table get the table's floor)."""
    table = np.asarray(unigram_logprob, dtype=np.float64)
    ids = doc.token_ids
    inside = ids < table.shape[0]
    out = np.full(doc.n, table.min() if table.size else np.nan, dtype=np.float32)
    out[inside] = table[ids[inside]]
    return {"log_freq": out}


def unigram_counts(tokens: np.ndarray, vocab_size: int, chunk: int = 1 << 26) -> np.ndarray:
    """(vocab_size,) int64 counts of token ids (chunked, so a memory-mapped corpus is never loaded whole)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for s in range(0, tokens.shape[0], chunk):
        c = np.bincount(np.asarray(tokens[s:s + chunk], dtype=np.int64), minlength=vocab_size)
        counts[:c.shape[0]] += c[:vocab_size]
    return counts


def logprob_from_counts(counts: np.ndarray, smoothing: float = 0.5, exclude: Optional[int] = None) -> np.ndarray:
    """log((count + k) / (total + k V)); `exclude` (e.g. the EOT id) is dropped from the total first."""
    counts = counts.astype(np.float64).copy()
    if exclude is not None and 0 <= exclude < counts.shape[0]:
        counts[exclude] = 0.0
    return np.log((counts + smoothing) / (counts.sum() + smoothing * counts.shape[0]))


def unigram_logprob(corpus_dir: Union[str, Path], smoothing: float = 0.5) -> tuple[np.ndarray, dict]:
    """Log unigram probabilities from a built corpus's train.bin (read with numpy, dtype from train.json).

    Returns (table (vocab_size,), provenance dict for the label cache)."""
    corpus_dir = Path(corpus_dir)
    info = json.loads((corpus_dir / "train.json").read_text())
    tokens = np.memmap(corpus_dir / "train.bin", dtype=np.dtype(info["dtype"]), mode="r")
    vocab = int(info["vocab_size"])
    table = logprob_from_counts(unigram_counts(tokens, vocab), smoothing, exclude=info.get("eot_id"))
    prov = {"source": "train.bin", "corpus": str(corpus_dir), "n_tokens": int(tokens.shape[0]),
            "tokenizer_sha256": info.get("tokenizer_sha256"), "smoothing": smoothing}
    return table, prov
