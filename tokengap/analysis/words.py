"""Compare two models of different tokenizers word by word: `python -m tokengap.analysis words`.

    python -m tokengap.analysis words --a scores/pythia.npz --b scores/mamba2.npz --eval build/corpus/small --out words/

Each side's per-token losses are summed onto words through the character offsets its tokenization carries: a
token belongs to the word holding its first non-space character, a token of spaces only to the word after it (to
the last word at a document's end), so a document's total loss is the sum of its words' losses under either
tokenization. Words are a tokenizer-free cut of the text at whitespace (maximal runs of non-space characters):
the subword tokenizers of these models never put a space inside a token, so no token spans two words, and a loss
that adds up over characters gives the same word totals under any two tokenizations (tests/test_words.py). A
word's bytes are its text's UTF-8 bytes with the spaces before it, so the bytes of a document add up too, and bits
per byte = nats / (ln 2 · bytes).

Word categories: the word-level labels of tokengap/analysis/categories through side A's token labels (a word takes the
label of its first token: POS, content/function, code/markup class, domain), delimiters (the word starts with an
opening bracket, or ends with a closing one), and repeated word n-grams (the n words ending here occurred earlier
in the document). Statistics as
`compare`: word-weighted mean gap per category, 95% document-level bootstrap within domains; plus each side's bits
per byte per category.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tokengap.analysis.errors import AnalysisError, check_output_dir, eval_corpus, json_fields, positive_int

WORD = re.compile(r"\S+")
OPEN, CLOSE = "([{<", ")]}>"


@dataclass
class Words:
    """The words of an eval set, concatenated over documents: doc (W,), start/end char offsets in the document's
    text (W,), bytes (W,: the word with the spaces before it), text (W,) object, doc_starts (n_docs + 1,)."""
    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    nbytes: np.ndarray
    text: np.ndarray
    doc_starts: np.ndarray

    @property
    def n(self) -> int:
        return int(self.doc.shape[0])


def segment(texts: Sequence[str]) -> Words:
    docs, starts, ends, nbytes, words, doc_starts = [], [], [], [], [], [0]
    for d, t in enumerate(texts):
        spans = [(m.start(), m.end()) for m in WORD.finditer(t)]
        prev = 0
        for i, (a, b) in enumerate(spans):
            tail = len(t) if i == len(spans) - 1 else b  # the last word takes the document's trailing spaces
            docs.append(d)
            starts.append(a)
            ends.append(b)
            nbytes.append(len(t[prev:tail].encode("utf-8")))
            words.append(t[a:b])
            prev = tail
        doc_starts.append(len(docs))
    return Words(np.array(docs, np.int32), np.array(starts, np.int64), np.array(ends, np.int64),
                 np.array(nbytes, np.int64), np.array(words, dtype=object), np.array(doc_starts, np.int64))


def token_words(ev, words: Words) -> np.ndarray:
    """(N,) the word index of every token of `ev` (an EvalSet over the same documents as `words`)."""
    out = np.empty(ev.n_tokens, np.int64)
    for d, doc in enumerate(ev.docs):
        a, b = int(ev.doc_starts[d]), int(ev.doc_starts[d + 1])
        wa, wb = int(words.doc_starts[d]), int(words.doc_starts[d + 1])
        if b == a:
            continue
        if wb == wa:
            raise AnalysisError(f"document {doc['id']}: tokens but no words")
        text, offs = doc["text"], ev.offsets[a:b]
        anchors = np.empty(b - a, np.int64)
        for j, (s, e) in enumerate(offs):
            piece = text[s:e]
            k = len(piece) - len(piece.lstrip())
            anchors[j] = s + k if k < len(piece) else -1  # -1: spaces only
        # spaces-only tokens: the next token's anchor (the word they come before), else the document's last char
        nxt = len(text)
        for j in range(b - a - 1, -1, -1):
            if anchors[j] < 0:
                anchors[j] = nxt
            else:
                nxt = anchors[j]
        ends = words.end[wa:wb]
        idx = np.searchsorted(ends, anchors, side="right")  # the first word ending after the anchor
        out[a:b] = wa + np.minimum(idx, wb - wa - 1)
    return out


def word_losses(token_loss: np.ndarray, ev, words: Words) -> np.ndarray:
    """(W,) float64: each word's summed token losses."""
    return np.bincount(token_words(ev, words), weights=token_loss.astype(np.float64), minlength=words.n)


def repeated_words(words: Words, n: int) -> np.ndarray:
    """(W,) bool: the n words ending here occurred as n consecutive words earlier in the same document."""
    out = np.zeros(words.n, bool)
    for d in range(len(words.doc_starts) - 1):
        a, b = int(words.doc_starts[d]), int(words.doc_starts[d + 1])
        seen = set()
        w = words.text[a:b]
        for i in range(n - 1, b - a):
            key = tuple(w[i - n + 1:i + 1])
            out[a + i] = key in seen
            seen.add(key)
    return out


def word_categories(words: Words, first_token_labels=None, domains: Optional[np.ndarray] = None
                    ) -> list[tuple[str, str, np.ndarray]]:
    """[(family, category, (W,) mask)]: all words, domains, word classes and UPOS of side A's first token,
    code/markup classes, delimiters, repeated word n-grams."""
    cats = [("overall", "all words", np.ones(words.n, bool))]
    if domains is not None:
        for d in dict.fromkeys(domains):
            cats.append(("domain", str(d), domains == d))
    if first_token_labels is not None:
        lab = first_token_labels
        for col, fam in (("word_class", "word_class"), ("upos", "upos"), ("py_lex", "code"), ("html_lex", "code"),
                         ("latex_lex", "code")):
            if col in lab.columns:
                vals = lab[col].astype(str).to_numpy()
                for v in sorted(set(vals) - {""}):
                    m = vals == v
                    if m.sum() >= 20:
                        cats.append((fam, f"{col}={v}" if fam == "code" else v, m))
    first_ch = np.array([w[:1] for w in words.text], dtype=object)
    last_ch = np.array([w[-1:] for w in words.text], dtype=object)
    cats.append(("delimiters", "opens a bracket", np.isin(first_ch, list(OPEN))))
    cats.append(("delimiters", "closes a bracket", np.isin(last_ch, list(CLOSE))))
    for n in (1, 2, 4):
        rep = repeated_words(words, n)
        cats += [("repetition", f"repeated {n}-word", rep), ("repetition", f"novel {n}-word", ~rep)]
    return [(f, c, m) for f, c, m in cats if m.any()]


def compare_words(ev_a, loss_a, ev_b, loss_b, labels_a=None, n_boot: int = 1000, seed: int = 0):
    """DataFrame of word-level categories: words, docs, gap (nats per word, A − B) and its 95% CI, each side's
    nats per word and bits per byte. ev_a / ev_b: the EvalSets the score files were made on (same documents)."""
    import pandas as pd

    from tokengap.analysis.stats import bootstrap_weights, category_means, cluster_strata, cluster_sums
    if [d["id"] for d in ev_a.docs] != [d["id"] for d in ev_b.docs] or \
            any(x["text"] != y["text"] for x, y in zip(ev_a.docs, ev_b.docs)):
        raise AnalysisError("A and B were scored on different documents: a word-level comparison needs the same texts")
    words = segment([d["text"] for d in ev_a.docs])
    wa, wb = word_losses(loss_a, ev_a, words), word_losses(loss_b, ev_b, words)
    first = None
    if labels_a is not None:
        tw = token_words(ev_a, words)
        first_tok = np.full(words.n, -1, np.int64)
        first_tok[tw[::-1]] = np.arange(ev_a.n_tokens)[::-1]  # the smallest token index of each word
        first_tok = np.where(first_tok < 0, 0, first_tok)
        first = labels_a.iloc[first_tok].reset_index(drop=True)
    domains = np.array([d.get("domain", "") for d in ev_a.docs], dtype=object)[words.doc]
    cats = word_categories(words, first, domains)
    gap = wa - wb
    uniq, cid = np.unique(words.doc, return_inverse=True)
    strata = cluster_strata(words.doc, domains.astype(str))
    w = bootstrap_weights(uniq.shape[0], n_boot, seed, strata)
    masks = [m for _, _, m in cats]
    cm = category_means(gap, cid, masks, n_boot, 0.05, seed, weights=w)
    vals = np.column_stack([wa, wb, words.nbytes.astype(np.float64)])
    sums, counts = cluster_sums(vals, cid, masks, uniq.shape[0])
    tot = sums.sum(1)  # (3, C)
    rows = []
    for j, (fam, cat, m) in enumerate(cats):
        rows.append({"family": fam, "category": cat, "n_words": int(cm.n_tokens[j]), "n_docs": int(cm.n_clusters[j]),
                     "gap": cm.mean[j], "lo": cm.lo[j], "hi": cm.hi[j], "nats_per_word_a": tot[0, j] / counts.sum(0)[j],
                     "nats_per_word_b": tot[1, j] / counts.sum(0)[j],
                     "bpb_a": tot[0, j] / (math.log(2) * tot[2, j]), "bpb_b": tot[1, j] / (math.log(2) * tot[2, j])})
    return pd.DataFrame(rows), {"n_words": words.n, "total_a": float(wa.sum()), "total_b": float(wb.sum()),
                                "token_total_a": float(loss_a.astype(np.float64).sum()),
                                "token_total_b": float(loss_b.astype(np.float64).sum())}


# ---- CLI ---------------------------------------------------------------------------------------------------------
def _evalset_of(meta: dict, eval_dir: str, tokenizer: Optional[str], flag: str = "--tokenizer"):
    """The EvalSet a score file was made on: its model's tokenizer (a Hugging Face one, or the corpus's), checked
    against the file's eval_hash."""
    from tokengap.analysis import hf
    from tokengap.evaluation.evalset import EvalSet, TextTokenizer
    if tokenizer:
        tok = TextTokenizer.from_file(tokenizer) if tokenizer.endswith(".json") else hf.tokenizer(tokenizer, flag)
    elif meta.get("arch") is None and meta.get("model") and not (Path(str(meta["model"])) / "model.safetensors").is_file():
        tok = hf.tokenizer(str(meta["model"]), f"the tokenizer of {meta.get('name')}")  # a Hugging Face model's own
    else:
        tok = None
    ev = EvalSet.from_corpus(eval_dir, tokenizer=tok)
    if meta.get("eval_tokens_sha256") and meta["eval_tokens_sha256"] != ev.eval_tokens_sha256:
        raise AnalysisError(f"{meta.get('name')}: its score file was not made on --eval {eval_dir} with that tokenizer "
                            "(pass --tokenizer-a / --tokenizer-b)")
    return ev


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, help="score file of model A (the baseline)")
    p.add_argument("--b", required=True, help="score file of model B")
    p.add_argument("--eval", required=True, type=eval_corpus, help="the corpus both were scored on (docs/eval.jsonl)")
    p.add_argument("--tokenizer-a", default=None, help="A's tokenizer (tokenizer.json or a Hugging Face id/folder); "
                   "default: its model's")
    p.add_argument("--tokenizer-b", default=None)
    p.add_argument("--labels-a", default=None, help="labels.parquet of A's tokenization (word classes, POS, code)")
    p.add_argument("--out", required=True, help="directory for words.csv and summary.json")
    p.add_argument("--n-boot", type=positive_int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the tables of another pair in --out")


def run(args: argparse.Namespace) -> int:
    from tokengap.analysis.labels import read_labels
    from tokengap.evaluation.scorefile import ScoreFileError, load_scores
    from tokengap.models.atomic import atomic_write_text
    try:
        sa, sb = load_scores(args.a), load_scores(args.b)
    except ScoreFileError as exc:
        raise AnalysisError(str(exc)) from None
    names = sa.meta.get("name", "A"), sb.meta.get("name", "B")
    check_output_dir("--out", args.out, ("words.csv", "summary.json"), "a word table",
                     lambda out: json_fields(out / "summary.json", "a", "b"), " vs ".join(names), args.overwrite)
    ev_a = _evalset_of(sa.meta, args.eval, args.tokenizer_a, "--tokenizer-a")
    ev_b = _evalset_of(sb.meta, args.eval, args.tokenizer_b, "--tokenizer-b")
    for s, ev, name in ((sa, ev_a, args.a), (sb, ev_b, args.b)):
        if s.loss.shape[0] != ev.n_tokens:
            raise AnalysisError(f"{name}: {s.loss.shape[0]} tokens, the eval set under its tokenizer has {ev.n_tokens}")
    labels = None
    if args.labels_a:
        labels, lmeta = read_labels(args.labels_a)
        if len(labels) != ev_a.n_tokens:
            raise AnalysisError(f"--labels-a {args.labels_a}: {len(labels)} rows, A has {ev_a.n_tokens} tokens")
    table, totals = compare_words(ev_a, sa.loss, ev_b, sb.loss, labels, args.n_boot, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "words.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "summary.json", json.dumps({"a": names[0], "b": names[1], **totals,
                                                        "gap": "nats per word, A - B: positive favours B"}, indent=2))
    print(f"word-level gap = loss({names[0]}) − loss({names[1]}) per word, {totals['n_words']:,} words")
    for r in table.itertuples():
        print(f"  {r.family:11s} {str(r.category)[:26]:26s} {r.n_words:8d} {r.gap:+8.4f} [{r.lo:+.4f}, {r.hi:+.4f}]  "
              f"bpb {r.bpb_a:.4f} / {r.bpb_b:.4f}")
    print(f"-> {out}/words.csv")
    return 0
