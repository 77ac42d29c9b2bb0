"""The registry contract: DocView anchors, span lookup, registration checks, and every labeler's shape."""
import numpy as np
import pytest

from tokengap.analysis.categories import REGISTRY, DocView, label_by_spans, label_document, labeler
from tokengap.analysis.categories.registry import Labeler
from tests.synthetic import LexiconTagger, synthetic_evalset


def test_from_pieces_offsets_and_anchors():
    d = DocView.from_pieces(["Hello", " world", "  ", "\n", " !"])
    assert d.text == "Hello world  \n !"
    assert d.offsets.tolist() == [[0, 5], [5, 11], [11, 13], [13, 14], [14, 16]]
    # first non-space character of each token; -1 for whitespace-only tokens
    assert d.anchors.tolist() == [0, 6, -1, -1, 15]
    assert d.ctx_pos.tolist() == [0, 1, 2, 3, 4] and d.window_id.tolist() == [0] * 5


def test_from_pieces_windows_and_shared_vocab():
    vocab = {}
    d = DocView.from_pieces(["a", "b", "a", "c", "a"], context_len=2, vocab=vocab)
    assert d.ctx_pos.tolist() == [0, 1, 0, 1, 0] and d.window_id.tolist() == [0, 0, 1, 1, 2]
    assert d.token_ids.tolist() == [0, 1, 0, 2, 0] and vocab == {"a": 0, "b": 1, "c": 2}


def test_anchor_handles_unicode_spaces():
    d = DocView.from_pieces(["\u00a0x", "\u3000", "y"])
    assert d.anchors.tolist() == [1, -1, 3]


def test_label_by_spans():
    anchors = np.array([0, 3, 5, 9, -1])
    out = label_by_spans(anchors, [0, 4], [4, 9], ["A", "B"], default="-")
    assert out.tolist() == ["A", "A", "B", "-", "-"]


def test_registration_checks():
    with pytest.raises(TypeError):
        @labeler("bad_no_default", columns=("x",))
        def bad(doc, *, p):  # keyword parameters need defaults (they are the study's defaults)
            return {}
    with pytest.raises(ValueError):
        @labeler("dup_column", columns=("ptb",))  # "ptb" is already written by "pos"
        def dup(doc):
            return {}
    assert "bad_no_default" not in REGISTRY and "dup_column" not in REGISTRY


def test_labeler_call_validates_output():
    lab = Labeler("t", lambda doc: {"x": np.zeros(doc.n + 1)}, lambda **p: ("x",), 1, (), {}, "")
    with pytest.raises(ValueError, match="shape"):
        lab(DocView.from_pieces(["a"]))
    lab = Labeler("t", lambda doc: {"y": np.zeros(doc.n)}, lambda **p: ("x",), 1, (), {}, "")
    with pytest.raises(ValueError, match="declared"):
        lab(DocView.from_pieces(["a"]))
    with pytest.raises(TypeError):
        REGISTRY["repetition"](DocView.from_pieces(["a"]), nonsense=1)
    with pytest.raises(KeyError):
        REGISTRY["pos"](DocView.from_pieces(["a"], domain="books"))  # needs a tagger


def test_every_labeler_on_every_domain():
    ev = synthetic_evalset(n_docs_per_domain=1, units=2)
    res = {"tagger": LexiconTagger(), "unigram_logprob": np.zeros(60000)}
    for i, doc in enumerate(ev.docs):
        a, b = ev.doc_starts[i], ev.doc_starts[i + 1]
        v = DocView(doc["text"], ev.tokens[a:b], ev.offsets[a:b], doc["domain"], doc["source"])
        out = label_document(v, resources=res)
        assert set(out) == {c for lab in REGISTRY.values() for c in lab.columns}
        assert all(np.shape(x) == (v.n,) for x in out.values())
        again = label_document(v, resources=res)  # pure: same input, same labels
        assert all(np.array_equal(out[k], again[k]) for k in out)


def test_fingerprint_tracks_params_and_version():
    lab = REGISTRY["repetition"]
    assert lab.fingerprint() != lab.fingerprint({"copy_n": 8})
    assert lab.fingerprint()["columns"] == ["rep_1", "rep_2", "rep_4", "rep_8", "rep_16", "copy_dist"]
    assert lab.columns_for(ns=(3,)) == ("rep_3", "copy_dist")
