"""Filtered token losses inside anyone's training loop: the library's public API (docs/library.md).

    from tokengap.analysis.inloop import FilteredEval
    fe = FilteredEval.build(texts, tokenizer, context_len=1024)   # labelled once, cached on disk
    res = fe.evaluate(model)                                      # any causal LM
    res.loss["filter/content_novel"], res.tokens["filter/content_novel"], res.flat("tokengap/")

`build` tokenizes the text with the model's tokenizer (ours, any Hugging Face fast tokenizer, a `tokenizers` JSON
file), labels every token with the category registry (spaCy, repetition, delimiters, ...) and keeps the boolean
masks of the chosen filters (tokengap/analysis/categories/filters.py); the labels are cached under `cache_dir` by
the eval set's hash and the context length. `evaluate` scores every token once in windows of `context_len`
(tokengap/evaluation/scoring.py, as `python -m tokengap.analysis score` and our training loop do) and averages the
per-token loss under each mask with the same function as our loop (`masked_means`), so the numbers are the loop's
for the same model and masks. The Hugging Face Trainer callback: tokengap/analysis/hf_callback.py.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from tokengap.evaluation.evalset import EvalSet, TextTokenizer
from tokengap.evaluation.scoring import masked_means, score, scorer_for

# The default set (issue: what the study watches while a model trains): every token, content words that are not
# a 4-gram copy, function words, tokens that continue a copied 4- / 8-gram, opening and closing delimiters; and
# each domain. Any name of `filter_names()` can be chosen.
DEFAULT_FILTERS = ("content_novel", "function", "repeated_4", "repeated_8", "open_delim", "close_delim")
# A filter (or domain) of the in-loop set must hold at least this many tokens. Per-token losses spread 2.9 nats
# (sd over the small eval set's 1.1M tokens, results/scores/hybrid-s0.npz): the standard error of a mean over 1,000
# tokens is 0.09 nats before any correlation between neighbouring tokens, about the size of the gaps the study
# reports. Fewer are refused.
MIN_FILTER_TOKENS = 1000
DEFAULT_CACHE = Path("~/.cache/tokengap/inloop")


class InLoopError(ValueError):
    """Bad input to the in-loop API (one line, naming the culprit)."""


@dataclass
class FilteredLosses:
    """What one evaluation gives. loss / tokens: {"all", "filter/<name>", "domain/<domain>": value}."""
    loss: dict[str, float]
    tokens: dict[str, int]
    seconds: float
    extra: dict = field(default_factory=dict)

    def flat(self, prefix: str = "tokengap/") -> dict[str, float]:
        """The losses under stable names for a logger: prefix + "all", "filter/<name>", "domain/<domain>"."""
        return {prefix + k: v for k, v in self.loss.items()}


def as_tokenizer(tokenizer) -> TextTokenizer:
    """A TextTokenizer from ours, a path to a `tokenizers` JSON file, a `tokenizers.Tokenizer`, a transformers fast
    tokenizer object, or the name / local path of a transformers tokenizer."""
    if isinstance(tokenizer, TextTokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, Path)):
        p = Path(tokenizer).expanduser()
        if p.suffix == ".json":
            return TextTokenizer.from_file(p)
        return TextTokenizer.from_hf(str(tokenizer))
    if getattr(tokenizer, "backend_tokenizer", None) is not None:  # a transformers tokenizer object
        return TextTokenizer.from_hf_tokenizer(tokenizer, getattr(tokenizer, "name_or_path", "") or
                                               type(tokenizer).__name__)
    if type(tokenizer).__name__ == "Tokenizer":  # tokenizers.Tokenizer: EOT as in our corpora, else a BOS / EOS
        return TextTokenizer.from_tokenizers(tokenizer, "tokenizers.Tokenizer",
                                             ("<|endoftext|>", "</s>", "<s>", "<eos>", "<bos>"))
    raise InLoopError(f"tokenizer: {type(tokenizer).__name__} is not a tokenizer (expected a tokenizer.json path, a "
                      "tokenizers.Tokenizer, a transformers fast tokenizer or its name)")


def as_docs(texts: Union[Iterable[str], Iterable[Mapping]], domain: str = "text") -> list[dict]:
    """[{"id", "domain", "text"}] from strings (one domain, `domain`) or mappings with "text" and optional
    "domain" / "id". An id defaults to the text's sha256 (so the same texts give the same eval set)."""
    docs = []
    for i, t in enumerate(texts):
        d = {"text": t} if isinstance(t, str) else dict(t) if isinstance(t, Mapping) else {}
        if not isinstance(d.get("text"), str):
            raise InLoopError(f"texts[{i}]: expected a string or a mapping with a 'text' string, got "
                              f"{type(t).__name__}" + (f" with keys {sorted(d)}" if isinstance(t, Mapping) else ""))
        d.setdefault("domain", domain)
        d["domain"] = str(d["domain"])
        d.setdefault("id", hashlib.sha256(d["text"].encode()).hexdigest()[:16])
        docs.append(d)
    if not docs:
        raise InLoopError("texts: no documents")
    return docs


def take_tokens(ev: EvalSet, max_tokens: int) -> tuple[EvalSet, np.ndarray]:
    """Whole documents, taken in turn from each domain (in order), while the total stays within max_tokens; and
    the indices (into ev's tokens) of the tokens kept, for cutting per-token arrays (masks) the same way."""
    by_dom: dict[str, list[int]] = {}
    for i, d in enumerate(ev.docs):
        by_dom.setdefault(d["domain"], []).append(i)
    lengths = np.diff(ev.doc_starts)
    keep, total, queues = [], 0, [list(q) for q in by_dom.values()]
    while any(queues):
        for q in queues:
            if q:
                i = q.pop(0)
                if total + lengths[i] <= max_tokens:
                    keep.append(i)
                    total += int(lengths[i])
    if not keep:
        raise InLoopError(f"max_tokens={max_tokens}: every document is longer (the shortest has "
                          f"{int(lengths.min())} tokens)")
    return ev.take_docs(sorted(keep))


class FilteredEval:
    """An evaluation set with its filter masks: evaluate(model) gives the loss overall, under each filter and per
    domain, with token counts. Build it with `FilteredEval.build` (your text) or `FilteredEval.from_corpus`."""

    def __init__(self, evalset: EvalSet, masks: Mapping[str, np.ndarray], context_len: int,
                 filters: Sequence[str] = DEFAULT_FILTERS, per_domain: bool = True,
                 min_filter_tokens: int = MIN_FILTER_TOKENS):
        """masks: {filter name: (N,) bool} over evalset's tokens (all of `filter_masks`' names, or at least the
        chosen `filters`). Refuses (InLoopError, one line) an unknown filter, a mask of another length, or a chosen
        filter / domain with fewer than min_filter_tokens tokens."""
        if evalset.n_tokens == 0:
            raise InLoopError("the evaluation text tokenizes to nothing")
        unknown = [f for f in filters if f not in masks]
        if unknown:
            raise InLoopError(f"filters: unknown {unknown[0]!r} (known: {', '.join(masks)})")
        self.evalset, self.context_len = evalset, context_len
        self.masks: dict[str, np.ndarray] = {}
        for f in filters:
            if masks[f].shape != (evalset.n_tokens,):
                raise InLoopError(f"filters: mask {f!r} has {masks[f].shape[0]} entries, the eval set "
                                  f"{evalset.n_tokens} tokens")
            self.masks[f"filter/{f}"] = np.asarray(masks[f], dtype=bool)
        if per_domain:
            doms = evalset.domains()
            self.masks.update({f"domain/{d}": doms == d for d in sorted(set(doms))})
        for k, m in self.masks.items():
            if int(m.sum()) < min_filter_tokens:
                raise InLoopError(f"{k}: {int(m.sum())} tokens in this evaluation set, fewer than min_filter_tokens="
                                  f"{min_filter_tokens} (more text or max_tokens, or leave the filter out)")

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def build(cls, texts, tokenizer, context_len: int = 1024, filters: Sequence[str] = DEFAULT_FILTERS,
              per_domain: bool = True, max_tokens: Optional[int] = None, docs_per_domain: Optional[int] = None,
              min_filter_tokens: int = MIN_FILTER_TOKENS, cache_dir: Union[str, Path] = DEFAULT_CACHE,
              domain: str = "text", progress: bool = False) -> "FilteredEval":
        """texts: strings, or mappings with "text" (and optional "domain", "id"); tokenizer: see as_tokenizer.
        docs_per_domain: the first that many documents of each domain; max_tokens: whole documents, in turn from
        each domain, up to that many tokens (a fast in-loop subset). Labels are computed once per eval set and
        context length and cached under cache_dir (measured on a 2-core CPU with spaCy's small English pipeline:
        70,744 tokens in 2.8 s, the small corpus's 1,113,174 eval tokens in 41 s, tokenizing included)."""
        if context_len < 2:
            raise InLoopError(f"context_len: {context_len} (at least 2)")
        ev = EvalSet.from_docs(as_docs(texts, domain), as_tokenizer(tokenizer))
        if docs_per_domain:
            ev = ev.subset(docs_per_domain)[0]
        if max_tokens:
            ev = take_tokens(ev, max_tokens)[0]
        if ev.n_tokens == 0:
            raise InLoopError("the evaluation text tokenizes to nothing" + (f" within max_tokens={max_tokens}"
                                                                          if max_tokens else ""))
        return cls(ev, label_masks(ev, context_len, cache_dir, progress), context_len, filters, per_domain,
                   min_filter_tokens)

    @classmethod
    def from_files(cls, source: Union[str, Path], tokenizer, context_len: int = 1024, text_field: str = "text",
                   domain_field: Optional[str] = None, split: Optional[str] = None, **kw) -> "FilteredEval":
        """Your own text (tokengap/evaluation/sources.py, docs/data.md): a folder of .txt files, a .jsonl file (or a
        folder of them), or a Hugging Face dataset saved with save_to_disk; domains from `domain_field` or one per file.
        Bad input is one line (SourceError) naming the file and line."""
        from tokengap.evaluation.sources import read_docs

        return cls.build(read_docs(source, text_field, domain_field, split), tokenizer, context_len, **kw)

    @classmethod
    def from_corpus(cls, corpus_dir: Union[str, Path], context_len: int, **kw) -> "FilteredEval":
        """The eval documents of a corpus built by `python -m tokengap.train.data build` (docs/eval.jsonl, and its
        tokenizer)."""
        from tokengap.evaluation.evalset import read_jsonl

        corpus_dir = Path(corpus_dir)
        return cls.build(read_jsonl(corpus_dir / "docs" / "eval.jsonl"), corpus_dir / "tokenizer.json",
                         context_len, **kw)

    # ---- evaluation ---------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return {"all": self.evalset.n_tokens, **{k: int(m.sum()) for k, m in self.masks.items()}}

    def evaluate(self, model, device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None,
                 batch_size: int = 8, chunk_tokens: int = 8192) -> FilteredLosses:
        """Score every token once with `model` (a tokengap LM, a transformers causal LM, or any callable from
        input ids (b, l) to logits (b, l, vocab)) and average the loss under each mask. device: where the inputs
        go (default: the model's parameters', else CPU); dtype: autocast to it (None: the model's own precision).
        Leaves the model's train / eval mode and every random generator (CPU, CUDA) as they were."""
        if device is None:
            p = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
            device = p.device if p is not None else torch.device("cpu")
        device = torch.device(device)
        t0 = time.perf_counter()
        was_training = getattr(model, "training", None)
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            if was_training is not None:
                model.eval()
            try:
                loss, correct = score(scorer_for(model), self.evalset, self.context_len, batch_size, device, dtype,
                                      chunk_tokens=chunk_tokens, progress=False)
            finally:
                if was_training is not None:
                    model.train(was_training)
        out = {"all": float(loss.mean()), **masked_means(loss, self.masks)}
        return FilteredLosses(out, self.counts(), time.perf_counter() - t0,
                              {"accuracy": float(correct.mean())})


def label_masks(ev: EvalSet, context_len: int, cache_dir: Union[str, Path] = DEFAULT_CACHE,
                progress: bool = False) -> dict[str, np.ndarray]:
    """Every filter mask of `ev` at this context length, labelled once and cached as
    <cache_dir>/<eval hash>-T<context>.{parquet,filters.npz}."""
    from tokengap.analysis.labels import cache_paths, load_filters, run_labels

    labels, filters = cache_paths(ev, context_len, Path(cache_dir).expanduser())
    if filters.is_file():
        try:
            masks, made_for = load_filters(filters)
            if made_for == ev.eval_hash and all(m.shape == (ev.n_tokens,) for m in masks.values()):
                return masks
        except Exception:  # a damaged cache entry is labelled again (the write below replaces it atomically)
            pass
    filters.parent.mkdir(parents=True, exist_ok=True)
    run_labels(ev, context_len, labels, filters, progress=progress)
    return load_filters(filters)[0]
