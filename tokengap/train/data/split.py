"""From candidate documents to the two splits: exact dedup, per-domain byte budgets with per-source caps, the
held-out eval split (whole documents, before any shuffling), the 13-gram near-duplicate check, the train order.

Documents are dicts {"id", "domain", "source", "text"}. Every order here is a sort by a seeded sha256 of the
document id, so the result depends only on the documents and the seed, never on dict or set iteration order.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict

import numpy as np

Doc = dict
NGRAM = 13
MAX_EVAL_SHARE = 0.2  # a source gives at most about this share of its bytes to the eval split
# Rough UTF-8 bytes per BPE token, to size the eval split before the tokenizer exists (it is trained on train
# only). The manifest records the real token counts.
BYTES_PER_TOKEN = {"books": 4.2, "encyclopedic": 4.0, "technical": 3.9, "news": 4.5,
                   "python": 3.3, "c": 3.0, "html": 3.0, "latex": 3.0}


def nbytes(doc: Doc) -> int:
    return len(doc["text"].encode("utf-8"))


def order_key(seed: int, salt: str, doc_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{salt}:{doc_id}".encode()).digest()


def seeded_order(docs: list[Doc], seed: int, salt: str) -> list[Doc]:
    return sorted(docs, key=lambda d: order_key(seed, salt, d["id"]))


def _norm_hash(text: str) -> bytes:
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).digest()


def dedup_exact(docs: list[Doc]) -> tuple[list[Doc], dict[str, int]]:
    """Drop documents whose whitespace-normalised text was seen before (in the given order). Returns the kept
    documents and, per source, how many were dropped."""
    seen, kept, dropped = set(), [], defaultdict(int)
    for d in docs:
        h = _norm_hash(d["text"])
        if h in seen:
            dropped[d["source"]] += 1
        else:
            seen.add(h)
            kept.append(d)
    return kept, dict(dropped)


# ---- budgets ---------------------------------------------------------------------------------------------
def allocate(caps: dict[str, int], budget: int) -> dict[str, int]:
    """Bytes per source: each gets its cap if all caps fit the budget, else the largest level L with
    sum(min(cap, L)) <= budget (water-filling: small sources keep everything, large ones share the rest)."""
    if sum(caps.values()) <= budget:
        return dict(caps)
    names = sorted(caps, key=lambda n: (caps[n], n))
    left, alloc = budget, {}
    for i, n in enumerate(names):
        level = left // (len(names) - i)
        alloc[n] = min(caps[n], level)
        left -= alloc[n]
    return alloc


def take_bytes(docs: list[Doc], limit: int, seed: int) -> list[Doc]:
    """A seeded subset of `docs` whose bytes come as close to `limit` as fits (all of them if they fit)."""
    if sum(nbytes(d) for d in docs) <= limit:
        return docs
    out, total = [], 0
    for d in seeded_order(docs, seed, "select"):
        b = nbytes(d)
        if total + b <= limit:
            out.append(d)
            total += b
    return out


def select(docs: list[Doc], cfg) -> tuple[list[Doc], dict[str, int]]:
    """Apply `cfg.domain_mb`, `cfg.source_mb` and `cfg.max_source_share`. Returns kept docs and bytes per source."""
    by_source = defaultdict(list)
    for d in docs:
        by_source[d["source"]].append(d)
    kept, alloc_all = [], {}
    for domain, mb in sorted(cfg.domain_mb.items()):
        budget = int(mb * 1e6)
        caps = {}
        for name in sorted(n for n, ds in by_source.items() if ds[0]["domain"] == domain):
            cap = min(sum(nbytes(d) for d in by_source[name]), int(cfg.max_source_share * budget))
            if name in cfg.source_mb:
                cap = min(cap, int(cfg.source_mb[name] * 1e6))
            caps[name] = cap
        for name, limit in allocate(caps, budget).items():
            alloc_all[name] = limit
            kept.extend(take_bytes(by_source[name], limit, cfg.seed))
    return kept, alloc_all


# ---- eval split -----------------------------------------------------------------------------------------
def split_eval(docs: list[Doc], eval_tokens: int, max_doc_tokens: int, seed: int) -> tuple[list[Doc], list[Doc]]:
    """(train, eval): per domain, whole documents taken round-robin over its sources (seeded order) until the
    domain's share of `eval_tokens` (estimated from bytes) is reached. Decided before any shuffling."""
    domains = sorted({d["domain"] for d in docs})
    per_domain = eval_tokens / max(1, len(domains))
    chosen: set[str] = set()
    for domain in domains:
        bpt = BYTES_PER_TOKEN.get(domain, 3.5)
        target, max_bytes = per_domain * bpt, max_doc_tokens * bpt
        queues, room, given = defaultdict(list), defaultdict(float), defaultdict(int)
        for d in seeded_order([d for d in docs if d["domain"] == domain], seed, "eval"):
            room[d["source"]] += nbytes(d) * MAX_EVAL_SHARE  # a source gives at most this share of its bytes
            if nbytes(d) <= max_bytes:
                queues[d["source"]].append(d)
        queues = [queues[s] for s in sorted(queues)]
        taken, i = 0, 0
        while taken < target and any(queues):
            q = queues[i % len(queues)]
            i += 1
            if q:
                d = q.pop(0)
                if given[d["source"]] and (nbytes(d) > room[d["source"]] or taken + nbytes(d) > 1.1 * target):
                    continue  # over the source's share or the domain's target (a first document always fits)
                chosen.add(d["id"])
                given[d["source"]] += 1
                room[d["source"]] -= nbytes(d)
                taken += nbytes(d)
    train = [d for d in docs if d["id"] not in chosen]
    held = [d for d in docs if d["id"] in chosen]
    return train, held


# ---- 13-gram near-duplicate check ----------------------------------------------------------------------------
WORD = re.compile(r"\w+")
_P = np.uint64(1099511628211)  # FNV prime: a rolling polynomial hash of word ids, mod 2^64


def gram_hashes(ids: np.ndarray) -> np.ndarray:
    """Hashes of every run of NGRAM consecutive ids; runs containing id 0 (a word unknown to the index) dropped."""
    n = len(ids) - NGRAM + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(NGRAM):
            h = h * _P + ids[k:k + n]
    zero = np.concatenate([[0], np.cumsum(ids == 0)])
    return h[(zero[NGRAM:] - zero[:n]) == 0]


def contains(sorted_unique: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values in sorted_unique, by binary search (np.isin would re-sort the big array on every call)."""
    if len(sorted_unique) == 0:
        return np.zeros(len(values), dtype=bool)
    i = np.minimum(np.searchsorted(sorted_unique, values), len(sorted_unique) - 1)
    return sorted_unique[i] == values


class NgramIndex:
    """The set of word 13-grams of the eval documents (lower-cased \\w+ words)."""

    def __init__(self, docs: list[Doc]):
        self.vocab: dict[str, int] = {}
        grams = []
        for d in docs:
            words = WORD.findall(d["text"].lower())
            ids = np.fromiter((self.vocab.setdefault(w, len(self.vocab) + 1) for w in words), np.uint64, len(words))
            grams.append(gram_hashes(ids))
        self.grams = np.unique(np.concatenate(grams)) if grams else np.zeros(0, np.uint64)

    def overlap(self, text: str) -> tuple[int, np.ndarray]:
        """(number of the text's 13-grams, hashes of those also in the index)."""
        words = WORD.findall(text.lower())
        n = max(0, len(words) - NGRAM + 1)
        ids = np.fromiter((self.vocab.get(w, 0) for w in words), np.uint64, len(words))
        h = gram_hashes(ids)
        return n, h[contains(self.grams, h)]


def drop_near_duplicates(train: list[Doc], held: list[Doc], threshold: float) -> tuple[list[Doc], dict]:
    """Drop train documents sharing >= `threshold` of their 13-grams with the eval set. Reports, per domain of the
    eval set, the fraction of its distinct 13-grams still found somewhere in train (licence headers, boilerplate)."""
    index = NgramIndex(held)
    kept, dropped, seen = [], defaultdict(int), [np.zeros(0, np.uint64)]
    for d in train:
        n, hits = index.overlap(d["text"])
        if n and len(hits) / n >= threshold:
            dropped[d["domain"]] += 1
        else:
            kept.append(d)
            if len(hits):
                seen.append(np.unique(hits))
    in_train = np.unique(np.concatenate(seen))
    overlap = {}
    for domain in sorted({d["domain"] for d in held}):
        grams = np.unique(np.concatenate([index.overlap(d["text"])[1] for d in held if d["domain"] == domain]))
        overlap[domain] = round(float(contains(in_train, grams).mean()) if len(grams) else 0.0, 6)
    stats = {"near_dup_train_docs_dropped": dict(sorted(dropped.items())), "eval_13grams_seen_in_train": overlap}
    return kept, stats


__all__ = ["BYTES_PER_TOKEN", "NGRAM", "dedup_exact", "allocate", "take_bytes", "select", "split_eval",
           "NgramIndex", "drop_near_duplicates", "seeded_order", "order_key", "nbytes"]
