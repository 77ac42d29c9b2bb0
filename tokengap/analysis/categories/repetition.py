"""Repetition: does token t complete an n-gram already seen earlier in the same context window?

paper.md ("Reproduction defaults"): t is repeated-n when the n tokens ending at t occurred, in the same order,
ending at an earlier position of the same scoring window; the first occurrence is not repeated. Both n-grams
lie inside the window's target tokens (a window's first input token, the last target of the window before,
is ignored). Copy distance = t minus the end of the most recent earlier occurrence (0 when not repeated).

n-grams are compared exactly: an n-gram gets an integer id by pairing the ids of two shorter n-grams
(id_n[t] = pair(id_{n-k}[t-k], id_k[t])), so no hashing and no collisions.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tokengap.analysis.categories.registry import DocView, labeler

DEFAULT_NS = (1, 2, 4, 8, 16)
NOVEL_N = 4  # "novel" / "repeated" without a qualifier means this n (filters, regression, curves)


def _pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense ids for the pairs (a[i], b[i]); -1 where either is -1."""
    ok = (a >= 0) & (b >= 0)
    out = np.full(a.shape[0], -1, dtype=np.int64)
    if ok.any():
        key = a[ok] * (int(b[ok].max()) + 1) + b[ok]
        out[ok] = np.unique(key, return_inverse=True)[1]
    return out


def ngram_ids(tokens: np.ndarray, ctx_pos: np.ndarray, n: int, _memo: dict | None = None) -> np.ndarray:
    """(len,) int64: an id for the n-gram ending at each position (equal ids = equal n-grams), -1 where the
    n-gram would reach before the start of its window (ctx_pos < n - 1)."""
    memo = {} if _memo is None else _memo
    if n in memo:
        return memo[n]
    if n == 1:
        ids = np.unique(tokens, return_inverse=True)[1].astype(np.int64)
    else:
        k = n // 2 if n % 2 == 0 else 1
        left, right = ngram_ids(tokens, ctx_pos, n - k, memo), ngram_ids(tokens, ctx_pos, k, memo)
        shifted = np.full_like(left, -1)
        shifted[k:] = left[:-k]
        ids = _pair(shifted, right)
    ids = np.where(ctx_pos >= n - 1, ids, -1)
    memo[n] = ids
    return ids


def repeats(gram_ids: np.ndarray, window_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """repeated (len,) bool and copy distance (len,) int64 (0 if not repeated) for n-gram ids within windows."""
    m = gram_ids.shape[0]
    rep, dist = np.zeros(m, dtype=bool), np.zeros(m, dtype=np.int64)
    valid = np.flatnonzero(gram_ids >= 0)
    if valid.size == 0:
        return rep, dist
    order = valid[np.lexsort((valid, gram_ids[valid], window_id[valid]))]  # by window, n-gram, position
    same = (gram_ids[order[1:]] == gram_ids[order[:-1]]) & (window_id[order[1:]] == window_id[order[:-1]])
    later = order[1:][same]
    rep[later] = True
    dist[later] = later - order[:-1][same]
    return rep, dist


def _columns(ns: Sequence[int], copy_n: int) -> tuple[str, ...]:
    return tuple(f"rep_{n}" for n in ns) + ("copy_dist",)


@labeler("repetition", columns=_columns, version=1)
def repetition(doc: DocView, *, ns: Sequence[int] = DEFAULT_NS, copy_n: int = NOVEL_N) -> dict[str, np.ndarray]:
    """`rep_<n>`: token completes an n-gram seen earlier in the same window; `copy_dist`: distance in tokens to
    the end of the most recent earlier occurrence of its `copy_n`-gram (0 = not repeated)."""
    memo: dict = {}
    out = {}
    for n in sorted(set(ns) | {copy_n}):
        rep, dist = repeats(ngram_ids(doc.token_ids, doc.ctx_pos, n, memo), doc.window_id)
        if n in ns:
            out[f"rep_{n}"] = rep
        if n == copy_n:
            out["copy_dist"] = dist.astype(np.int32)
    return out
