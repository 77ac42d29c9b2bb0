"""Filter masks: the boolean token sets the training loop evaluates (`eval/filter/<name>` in its metrics).

The names are an interface; keep the set small (each costs one masked mean per evaluation). Defaults:
"novel" = not repeated at n = 4 (a 4-gram copy continuation, repetition.NOVEL_N); content / function words
use all pieces of a word (every model token of it); delimiters are tokens that are, or start with, the
delimiter (`delim_lead`), merged or not.
"""
from __future__ import annotations

import numpy as np

from tokengap.analysis.categories.families import Columns
from tokengap.analysis.categories.repetition import DEFAULT_NS, NOVEL_N


def filter_masks(labels, novel_n: int = NOVEL_N, ns=DEFAULT_NS) -> dict[str, np.ndarray]:
    """{name: (N,) bool} in a fixed order. Columns absent from `labels` give empty masks (same names always)."""
    c = labels if isinstance(labels, Columns) else Columns(labels)
    n = c.n

    def col_eq(col, value):
        return c.eq(col, value) if col in c else np.zeros(n, dtype=bool)

    rep = c.flag(f"rep_{novel_n}")
    lead = c.flag("delim_lead")
    masks: dict[str, np.ndarray] = {"all": np.ones(n, dtype=bool), "novel": ~rep}
    masks.update({f"repeated_{k}": c.flag(f"rep_{k}") for k in ns})
    masks.update({
        "content": col_eq("word_class", "content"),
        "function": col_eq("word_class", "function"),
        "content_novel": col_eq("word_class", "content") & ~rep,
        "function_novel": col_eq("word_class", "function") & ~rep,
        "pronoun": c.flag("pronoun"),
        "proper_noun": c.flag("proper_noun"),
        "open_delim": lead & col_eq("delim_dir", "open"),
        "close_delim": lead & col_eq("delim_dir", "close"),
    })
    for lang, col, kinds in (("py", "py_lex", ("identifier", "keyword", "string", "comment")),
                             ("html", "html_lex", ("text", "attr_value", "tag")),
                             ("latex", "latex_lex", ("command", "math", "text"))):
        for k in kinds:
            masks[f"{lang}_{k}"] = col_eq(col, k)
    return masks


def filter_names(novel_n: int = NOVEL_N, ns=DEFAULT_NS) -> tuple[str, ...]:
    """The names `filter_masks` returns (they do not depend on the data)."""
    import pandas as pd

    return tuple(filter_masks(pd.DataFrame({"ctx_pos": np.zeros(0, dtype=np.int32)}), novel_n, ns))
