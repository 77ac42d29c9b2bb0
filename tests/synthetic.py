"""Synthetic results with known effects: an eval set, labels, score files and training curves.

For tests (planted-effect recovery, figure smoke tests) and for trying the figures without trained models.
Everything is generated from a seed; nothing here is a result. Prose comes from a small lexicon whose words
carry their PTB tag, so `LexiconTagger` tags it exactly (no spaCy needed).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Optional, Union

import numpy as np

from tokengap.evaluation.evalset import EvalSet, TextTokenizer

LEXICON = {
    "DT": ["the", "a", "this", "every"], "NN": ["cat", "river", "house", "theory", "engine", "garden", "letter"],
    "NNS": ["cats", "rivers", "ideas", "engines"], "NNP": ["Alice", "Paris", "Darwin"],
    "VBD": ["saw", "built", "found", "described"], "VBZ": ["runs", "holds", "seems"], "JJ": ["small", "bright",
    "ancient", "curious"], "RB": ["quickly", "rarely", "often"], "IN": ["on", "under", "with", "near"],
    "PRP": ["she", "he", "they"], "PRP$": ["her", "his", "their"], "CC": ["and", "but"], "MD": ["will", "can"],
    "EX": ["there"], "CD": ["three", "seven"],
}
WORD_TAG = {w: t for t, ws in LEXICON.items() for w in ws}
WORD_TAG.update({"There": "EX", ".": ".", ",": ","})
UPOS = {"NN": "NOUN", "NNS": "NOUN", "NNP": "PROPN", "VBD": "VERB", "VBZ": "VERB", "JJ": "ADJ", "RB": "ADV",
        "DT": "DET", "IN": "ADP", "PRP": "PRON", "PRP$": "PRON", "CC": "CCONJ", "MD": "AUX", "EX": "PRON",
        "CD": "NUM", ".": "PUNCT", ",": "PUNCT"}
_WORD = re.compile(r"\w+|[^\w\s]")


class LexiconTagger:
    """A deterministic Tagger for text made from LEXICON (unknown words are NN)."""

    def __call__(self, text: str):
        ms = list(_WORD.finditer(text))
        tags = [WORD_TAG.get(m.group(), WORD_TAG.get(m.group().lower(), "NN")) for m in ms]
        return (np.array([m.start() for m in ms], dtype=np.int64), np.array([m.end() for m in ms], dtype=np.int64),
                tags, [UPOS.get(t, "X") for t in tags])


def _sentence(rng) -> str:
    pick = lambda t: LEXICON[t][rng.integers(len(LEXICON[t]))]  # noqa: E731
    forms = [["DT", "JJ", "NN", "VBD", "IN", "DT", "NN"], ["PRP", "MD", "VBZ", "RB", ",", "CC", "PRP$", "NNS", "VBD"],
             ["EX", "VBZ", "CD", "JJ", "NNS", "IN", "NNP"], ["NNP", "VBD", "DT", "NN", "RB"]]
    words = [pick(t) if t in LEXICON else t for t in forms[rng.integers(len(forms))]]
    s = " ".join(words).replace(" ,", ",") + "."
    return s[0].upper() + s[1:]


def _python(rng) -> str:
    f = ["alpha", "beta", "gamma"][rng.integers(3)]
    return (f"def {f}(x, y=2):\n    \"\"\"Return a value.\"\"\"\n    # combine the inputs\n"
            f"    z = [x + {rng.integers(9)}, y * 3]\n    return {{'k': z[0]}}\n\n")


def _html(rng) -> str:
    return (f"<div class=\"box{rng.integers(9)}\"><p>Some <b>bold</b> text here.</p>"
            f"<img src=\"a.png\"/><a href=\"#top\">top</a></div>\n")


def _latex(rng) -> str:
    return (f"\\section{{Results}} We show $x^{rng.integers(9)} + y$ holds \\cite{{ref}}.\n"
            f"\\begin{{equation}}\n  a = \\frac{{b}}{{c}}\n\\end{{equation}}\n% note\n")


GENERATORS = {"books": lambda r: " ".join(_sentence(r) for _ in range(5)) + "\n\n",
              "news": lambda r: " ".join(_sentence(r) for _ in range(4)) + "\n\n",
              "python": _python, "html": _html, "latex": _latex}


def synthetic_docs(n_docs_per_domain: int = 8, units: int = 6, seed: int = 0,
                   domains=("books", "news", "python", "html", "latex")) -> list[dict]:
    rng = np.random.default_rng(seed)
    docs = []
    for d in domains:
        for i in range(n_docs_per_domain):
            text = "".join(GENERATORS[d](rng) for _ in range(units)).rstrip() + "\n"
            docs.append({"id": f"{d}/synthetic/{i:04d}", "domain": d, "source": f"synthetic-{d}", "text": text})
    return docs


def regex_tokenizer() -> TextTokenizer:
    """Pieces: a word with its leading space, a run of punctuation, a newline, other whitespace. Ids come from
    a fixed hash of the piece (deterministic across runs), 0 is EOT."""
    pat = re.compile(r" ?\w+| ?[^\w\s]+|\n|[ \t]+")

    def piece_id(s: str) -> int:
        return 1 + int.from_bytes(hashlib.sha256(s.encode()).digest()[:4], "little") % 50000

    def encode_batch(texts):
        out = []
        for t in texts:
            ms = list(pat.finditer(t))
            out.append(([piece_id(m.group()) for m in ms], [m.span() for m in ms]))
        return out

    return TextTokenizer(encode_batch, 0, hashlib.sha256(b"tokengap-synthetic-regex-v1").hexdigest(), "regex")


def synthetic_evalset(n_docs_per_domain: int = 8, units: int = 6, seed: int = 0) -> EvalSet:
    return EvalSet.from_docs(synthetic_docs(n_docs_per_domain, units, seed), regex_tokenizer())


# ---- planted losses -------------------------------------------------------------------------------------------------
PLANTED = {"content": 0.06, "function": 0.02, "open_delim": 0.05, "close_delim": 0.0, "rep_4": -0.05}
DOMAIN_SHIFT = {"python": 0.01, "html": 0.02}


def planted_losses(labels, arch: str, seed: int, effects: Optional[dict] = None, noise: float = 0.3):
    """loss (N,) float32 for `arch` with the planted hybrid advantage: the transformer's loss depends on the
    tokens only; the hybrid's is lower by `effects[...]` on each category (so gap = transformer − hybrid has
    those means); the recurrent model gets half the hybrid's advantage and loses 0.1 on repeated tokens."""
    effects = PLANTED if effects is None else effects
    n = len(labels)
    base_rng = np.random.default_rng(12345)
    base = 3.0 + base_rng.gamma(2.0, 0.5, n) - 0.2 * np.log1p(labels["ctx_pos"].to_numpy()) / 8
    adv = np.zeros(n)
    wc = labels["word_class"].astype(str).to_numpy() if "word_class" in labels else np.full(n, "")
    adv += effects.get("content", 0) * (wc == "content") + effects.get("function", 0) * (wc == "function")
    lead = labels["delim_lead"].to_numpy(bool) if "delim_lead" in labels else np.zeros(n, bool)
    ddir = labels["delim_dir"].astype(str).to_numpy() if "delim_dir" in labels else np.full(n, "")
    adv += effects.get("open_delim", 0) * (lead & (ddir == "open")) + effects.get("close_delim", 0) * (lead & (ddir == "close"))
    rep = labels["rep_4"].to_numpy(bool) if "rep_4" in labels else np.zeros(n, bool)
    adv += effects.get("rep_4", 0) * rep
    dom = labels["domain"].astype(str).to_numpy()
    for d, s in DOMAIN_SHIFT.items():
        adv += s * (dom == d)
    rng = np.random.default_rng(1000 + seed + 101 * {"transformer": 0, "hybrid": 1, "recurrent": 2}.get(arch, 3))
    eps = rng.normal(0, noise, n)
    if arch == "transformer":
        loss = base + eps
    elif arch == "hybrid":
        loss = base - adv + eps
    else:
        loss = base - 0.5 * adv + 0.1 * rep + eps
    return np.maximum(loss, 0.01).astype(np.float32)


def write_synthetic_results(results: Union[str, Path], archs=("transformer", "hybrid", "recurrent"), seeds=(0, 1),
                            n_docs_per_domain: int = 8, units: int = 6, context_len: int = 256,
                            curves: bool = True, seed: int = 0) -> EvalSet:
    """A complete results/ tree (labels.parquet, filters.npz, scores/<arch>-s<seed>.npz, curves/*.jsonl)."""
    from tokengap.analysis.categories.context import logprob_from_counts, unigram_counts
    from tokengap.analysis.labels import run_labels
    from tokengap.evaluation.scorefile import save_scores

    results = Path(results)
    ev = synthetic_evalset(n_docs_per_domain, units, seed)
    table = logprob_from_counts(unigram_counts(ev.tokens, int(ev.tokens.max()) + 1))
    resources = {"tagger": LexiconTagger(), "unigram_logprob": table}
    prov = {"tagger": {"model": "synthetic-lexicon"}, "unigram_logprob": {"source": "eval set"}}
    run_labels(ev, context_len, results / "labels.parquet", results / "filters.npz", resources=resources, prov=prov,
               progress=False)
    from tokengap.analysis.labels import read_labels
    labels, _ = read_labels(results / "labels.parquet")
    for arch in archs:
        for s in seeds:
            loss = planted_losses(labels, arch, s)
            meta = {"name": arch, "step": 1000, "tokenizer_sha256": ev.tokenizer_sha256, "eval_hash": ev.eval_hash,
                    "context_len": context_len, "synthetic": True}
            save_scores(results / "scores" / f"{arch}-s{s}.npz", loss, np.zeros(len(loss), bool), meta)
    if curves:
        (results / "curves").mkdir(parents=True, exist_ok=True)
        for arch in archs:
            for s in seeds:
                write_synthetic_curve(results / "curves" / f"{arch}-s{s}.jsonl", arch, s)
    return ev


def write_synthetic_curve(path: Path, arch: str, seed: int, steps=(200, 400, 800, 1600, 3200)) -> None:
    rng = np.random.default_rng(seed + {"transformer": 0, "hybrid": 1, "recurrent": 2}.get(arch, 3) * 7)
    adv = {"transformer": 0.0, "hybrid": 0.05, "recurrent": 0.03}.get(arch, 0.0)
    rep_pen = {"recurrent": 0.15}.get(arch, 0.0)
    lines = []
    for step in steps:
        base = 3.0 + 4.0 / np.sqrt(step / 100)
        for annealed in (False, True):
            a = -0.1 if annealed else 0.0
            row = {"kind": "eval", "step": step, "tokens": step * 65536, "annealed": annealed,
                   "eval/all": base + a + rng.normal(0, .005),
                   "eval/filter/content_novel": base + 1.5 + a - adv + rng.normal(0, .005),
                   "eval/filter/repeated_4": base - 2.0 + a + rep_pen + rng.normal(0, .005),
                   "eval/filter/close_delim": base - 0.5 + a - adv / 5 + rng.normal(0, .005)}
            lines.append(json.dumps(row, sort_keys=True))
        lines.append(json.dumps({"kind": "train", "step": step, "loss": base + 0.1}))
    path.write_text("\n".join(lines) + "\n")
