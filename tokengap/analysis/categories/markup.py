"""HTML and LaTeX lexical categories (paper.md: HTML tag syntax / attribute value / text node; LaTeX command /
math / text), from small regular-expression scanners that paint a class onto every character.

The scanners also report the structural delimiters the delimiter labeler needs: HTML start and end tags,
and LaTeX math-mode `$` / `$$` with their direction (opening or closing), which only a scan can tell.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tokengap.analysis.categories.code import paint_to_tokens
from tokengap.analysis.categories.registry import DocView, labeler


@dataclass(frozen=True)
class Lexed:
    classes: np.ndarray  # (len(text),) int8 codes into the scanner's class names; read-only
    delims: tuple  # ((start, end, kind, "open" | "close"), ...) structural delimiters found by the scan


# ---- HTML -------------------------------------------------------------------------------------------------
HTML_CLASSES = ("", "text", "tag", "attr_value", "comment", "script", "other")
_H = {c: i for i, c in enumerate(HTML_CLASSES)}
VOID_ELEMENTS = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_HTML_TOKEN = re.compile(r"""(?P<comment><!--.*?(?:-->|\Z))
    |(?P<decl><[!?][^>]*>?)
    |(?P<tag></?(?P<name>[A-Za-z][\w:.-]*)(?:[^>"']|"[^"]*"|'[^']*')*>)""", re.S | re.X)
_HTML_ATTR = re.compile(r"""(?P<aname>[^\s=/>"']+)(?:\s*=\s*(?P<val>"[^"]*"|'[^']*'|[^\s>"']+))?""")


@functools.lru_cache(maxsize=4)
def html_lex(text: str) -> Lexed:
    """Classes: text (text nodes, entities included), tag (`<`, names, attribute names, `=`, `/>`, `>`),
    attr_value (with its quotes), comment (comments, doctype, processing instructions), script (raw content of
    <script> / <style>). Delimiters: ("html", open) for start tags that are neither void nor self-closing,
    ("html", close) for end tags."""
    cls = np.full(len(text), _H["text"], dtype=np.int8)
    delims = []
    pos = 0
    while True:
        m = _HTML_TOKEN.search(text, pos)
        if m is None:
            break
        a, b = m.span()
        if m.group("tag") is None:
            cls[a:b] = _H["comment"]
            pos = b
            continue
        cls[a:b] = _H["tag"]
        name, closing = m.group("name").lower(), text.startswith("</", a)
        body_start = m.end("name")
        for am in _HTML_ATTR.finditer(text, body_start, b - 1):
            if am.group("val") is not None:
                cls[am.start("val"):am.end("val")] = _H["attr_value"]
        self_closing = text[a:b - 1].rstrip().endswith("/")
        if closing:
            delims.append((a, b, "html", "close"))
        elif name not in VOID_ELEMENTS and not self_closing:
            delims.append((a, b, "html", "open"))
        pos = b
        if not closing and name in ("script", "style") and not self_closing:
            end = re.compile(rf"</{name}\s*>", re.I).search(text, b)
            stop = end.start() if end else len(text)
            cls[b:stop] = _H["script"]
            pos = stop
    cls.setflags(write=False)
    return Lexed(cls, tuple(delims))


@labeler("html", columns=("html_lex",), version=1)
def html_lexical(doc: DocView, *, domains: Sequence[str] = ("html",)) -> dict[str, np.ndarray]:
    """`html_lex`: text / tag / attr_value / comment / script / whitespace in HTML documents, "" elsewhere."""
    if doc.domain not in domains:
        return {"html_lex": np.full(doc.n, "", dtype=object)}
    return {"html_lex": paint_to_tokens(doc, html_lex(doc.text).classes, HTML_CLASSES)}


# ---- LaTeX ------------------------------------------------------------------------------------------------
LATEX_CLASSES = ("", "text", "command", "math", "comment", "syntax")
_L = {c: i for i, c in enumerate(LATEX_CLASSES)}
MATH_ENVS = frozenset(e + s for e in ("equation", "align", "alignat", "gather", "multline", "eqnarray", "flalign",
                                      "displaymath", "math") for s in ("", "*"))
# commands whose arguments are names or keys, not prose: their braced argument is part of the command
KEY_COMMANDS = frozenset("""begin end label ref eqref cref Cref autoref pageref cite citep citet citealp nocite
    usepackage documentclass RequirePackage input include includegraphics bibliography bibliographystyle
    newcommand renewcommand providecommand newenvironment renewenvironment url hypersetup
    setlength addtolength setcounter""".split())
# commands that never occur inside real math: where one follows an unclosed `$` / `$$`, the math has ended
# (macro code such as `\noindent$$...\else$$\fi` in .sty files would otherwise stay "math" to the end)
MATH_BREAKERS = frozenset("""par else fi or def gdef edef xdef let newcommand renewcommand providecommand
    newenvironment renewenvironment egroup endgroup makeatletter makeatother""".split())
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_LATEX_TOKEN = re.compile(r"""(?P<comment>%[^\n]*)
    |(?P<env>\\(?P<be>begin|end)\s*\{(?P<envname>[^{}\n]*)\})
    |(?P<mopen>\\\(|\\\[)
    |(?P<mclose>\\\)|\\\])
    |(?P<cmd>\\(?P<cname>[A-Za-z@]+)\*?|\\.)
    |(?P<dd>\$\$)
    |(?P<d>\$)
    |(?P<syn>[{}&~^_\#])""", re.X | re.S)
_KEY_ARG = re.compile(r"\s*(?:\[[^\]\n]*\]\s*)?\{[^{}]*\}")


@functools.lru_cache(maxsize=4)
def latex_lex(text: str) -> Lexed:
    """Classes: text, command (`\\name`, `\\begin{env}`, and the key arguments of \\label, \\cite, ...),
    math (everything in $...$, $$...$$, \\(...\\), \\[...\\] and math environments, delimiters included),
    comment (`% ...`), syntax (`{ } & ~ ^ _ #` in text mode). Delimiters: ("dollar", open/close) for each math
    `$` or `$$`, ("latex_env", open/close) for `\\begin{..}` / `\\end{..}`.

    An unclosed `$` / `$$` ends where TeX would not let math go on: at a blank line (TeX: "Missing $ inserted"),
    at a `}` closing the group the math was opened in, and at a command of MATH_BREAKERS (\\par, \\else, \\fi,
    \\def, ...); such an end has no closing delimiter."""
    cls = np.full(len(text), _L["text"], dtype=np.int8)
    delims = []
    mode = None  # None (text) or what opened math mode: "$", "$$", "\\(", "\\[", or an environment name
    depth, math_depth = 0, 0  # brace depth now, and where the current `$` math began
    pos = 0
    while True:
        m = _LATEX_TOKEN.search(text, pos)
        if mode in ("$", "$$"):  # a blank line before the next token ends dollar math
            blank = _BLANK_LINE.search(text, pos, m.start() if m else len(text))
            if blank is not None:
                cls[pos:blank.start()] = _L["math"]
                mode, pos = None, blank.start()
        if m is None:
            if mode is not None:
                cls[pos:] = _L["math"]
            break
        a, b = m.span()
        if mode in ("$", "$$") and ((m.group("syn") == "}" and depth <= math_depth) or
                                    (m.group("cmd") and m.group("cname") in MATH_BREAKERS)):
            cls[pos:a] = _L["math"]
            mode, pos = None, a
        if mode is not None:
            cls[pos:a] = _L["math"]
        kind = next(k for k in ("comment", "env", "mopen", "mclose", "cmd", "dd", "d", "syn") if m.group(k))
        if kind == "comment":
            cls[a:b] = _L["comment"]
        elif kind == "env":
            env, opening = m.group("envname").strip(), m.group("be") == "begin"
            cls[a:b] = _L["command"]
            delims.append((a, b, "latex_env", "open" if opening else "close"))
            if opening and mode is None and env in MATH_ENVS:
                mode = env
            elif not opening and mode == env:
                mode = None
        elif kind in ("mopen", "mclose"):
            cls[a:b] = _L["math"]
            if kind == "mopen" and mode is None:
                mode = m.group()
            elif kind == "mclose" and mode == {"\\)": "\\(", "\\]": "\\["}[m.group()]:
                mode = None
        elif kind in ("dd", "d"):
            cls[a:b] = _L["math"]
            tok = m.group()
            if mode is None:
                mode, math_depth = tok, depth
                delims.append((a, b, "dollar", "open"))
            elif mode == tok:
                mode = None
                delims.append((a, b, "dollar", "close"))
        elif kind == "cmd":
            if mode is not None:
                cls[a:b] = _L["math"]
            else:
                cls[a:b] = _L["command"]
                if m.group("cname") in KEY_COMMANDS:
                    arg = _KEY_ARG.match(text, b)
                    if arg:
                        cls[b:arg.end()] = _L["command"]
                        b = arg.end()
        else:  # syn
            cls[a:b] = _L["math"] if mode is not None else _L["syntax"]
            depth += {"{": 1, "}": -1}.get(m.group(), 0)
        pos = b
    cls.setflags(write=False)
    return Lexed(cls, tuple(delims))


@labeler("latex", columns=("latex_lex",), version=2)
def latex_lexical(doc: DocView, *, domains: Sequence[str] = ("latex",)) -> dict[str, np.ndarray]:
    """`latex_lex`: text / command / math / comment / syntax / whitespace in LaTeX documents, "" elsewhere."""
    if doc.domain not in domains:
        return {"latex_lex": np.full(doc.n, "", dtype=object)}
    return {"latex_lex": paint_to_tokens(doc, latex_lex(doc.text).classes, LATEX_CLASSES)}
