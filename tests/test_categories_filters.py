"""labels.parquet and filters.npz: aligned with the EvalSet, cached, no text; filter masks follow the labels."""
import numpy as np
import pandas as pd
import pytest

from tokengap.analysis.categories import REGISTRY
from tokengap.analysis.categories.filters import filter_masks, filter_names
from tests.synthetic import LexiconTagger, synthetic_evalset
from tokengap.analysis.labels import load_filters, read_labels, read_labels_meta, run_labels


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    d = tmp_path_factory.mktemp("labels")
    ev = synthetic_evalset(n_docs_per_domain=2, units=3)
    res = {"tagger": LexiconTagger(), "unigram_logprob": np.zeros(60000)}
    prov = {"tagger": {"model": "lexicon"}, "unigram_logprob": {"source": "zeros"}}
    rep = run_labels(ev, 64, d / "labels.parquet", d / "filters.npz", resources=res, prov=prov, progress=False)
    return ev, d, res, prov, rep


def test_labels_align_with_evalset(labelled):
    ev, d, *_ = labelled
    df, meta = read_labels(d / "labels.parquet")
    assert len(df) == ev.n_tokens and meta["eval_hash"] == ev.eval_hash and meta["context_len"] == 64
    assert np.array_equal(df["doc_index"].to_numpy(), ev.doc_index)
    assert np.array_equal(df["ctx_pos"].to_numpy(), ev.ctx_pos(64))
    assert (df["domain"].astype(str).to_numpy() == ev.domains()).all()
    assert set(meta["labelers"]) == set(REGISTRY)


def test_labels_hold_no_text(labelled):
    """Every string label comes from a closed vocabulary (tags and classes), so no text can leak into the
    committed parquet; domain and source are the documents' metadata."""
    from tokengap.analysis.categories.code import PY_CLASSES
    from tokengap.analysis.categories.delimiters import DELIM_TYPES
    from tokengap.analysis.categories.markup import HTML_CLASSES, LATEX_CLASSES
    from tokengap.analysis.categories.pos import CONTENT_UPOS, FUNCTION_UPOS, PTB_COARSE

    ud = set(CONTENT_UPOS) | set(FUNCTION_UPOS) | {"NUM", "PUNCT", "SYM", "X", "INTJ", "SPACE"}
    vocab = (set(PTB_COARSE) | set(PTB_COARSE.values()) | ud | set(PY_CLASSES) | set(HTML_CLASSES)
             | set(LATEX_CLASSES) | set(DELIM_TYPES) | {"open", "close", "content", "function", "punct", "num",
                                                       "other", "whitespace", ""})
    ev, d, *_ = labelled
    df, _ = read_labels(d / "labels.parquet")
    for col in df.columns:
        if col in ("domain", "source"):
            continue
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            assert set(map(str, df[col].cat.categories)) <= vocab, col
        else:
            assert df[col].dtype.kind in "biuf", col


def test_filters_match_labels(labelled):
    ev, d, *_ = labelled
    masks, h = load_filters(d / "filters.npz")
    df, _ = read_labels(d / "labels.parquet")
    assert h == ev.eval_hash and tuple(masks) == filter_names()
    assert 15 <= len(masks) <= 30 and all(m.shape == (ev.n_tokens,) and m.dtype == bool for m in masks.values())
    wc = df["word_class"].astype(str).to_numpy()
    assert np.array_equal(masks["content_novel"], (wc == "content") & ~df["rep_4"].to_numpy())
    assert np.array_equal(masks["close_delim"],
                          df["delim_lead"].to_numpy() & (df["delim_dir"].astype(str).to_numpy() == "close"))
    assert np.array_equal(masks["novel"], ~masks["repeated_4"]) and masks["all"].all()
    for name in ("content_novel", "function_novel", "open_delim", "close_delim", "py_string", "html_text",
                 "latex_command", "pronoun"):
        assert masks[name].any(), name


def test_filter_names_do_not_depend_on_data():
    empty = filter_masks(pd.DataFrame({"ctx_pos": np.zeros(3, dtype=np.int32)}))
    assert tuple(empty) == filter_names() and not empty["content"].any() and empty["all"].all()


def test_cache_reuses_unchanged_labelers(labelled, monkeypatch):
    ev, d, res, prov, rep = labelled
    assert set(rep["ran"]) == set(REGISTRY)
    again = run_labels(ev, 64, d / "labels.parquet", None, resources=res, prov=prov, progress=False)
    assert again["ran"] == [] and set(again["reused"]) == set(REGISTRY)
    # a new version of one labeler re-runs only that one
    import dataclasses
    monkeypatch.setitem(REGISTRY, "delimiters", dataclasses.replace(REGISTRY["delimiters"], version=99))
    third = run_labels(ev, 64, d / "labels.parquet", None, resources=res, prov=prov, progress=False)
    assert third["ran"] == ["delimiters"]
    assert read_labels_meta(d / "labels.parquet")["labelers"]["delimiters"]["version"] == 99
    # another context length invalidates everything (repetition and positions depend on it)
    fourth = run_labels(ev, 32, d / "labels.parquet", None, resources=res, prov=prov, progress=False)
    assert set(fourth["ran"]) == set(REGISTRY)
