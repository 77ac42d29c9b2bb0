"""How much of each evaluation document also occurs in the training split (a leakage audit).

    python -m scripts.eval_overlap [--corpus build/corpus/small] [--out results/eval_overlap.json]

Per eval document: the fraction of its word 13-grams that occur anywhere in the training split (the measure the
corpus builder uses), and whether another chunk of the same source file is in the training split (the builder
splits long files into chunks `<file>/0000, /0001, ...` before holding out eval documents). Writes a small JSON
keyed by document index with the eval set's hash, which `python -m tokengap.analysis claims` uses to recompute the
headline gaps without the overlapping documents.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


from tokengap.evaluation.evalset import EvalSet, read_jsonl
from tokengap.models.atomic import atomic_write_text
from tokengap.train.data.split import WORD, NgramIndex, gram_hashes, contains


def file_of(doc_id: str) -> str:
    """`html/pandas-doc-html/.../pivot_table.html/0000` -> the id without its chunk number."""
    head, _, tail = doc_id.rpartition("/")
    return head if tail.isdigit() else doc_id


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="build/corpus/small")
    ap.add_argument("--out", default="results/eval_overlap.json")
    args = ap.parse_args()
    corpus = Path(args.corpus)
    ev_docs = read_jsonl(corpus / "docs" / "eval.jsonl")
    index = NgramIndex(ev_docs)
    seen, train_files = [], set()
    with open(corpus / "docs" / "train.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            train_files.add(file_of(d["id"]))
            _, hashes = index.overlap(d["text"])  # the eval 13-grams this training document contains
            if len(hashes):
                seen.append(np.unique(hashes))
    seen = np.unique(np.concatenate(seen)) if seen else np.zeros(0, dtype=np.uint64)
    rows = {}
    for i, d in enumerate(ev_docs):
        words = WORD.findall(d["text"].lower())
        ids = np.fromiter((index.vocab.get(w, 0) for w in words), np.uint64, len(words))
        grams = gram_hashes(ids)
        frac = float(contains(seen, grams).mean()) if len(grams) else 0.0
        rows[str(i)] = {"id": d["id"], "domain": d["domain"], "ngram13_in_train": round(frac, 4),
                        "sibling_in_train": file_of(d["id"]) in train_files}
    ev = EvalSet.from_corpus(corpus)
    out = {"eval_hash": ev.eval_hash, "n_docs": len(ev_docs), "docs": rows}
    atomic_write_text(args.out, json.dumps(out, indent=1))
    fr = np.array([r["ngram13_in_train"] for r in rows.values()])
    sib = sum(r["sibling_in_train"] for r in rows.values())
    print(f"{len(rows)} eval docs: {int((fr >= 0.5).sum())} with >= 50% of their 13-grams in train, "
          f"{int((fr >= 0.9).sum())} with >= 90%; {sib} with a chunk of the same file in train -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
