"""Delimiters: opening and closing, per type (paper.md, "Reproduction defaults").

Types: paren `()`, bracket `[]`, brace `{}`, angle `<>` (outside HTML: a `<` and `>` on one line around a
short non-space span, e.g. `<stdio.h>`, `vector<int>`; comparison operators are not delimiters), html (start
and end tags, from the HTML scanner; void and self-closing tags have no partner and are left out), latex_env
(`\\begin{..}` / `\\end{..}`), dollar (math `$` / `$$` in LaTeX, direction from the LaTeX scanner).

Each delimiter occurrence is a character span; the model token holding its first character gets the label.
Single-character delimiters inside an html tag or a `\\begin{..}` are part of that bigger delimiter and are
not counted again. A token holding several delimiters takes the first. `delim_lead`: the delimiter is the
token's first non-space character (the brief's "is, or starts with, the delimiter"; the filters and
figures use these); `delim_merged`: the token has other non-space characters too (e.g. `"});"`), reported
separately from pure delimiter tokens.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from tokengap.analysis.categories.markup import html_lex, latex_lex
from tokengap.analysis.categories.registry import DocView, labeler

DELIM_TYPES = ("paren", "bracket", "brace", "angle", "html", "latex_env", "dollar")
_CHARS = {"(": ("paren", "open"), ")": ("paren", "close"), "[": ("bracket", "open"), "]": ("bracket", "close"),
          "{": ("brace", "open"), "}": ("brace", "close")}
_SINGLE = re.compile(r"[()\[\]{}]")
_ANGLE = re.compile(r"(?<![<=\-])<(?=[^\s<>=])[^<>\n;()&|]{0,80}?(?<=[^\s<>=\-])>(?![>=])")
_ENV = re.compile(r"\\(begin|end)\s*\{[^{}\n]*\}")


def delimiter_spans(text: str, domain: str, html_domains: Sequence[str] = ("html",),
                    latex_domains: Sequence[str] = ("latex",)) -> list[tuple[int, int, str, str]]:
    """Every delimiter occurrence as (start, end, type, "open" | "close"), sorted by start."""
    big: list[tuple[int, int, str, str]] = []
    if domain in html_domains:
        big += [d for d in html_lex(text).delims if d[2] == "html"]
    if domain in latex_domains:
        big += list(latex_lex(text).delims)  # latex_env and dollar
    else:
        big += [(m.start(), m.end(), "latex_env", "open" if m.group(1) == "begin" else "close")
                for m in _ENV.finditer(text)]
    if domain not in html_domains:
        for m in _ANGLE.finditer(text):
            big += [(m.start(), m.start() + 1, "angle", "open"), (m.end() - 1, m.end(), "angle", "close")]
    covered = np.zeros(len(text) + 1, dtype=np.int64)  # +1 / -1 at the ends of multi-character delimiters
    for a, b, _, _ in big:
        if b - a > 1:
            covered[a] += 1
            covered[b] -= 1
    inside = np.cumsum(covered)[:-1] > 0 if len(text) else np.zeros(0, dtype=bool)
    singles = [(m.start(), m.end(), *_CHARS[m.group()]) for m in _SINGLE.finditer(text) if not inside[m.start()]]
    return sorted(big + singles)


# version: bump it with markup.html_lex / latex_lex too, whose delimiter scans this labeler reuses
# (2: unclosed `$` math now ends where TeX would end it)
@labeler("delimiters", columns=("delim_type", "delim_dir", "delim_lead", "delim_merged"), version=2)
def delimiters(doc: DocView, *, html_domains: Sequence[str] = ("html",), latex_domains: Sequence[str] = ("latex",)
               ) -> dict[str, np.ndarray]:
    """`delim_type` (paren / bracket / brace / angle / html / latex_env / dollar or ""), `delim_dir` (open /
    close or ""), `delim_lead` (the delimiter is the token's first non-space character), `delim_merged` (the
    token also holds other non-space characters)."""
    n = doc.n
    dtype, ddir = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    lead, merged = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    spans = delimiter_spans(doc.text, doc.domain, html_domains, latex_domains)
    if not spans or n == 0:
        return {"delim_type": dtype, "delim_dir": ddir, "delim_lead": lead, "delim_merged": merged}
    # the token holding character c: the last token starting at or before c, if it ends after c
    order = np.argsort(doc.offsets[:, 0], kind="stable")
    tok_starts = doc.offsets[order, 0]
    for a, b, kind, direction in spans:
        j = np.searchsorted(tok_starts, a, side="right") - 1
        if j < 0:
            continue
        t = int(order[j])
        s, e = int(doc.offsets[t, 0]), int(doc.offsets[t, 1])
        if not (s <= a < e) or dtype[t]:
            continue  # not inside a token (cannot happen with byte-level BPE), or the token already has one
        dtype[t], ddir[t] = kind, direction
        lead[t] = doc.anchors[t] == a
        piece = doc.text[s:e]
        before, after = piece[:a - s], piece[min(b, e) - s:]
        merged[t] = bool(before.strip() or after.strip())
    return {"delim_type": dtype, "delim_dir": ddir, "delim_lead": lead, "delim_merged": merged}
