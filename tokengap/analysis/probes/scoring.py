"""Score a model on the probe set through the same scorer as natural text, and keep one row per target.

Every probe document is tokenized with the model's tokenizer (`EvalSet.from_docs`), every token is scored
by `tokengap.evaluation.scoring.score`, and each target reads the token whose [start, end) span contains the target's
first character. With a byte-level BPE that token usually carries the preceding space (" she", " 5"):
expected, and the model still sees only the text before the token.

**A target that spans several tokens is scored on its first token.** For "</em>" or "\\end{quote}" that
piece (" </", " \\") names the delimiter family; for a rare value word it may be a fragment. `n_pieces` says
how many tokens the answer spans, `chance_token` is 1 / (number of distinct first tokens among the
candidates), and `first_shared` marks answers whose first token is also another candidate's first token.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from tokengap.evaluation.evalset import EvalSet, TextTokenizer
from tokengap.analysis.probes.probeset import ProbeSet
from tokengap.models.atomic import atomic_write_stream

ARRAYS = ("loss", "correct", "token", "n_pieces", "first_shared", "chance", "chance_token", "doc", "level", "probe",
          "kind", "answer", "piece")


@dataclass
class ProbeResult:
    """One model on one probe set; arrays aligned with targets.jsonl (row i = target i)."""
    loss: np.ndarray  # float32 nats, loss of the target's first token
    correct: np.ndarray  # bool: that token is the model's arg-max
    token: np.ndarray  # int64 id of the scored token
    n_pieces: np.ndarray  # int16 tokens the answer spans (1 = whole answer in one token)
    first_shared: np.ndarray  # bool: another candidate starts with the same token
    chance: np.ndarray  # float32 1 / len(candidates)
    chance_token: np.ndarray  # float32 1 / distinct first tokens of the candidates
    doc: np.ndarray  # int32 document index (the bootstrap cluster)
    level: np.ndarray  # int32 value of the probe's difficulty axis
    probe: np.ndarray  # str
    kind: np.ndarray  # str
    answer: np.ndarray  # str
    piece: np.ndarray  # str: text of the scored token
    meta: dict


def target_tokens(ev: EvalSet, doc: np.ndarray, char: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global index of the token containing each target's first character, and how many tokens overlap
    [char, char + length). doc, char, length: (n,) ints. Raises if a character is covered by no token."""
    idx = np.empty(len(char), dtype=np.int64)
    pieces = np.empty(len(char), dtype=np.int64)
    order = np.argsort(doc, kind="stable")
    bounds = np.searchsorted(doc[order], np.arange(len(ev.docs) + 1))
    for d in range(len(ev.docs)):
        sel = order[bounds[d]:bounds[d + 1]]
        if not len(sel):
            continue
        a, b = int(ev.doc_starts[d]), int(ev.doc_starts[d + 1])
        starts, ends = ev.offsets[a:b, 0], ev.offsets[a:b, 1]
        j = np.searchsorted(ends, char[sel], side="right")  # first token that ends after the character
        bad = (j >= b - a) | (starts[np.minimum(j, b - a - 1)] > char[sel])
        if bad.any():
            c = int(char[sel][bad][0])
            raise ValueError(f"{ev.docs[d]['id']}: no token covers target character {c} "
                             f"({ev.docs[d]['text'][c:c + 10]!r})")
        idx[sel] = a + j
        pieces[sel] = np.searchsorted(starts, char[sel] + length[sel], side="left") - j
    return idx, pieces


def first_tokens(tokenizer: TextTokenizer, pairs: list[tuple[str, str]]) -> dict:
    """{(preceding character, candidate): id of the candidate's first token} when written after that character.

    The preceding character matters for byte-level BPE (" she" vs "she"); the rest of the document does not,
    because pre-tokenization splits at spaces and punctuation."""
    pairs = sorted(set(pairs))
    enc = tokenizer.encode([p + c for p, c in pairs])
    out = {}
    for (p, c), (ids, offs) in zip(pairs, enc):
        k = next(i for i, (s, e) in enumerate(offs) if e > len(p))  # first token reaching into the candidate
        out[(p, c)] = ids[k]
    return out


def score_probe_set(scorer, probes: ProbeSet, tokenizer: TextTokenizer, context_len: int, batch_size: int = 8,
                    device="cpu", dtype=None, progress: bool = False) -> tuple[dict, dict]:
    """Score every probe document with `scorer` (see tokengap.evaluation.scoring.score). Returns (arrays, meta) for
    ProbeResult; every document must fit one context window (a split document would lose its beginning)."""
    from tokengap.evaluation.scoring import score

    ev = EvalSet.from_docs(probes.docs, tokenizer)
    lengths = np.diff(ev.doc_starts)
    if lengths.max() > context_len:
        worst = int(lengths.argmax())
        raise ValueError(f"{int((lengths > context_len).sum())} probe documents are longer than the context "
                         f"({context_len} tokens), e.g. {probes.docs[worst]['id']} with {int(lengths[worst])}: "
                         f"generate a smaller preset (--preset tiny) or score with a longer --context")
    loss, correct = score(scorer, ev, context_len, batch_size=batch_size, device=device, dtype=dtype,
                          progress=progress)
    doc_of = {d["id"]: i for i, d in enumerate(probes.docs)}
    t = probes.targets
    doc = np.array([doc_of[r["doc"]] for r in t], dtype=np.int32)
    char = np.array([r["char"] for r in t], dtype=np.int64)
    length = np.array([len(r["answer"]) for r in t], dtype=np.int64)
    idx, n_pieces = target_tokens(ev, doc.astype(np.int64), char, length)
    if len(np.unique(idx)) != len(idx):
        raise ValueError("two targets fall in the same token: the probe texts must separate targets")
    texts = [probes.docs[d]["text"] for d in doc]
    prev = [txt[c - 1] if c else "" for txt, c in zip(texts, char)]
    first = first_tokens(tokenizer, [(p, c) for p, r in zip(prev, t) for c in r["candidates"]])
    own = np.array([first[(p, r["answer"])] for p, r in zip(prev, t)])
    n_first = np.array([len({first[(p, c)] for c in r["candidates"]}) for p, r in zip(prev, t)])
    shared = np.array([sum(first[(p, c)] == first[(p, r["answer"])] for c in r["candidates"]) > 1
                       for p, r in zip(prev, t)])
    token = ev.tokens[idx].astype(np.int64)
    piece = [texts[i][ev.offsets[j, 0]:ev.offsets[j, 1]] for i, j in enumerate(idx)]
    axis = {p: probes.axis(p) for p in probes.manifest["probes"]}
    arrays = {
        "loss": loss[idx], "correct": correct[idx], "token": token, "n_pieces": n_pieces.astype(np.int16),
        "first_shared": shared, "chance": np.array([1 / len(r["candidates"]) for r in t], dtype=np.float32),
        "chance_token": (1 / n_first).astype(np.float32), "doc": doc,
        "level": np.array([r[axis[r["probe"]]] for r in t], dtype=np.int32),
        "probe": np.array([r["probe"] for r in t]), "kind": np.array([r["kind"] for r in t]),
        "answer": np.array([r["answer"] for r in t]), "piece": np.array(piece),
    }
    meta = {"probe_set_hash": probes.hash, "probe_preset": probes.manifest["preset"],
            "probe_seed": probes.manifest["seed"], "axes": axis, "tokenizer_sha256": ev.tokenizer_sha256,
            "eval_hash": ev.eval_hash, "context_len": context_len, "n_targets": len(t), "n_docs": len(probes.docs),
            "n_tokens": ev.n_tokens, "max_doc_tokens": int(lengths.max()),
            "multi_token_share": float((n_pieces > 1).mean()) if len(t) else 0.0,
            # the scored token is the candidate's first token written in isolation (should be ~1.0)
            "first_token_agreement": float((own == token).mean()) if len(t) else 1.0}
    return arrays, meta


def save_results(path: Union[str, Path], arrays: dict, meta: dict) -> Path:
    return atomic_write_stream(path, lambda f: np.savez_compressed(
        f, **{k: np.asarray(arrays[k]) for k in ARRAYS}, meta=np.str_(json.dumps(meta, sort_keys=True))))


def load_results(path: Union[str, Path]) -> ProbeResult:
    from tokengap.analysis.errors import check_npz
    check_npz(path, [*ARRAYS, "meta"], "probe results (from `probes score`)")
    with np.load(path, allow_pickle=False) as z:
        return ProbeResult(**{k: z[k] for k in ARRAYS}, meta={**json.loads(str(z["meta"])), "path": str(path)})
