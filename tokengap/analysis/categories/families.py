"""Families: named sets of tokens built from the label columns, the rows of every table and figure.

A family turns the labels table (one row per eval token) into an ordered list of `Category(name, mask,
attrs)`; `attrs` become columns of the result table (e.g. n=4, kind="repeated"), so plots select rows by
value, never by parsing names. Families are pure functions of the labels and of `FamilyParams`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np

from tokengap.analysis.categories.pos import PTB_COARSE
from tokengap.analysis.categories.repetition import DEFAULT_NS, NOVEL_N

DOMAIN_ORDER = ("books", "encyclopedic", "technical", "news", "python", "c", "html", "latex")
DOMAIN_GROUPS = {"books": "prose", "encyclopedic": "prose", "technical": "prose", "news": "prose",
                 "python": "code", "c": "code", "html": "markup", "latex": "markup"}
WORD_CLASSES = ("content", "function", "punct", "num", "other")
COPY_BINS = (1, 8, 32, 128, 512, 2048, 1 << 31)  # copy distance bins [lo, hi)
POSITION_BINS = (0, 16, 64, 256, 1024, 1 << 31)


@dataclass(frozen=True)
class FamilyParams:
    novel_n: int = NOVEL_N  # "novel" = not repeated at this n (repetition.py)
    ns: tuple = DEFAULT_NS
    copy_bins: tuple = COPY_BINS
    position_bins: tuple = POSITION_BINS
    min_tokens: int = 1  # categories with fewer tokens are left out


@dataclass(frozen=True)
class Category:
    name: str
    mask: np.ndarray  # (N,) bool
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    build: Callable  # (Columns, FamilyParams) -> list[Category]


FAMILIES: dict[str, Family] = {}


def family(name: str, title: str):
    def register(fn):
        FAMILIES[name] = Family(name, title, fn)
        return fn
    return register


class Columns:
    """Fast access to label columns: `eq(col, value)` and `groups(col)` use category codes, not string compares."""

    def __init__(self, labels):
        self.df = labels
        self.n = len(labels)
        self._codes: dict = {}

    def __contains__(self, col: str) -> bool:
        return col in self.df.columns

    def array(self, col: str) -> np.ndarray:
        return self.df[col].to_numpy()

    def _coded(self, col: str):
        if col not in self._codes:
            import pandas as pd

            s = self.df[col]
            cat = s.cat if isinstance(s.dtype, pd.CategoricalDtype) else s.astype("category").cat
            self._codes[col] = (cat.codes.to_numpy(), list(cat.categories))
        return self._codes[col]

    def groups(self, col: str, order: Iterable = ()) -> dict:
        """{value: mask} for every non-empty value of a categorical column ("" left out), `order` first."""
        codes, cats = self._coded(col)
        counts = np.bincount(codes[codes >= 0], minlength=len(cats))
        present = [c for c, k in zip(cats, counts) if k > 0 and c != ""]
        ordered = [c for c in order if c in present] + sorted(c for c in present if c not in set(order))
        return {c: codes == cats.index(c) for c in ordered}

    def eq(self, col: str, value) -> np.ndarray:
        codes, cats = self._coded(col)
        return codes == cats.index(value) if value in cats else np.zeros(self.n, dtype=bool)

    def isin(self, col: str, values: Iterable) -> np.ndarray:
        codes, cats = self._coded(col)
        idx = [cats.index(v) for v in values if v in cats]
        return np.isin(codes, idx)

    def flag(self, col: str) -> np.ndarray:
        return self.df[col].to_numpy(dtype=bool) if col in self.df.columns else np.zeros(self.n, dtype=bool)

    def domain_group(self) -> dict:
        groups: dict[str, np.ndarray] = {}
        for d, m in self.groups("domain", DOMAIN_ORDER).items():
            g = DOMAIN_GROUPS.get(d, "other")
            groups[g] = groups[g] | m if g in groups else m
        return groups


# ---- the families -----------------------------------------------------------------------------------------
@family("overall", "All tokens")
def _overall(c: Columns, p: FamilyParams):
    return [Category("all", np.ones(c.n, dtype=bool))]


@family("domain", "Gap by domain")
def _domain(c: Columns, p: FamilyParams):
    return [Category(d, m, {"domain": d, "group": DOMAIN_GROUPS.get(d, "other")})
            for d, m in c.groups("domain", DOMAIN_ORDER).items()]


@family("word_class", "Content vs function words (prose, POS-tagged)")
def _word_class(c: Columns, p: FamilyParams):
    if "word_class" not in c:
        return []
    first = c.flag("word_initial")
    novel = ~c.flag(f"rep_{p.novel_n}")
    out = []
    for cls, m in c.groups("word_class", WORD_CLASSES).items():
        out += [Category(cls, m, {"class": cls, "pieces": "all", "subset": "all"}),
                Category(f"{cls} (first piece)", m & first, {"class": cls, "pieces": "first", "subset": "all"}),
                Category(f"{cls} (novel)", m & novel, {"class": cls, "pieces": "all", "subset": "novel"})]
    return out


@family("word_class_domain", "Content vs function words by domain")
def _word_class_domain(c: Columns, p: FamilyParams):
    if "word_class" not in c:
        return []
    out = []
    for d, dm in c.groups("domain", DOMAIN_ORDER).items():
        for cls in ("content", "function"):
            out.append(Category(f"{d}: {cls}", dm & c.eq("word_class", cls), {"domain": d, "class": cls}))
    return out


@family("pos_class", "Coarse part of speech")
def _pos_class(c: Columns, p: FamilyParams):
    if "pos_class" not in c:
        return []
    order = list(dict.fromkeys(PTB_COARSE.values()))
    return [Category(k, m, {"pos_class": k}) for k, m in c.groups("pos_class", order).items()]


@family("ptb", "Penn Treebank tag")
def _ptb(c: Columns, p: FamilyParams):
    if "ptb" not in c:
        return []
    first = c.flag("word_initial")
    out = []
    for tag, m in c.groups("ptb").items():
        out += [Category(tag, m, {"tag": tag, "coarse": PTB_COARSE.get(tag, "other"), "pieces": "all"}),
                Category(f"{tag} (first piece)", m & first,
                         {"tag": tag, "coarse": PTB_COARSE.get(tag, "other"), "pieces": "first"})]
    return out


@family("reference", "Pronouns and proper nouns")
def _reference(c: Columns, p: FamilyParams):
    novel = ~c.flag(f"rep_{p.novel_n}")
    out = []
    for col in ("pronoun", "proper_noun"):
        if col in c:
            m = c.flag(col)
            out += [Category(col, m, {"kind": col, "subset": "all"}),
                    Category(f"{col} (novel)", m & novel, {"kind": col, "subset": "novel"})]
    return out


@family("code", "Code and markup lexical categories")
def _code(c: Columns, p: FamilyParams):
    out = []
    for lang, col in (("python", "py_lex"), ("html", "html_lex"), ("latex", "latex_lex")):
        if col in c:
            out += [Category(f"{lang}: {k}", m, {"language": lang, "lex": k}) for k, m in c.groups(col).items()]
    return out


@family("repetition", "Repeated vs novel tokens by n")
def _repetition(c: Columns, p: FamilyParams):
    out = []
    for n in p.ns:
        if f"rep_{n}" in c:
            r = c.flag(f"rep_{n}")
            out += [Category(f"repeated_{n}", r, {"n": n, "kind": "repeated"}),
                    Category(f"novel_{n}", ~r, {"n": n, "kind": "novel"})]
    return out


@family("copy_distance", "Repeated tokens by copy distance")
def _copy_distance(c: Columns, p: FamilyParams):
    if "copy_dist" not in c:
        return []
    d = c.array("copy_dist")
    return [Category(f"dist {lo}-{hi - 1}" if hi < 1 << 30 else f"dist >={lo}", (d >= lo) & (d < hi),
                     {"lo": lo, "hi": hi, "n": p.novel_n}) for lo, hi in zip(p.copy_bins[:-1], p.copy_bins[1:])]


@family("delimiters", "Opening vs closing delimiters by type")
def _delimiters(c: Columns, p: FamilyParams):
    """Forms: "lead" = the token is, or starts with, the delimiter (the default everywhere); "pure" = the token
    is only the delimiter; "merged" = starts with it and has more (e.g. `"});"`); "inside" = the delimiter is
    not the token's first non-space character (e.g. `"><` in HTML), left out of "lead"."""
    if "delim_type" not in c:
        return []
    lead, merged = c.flag("delim_lead"), c.flag("delim_merged")
    out = []
    for kind, km in c.groups("delim_type").items():
        for direction in ("open", "close"):
            m = km & c.eq("delim_dir", direction)
            for form, fm in (("lead", m & lead), ("pure", m & lead & ~merged), ("merged", m & lead & merged),
                             ("inside", m & ~lead)):
                out.append(Category(f"{kind} {direction}" + ("" if form == "lead" else f" ({form})"), fm,
                                    {"type": kind, "dir": direction, "form": form}))
    return out


@family("delimiters_domain", "Opening vs closing delimiters by domain group")
def _delimiters_domain(c: Columns, p: FamilyParams):
    if "delim_type" not in c:
        return []
    lead = c.flag("delim_lead")
    out = []
    for g, gm in c.domain_group().items():
        for direction in ("open", "close"):
            out.append(Category(f"{g}: {direction}", gm & lead & c.eq("delim_dir", direction),
                                {"group": g, "dir": direction, "type": "all"}))
            for kind, km in c.groups("delim_type").items():
                out.append(Category(f"{g}: {kind} {direction}", gm & km & lead & c.eq("delim_dir", direction),
                                    {"group": g, "dir": direction, "type": kind}))
    return out


@family("position", "Position in the context window")
def _position(c: Columns, p: FamilyParams):
    pos = c.array("ctx_pos")
    return [Category(f"pos {lo}-{hi - 1}" if hi < 1 << 30 else f"pos >={lo}", (pos >= lo) & (pos < hi),
                     {"lo": lo, "hi": hi}) for lo, hi in zip(p.position_bins[:-1], p.position_bins[1:])]


@family("frequency", "Unigram frequency (quintiles of the eval tokens)")
def _frequency(c: Columns, p: FamilyParams):
    if "log_freq" not in c:
        return []
    f = c.array("log_freq").astype(np.float64)
    if not np.isfinite(f).any():
        return []
    edges = np.quantile(f[np.isfinite(f)], [0, .2, .4, .6, .8, 1])
    q = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, 4)
    return [Category(f"Q{i + 1}", np.isfinite(f) & (q == i), {"quintile": i + 1, "lo": float(edges[i]),
                                                               "hi": float(edges[i + 1])}) for i in range(5)]


def build_categories(labels, families: Optional[Iterable[str]] = None, params: FamilyParams = FamilyParams()
                     ) -> list[tuple[str, Category]]:
    """[(family name, Category)] for the named families (default: all), leaving out near-empty categories."""
    c = labels if isinstance(labels, Columns) else Columns(labels)
    out = []
    for name in (families if families is not None else FAMILIES):
        for cat in FAMILIES[name].build(c, params):
            if int(cat.mask.sum()) >= params.min_tokens:
                out.append((name, cat))
    return out
