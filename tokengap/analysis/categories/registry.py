"""The category registry: every token category is a small pure function of one document.

A *labeler* takes a `DocView` (one evaluation document: its text, its model tokens with character offsets, its
domain, and where each token sits in its scoring window) and returns `{column: (n,) array}`, one label per
token. It is registered once with `@labeler(...)`, which records the columns it writes, a version (bump it when
the output changes: cached labels are recomputed), the resources it needs injected (e.g. `tagger` for POS,
`unigram_logprob` for frequency) and its keyword-only parameters with their defaults (so every default of the
study is a parameter, and the cache key knows its value).

    @labeler("repetition", columns=("rep_1", ...), version=1)
    def repetition(doc: DocView, *, ns=(1, 2, 4, 8, 16)) -> dict[str, np.ndarray]: ...

`label_document(doc)` runs every registered labeler on one document; `tokengap/analysis/labels.py` runs them over a
whole EvalSet and writes labels.parquet.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

# Characters str.isspace() calls whitespace (all of them, so anchors agree with Python's own notion).
_SPACE_CODEPOINTS = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def _anchors(text: str, offsets: np.ndarray) -> np.ndarray:
    """(n,) int64: index of the first non-space character of each token, -1 for all-space or empty tokens."""
    n_chars = len(text)
    if offsets.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if n_chars == 0:
        return np.full(offsets.shape[0], -1, dtype=np.int64)
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    idx = np.where(np.isin(cp, _SPACE_CODEPOINTS), n_chars, np.arange(n_chars))
    nxt = np.append(np.minimum.accumulate(idx[::-1])[::-1], n_chars)  # next non-space at or after i
    start = np.clip(offsets[:, 0], 0, n_chars)
    a = nxt[start].astype(np.int64)
    a[a >= offsets[:, 1]] = -1
    return a


@dataclass(frozen=True, eq=False)
class DocView:
    """One evaluation document as the labelers see it.

    text: the document; token_ids: (n,) int; offsets: (n, 2) int [start, end) character offsets into text;
    ctx_pos: (n,) position of each token in its scoring window; window_id: (n,) id of that window ("earlier in
    the same context" = earlier with the same window_id; docs/formats.md, "Contexts"). Both default to one
    window holding the whole document. `anchors` (derived): (n,) first non-space character of each token, -1
    for tokens that are only whitespace: a token belongs to the word / lexical unit holding its anchor."""
    text: str
    token_ids: np.ndarray
    offsets: np.ndarray
    domain: str = ""
    source: str = ""
    ctx_pos: Optional[np.ndarray] = None
    window_id: Optional[np.ndarray] = None
    anchors: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        ids = np.asarray(self.token_ids, dtype=np.int64).reshape(-1)
        n = ids.shape[0]
        offs = np.asarray(self.offsets, dtype=np.int64).reshape(n, 2)
        pos = np.arange(n, dtype=np.int64) if self.ctx_pos is None else np.asarray(self.ctx_pos, dtype=np.int64)
        win = np.zeros(n, dtype=np.int64) if self.window_id is None else np.asarray(self.window_id, dtype=np.int64)
        if pos.shape != (n,) or win.shape != (n,):
            raise ValueError(f"ctx_pos {pos.shape} / window_id {win.shape} do not match {n} tokens")
        for k, v in (("token_ids", ids), ("offsets", offs), ("ctx_pos", pos), ("window_id", win),
                     ("anchors", _anchors(self.text, offs))):
            object.__setattr__(self, k, v)

    @property
    def n(self) -> int:
        return int(self.token_ids.shape[0])

    def token_text(self, i: int) -> str:
        return self.text[self.offsets[i, 0]:self.offsets[i, 1]]

    @classmethod
    def from_pieces(cls, pieces: Sequence[str], domain: str = "", source: str = "",
                    context_len: Optional[int] = None, vocab: Optional[dict] = None) -> "DocView":
        """A document made of the given token strings (for tests and examples): text = "".join(pieces), token
        ids from `vocab` (a dict, extended in place) or by first appearance."""
        vocab = {} if vocab is None else vocab
        ids = [vocab.setdefault(p, len(vocab)) for p in pieces]
        ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
        offsets = np.stack([ends - np.array([len(p) for p in pieces], dtype=np.int64), ends], axis=1) \
            if pieces else np.zeros((0, 2), dtype=np.int64)
        n = len(pieces)
        pos = win = None
        if context_len:
            pos, win = np.arange(n) % context_len, np.arange(n) // context_len
        return cls("".join(pieces), np.array(ids, dtype=np.int64), offsets, domain, source, pos, win)


@dataclass(frozen=True)
class Labeler:
    name: str
    fn: Callable[..., dict]
    columns_fn: Callable[..., tuple[str, ...]]  # params -> the columns written with those params
    version: int
    needs: tuple[str, ...]  # resources injected by keyword (built once per run, e.g. a POS tagger)
    params: dict  # keyword-only parameters and their defaults
    doc: str

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns written with the default parameters."""
        return self.columns_fn(**self.params)

    def columns_for(self, **params) -> tuple[str, ...]:
        return tuple(self.columns_fn(**{**self.params, **params}))

    def __call__(self, doc: DocView, resources: Optional[Mapping[str, Any]] = None, **params) -> dict:
        resources = resources or {}
        missing = [r for r in self.needs if r not in resources]
        if missing:
            raise KeyError(f"labeler {self.name!r} needs {missing}")
        unknown = set(params) - set(self.params)
        if unknown:
            raise TypeError(f"labeler {self.name!r} has no parameter(s) {sorted(unknown)}")
        out = self.fn(doc, **{r: resources[r] for r in self.needs}, **params)
        declared = self.columns_for(**params)
        if set(out) != set(declared):
            raise ValueError(f"labeler {self.name!r} returned {sorted(out)}, declared {sorted(declared)}")
        for k, v in out.items():
            if np.shape(v) != (doc.n,):
                raise ValueError(f"labeler {self.name!r} column {k!r} has shape {np.shape(v)}, expected ({doc.n},)")
        return out

    def fingerprint(self, params: Optional[Mapping[str, Any]] = None) -> dict:
        """What the cached output of this labeler depends on (besides the eval set and the resources)."""
        p = {**self.params, **(params or {})}
        return {"version": self.version, "columns": list(self.columns_for(**p)),
                "params": {k: _jsonable(v) for k, v in sorted(p.items())}}


def _jsonable(v):
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


REGISTRY: dict[str, Labeler] = {}


def labeler(name: str, columns: Union[Sequence[str], Callable[..., Sequence[str]]], version: int = 1,
            needs: Sequence[str] = ()):
    """Register `fn(doc, <needs>..., *, <params>=default) -> {column: (n,) array}` under `name`.

    columns: the column names, or a function of the keyword parameters returning them (for labelers whose
    columns depend on a parameter, e.g. one column per n-gram length)."""

    def register(fn):
        sig = inspect.signature(fn)
        params = {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}
        if any(v is inspect.Parameter.empty for v in params.values()):
            raise TypeError(f"labeler {name!r}: every keyword-only parameter needs a default")
        if name in REGISTRY:
            raise ValueError(f"labeler {name!r} registered twice")
        columns_fn = columns if callable(columns) else (lambda _cols=tuple(columns), **_: _cols)
        lab = Labeler(name, fn, lambda **p: tuple(columns_fn(**p)), version, tuple(needs), params,
                      inspect.getdoc(fn) or "")
        clash = {c for other in REGISTRY.values() for c in other.columns} & set(lab.columns)
        if clash:
            raise ValueError(f"labeler {name!r}: column(s) {sorted(clash)} already written by another labeler")
        REGISTRY[name] = lab
        return fn

    return register


def label_document(doc: DocView, names: Optional[Iterable[str]] = None,
                   resources: Optional[Mapping[str, Any]] = None,
                   params: Optional[Mapping[str, Mapping[str, Any]]] = None) -> dict[str, np.ndarray]:
    """Run the named labelers (default: all registered) on one document; params: {labeler: {param: value}}."""
    params = params or {}
    out: dict[str, np.ndarray] = {}
    for name in (names if names is not None else REGISTRY):
        out.update(REGISTRY[name](doc, resources, **params.get(name, {})))
    return out


# ---- helpers shared by labelers -----------------------------------------------------------------------
def label_by_spans(anchors: np.ndarray, starts: np.ndarray, ends: np.ndarray, labels: Sequence,
                   default: Any = "") -> np.ndarray:
    """(n,) object array: each token takes the label of the span [start, end) holding its anchor, else default.

    Spans must be sorted by start and must not overlap."""
    out = np.full(anchors.shape[0], default, dtype=object)
    if len(starts) == 0 or anchors.shape[0] == 0:
        return out
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    labels = np.asarray(labels, dtype=object)
    i = np.searchsorted(starts, anchors, side="right") - 1
    ok = (anchors >= 0) & (i >= 0)
    ok[ok] &= anchors[ok] < ends[i[ok]]
    out[ok] = labels[i[ok]]
    return out

