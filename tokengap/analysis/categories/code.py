"""Python lexical categories from the standard library's `tokenize` (paper.md: identifier / keyword / string /
comment / number / operator), painted onto characters, then read at each model token's anchor.

Eval documents may be fragments or not valid Python: after an error (e.g. a chunk that starts inside a method
and then dedents to a `def`), tokenizing restarts at the failing line itself, or at the next line when the
failure is on the first line of a pass; an unterminated triple-quoted string runs to the end of the document.
"""
from __future__ import annotations

import functools
import io
import keyword
import re
import tokenize
from typing import Sequence

import numpy as np

from tokengap.analysis.categories.registry import DocView, labeler

PY_CLASSES = ("", "identifier", "keyword", "string", "comment", "number", "operator", "other")
_CODE = {c: i for i, c in enumerate(PY_CLASSES)}
_SKIP = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def _kind(tok: tokenize.TokenInfo) -> str:
    if tok.type == tokenize.NAME:
        return "keyword" if keyword.iskeyword(tok.string) else "identifier"
    return {tokenize.STRING: "string", tokenize.COMMENT: "comment", tokenize.NUMBER: "number",
            tokenize.OP: "operator"}.get(tok.type, "other")


@functools.lru_cache(maxsize=4)
def python_char_classes(text: str, max_restarts: int = 2000) -> np.ndarray:
    """(len(text),) int8 codes into PY_CLASSES for every character (0 = whitespace / none). Read-only."""
    cls = np.zeros(len(text), dtype=np.int8)
    line_starts = np.array([0] + [m.end() for m in re.finditer("\n", text)], dtype=np.int64)
    line = 0  # 0-based line where the current tokenize pass starts
    for _ in range(max_restarts):
        base = int(line_starts[line]) if line < len(line_starts) else len(text)
        if base >= len(text):
            break
        try:
            for tok in tokenize.generate_tokens(io.StringIO(text[base:]).readline):
                if tok.type in _SKIP:
                    continue
                (r0, c0), (r1, c1) = tok.start, tok.end
                a = int(line_starts[line + r0 - 1]) + c0
                b = int(line_starts[line + r1 - 1]) + c1
                cls[a:b] = _CODE[_kind(tok)]
            break
        except tokenize.TokenError as exc:
            msg, (row, col) = exc.args
            if "string" in msg:  # unterminated triple-quoted string: a string to the end
                cls[int(line_starts[line + row - 1]) + col:] = _CODE["string"]
            break
        except (SyntaxError, ValueError) as exc:  # IndentationError & co.: restart at the failing line
            row = getattr(exc, "lineno", None) or 1
            line = line + row - 1 if row > 1 else line + 1  # (a failure on a pass's first line: skip it)
    cls.setflags(write=False)
    return cls


def paint_to_tokens(doc: DocView, char_classes: np.ndarray, names: Sequence[str],
                    space: str = "whitespace") -> np.ndarray:
    """(n,) object array: the class of each token's anchor character; `space` for all-space tokens."""
    names = np.asarray(names, dtype=object)
    out = np.full(doc.n, space, dtype=object)
    ok = doc.anchors >= 0
    out[ok] = names[char_classes[doc.anchors[ok]]]
    return out


@labeler("python", columns=("py_lex",), version=2)
def python_lexical(doc: DocView, *, domains: Sequence[str] = ("python",)) -> dict[str, np.ndarray]:
    """`py_lex`: identifier / keyword / string / comment / number / operator / other / whitespace for
    documents of a Python domain, "" elsewhere. A model token takes the class of its first non-space
    character (so a merged piece like `")` counts as a string)."""
    if doc.domain not in domains:
        return {"py_lex": np.full(doc.n, "", dtype=object)}
    lab = paint_to_tokens(doc, python_char_classes(doc.text), PY_CLASSES)
    lab[lab == ""] = "other"  # a non-space character no tokenize token covers (e.g. a line continuation)
    return {"py_lex": lab}
