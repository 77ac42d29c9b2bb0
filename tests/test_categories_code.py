"""Python lexical labeler (tokenize), including recovery from code that does not tokenize."""
from tokengap.analysis.categories import DocView, REGISTRY


def py(pieces, domain="python"):
    return REGISTRY["python"](DocView.from_pieces(pieces, domain=domain))["py_lex"].tolist()


def test_hand_example():
    pieces = ["def", " f", "(", "x", "):", "\n", "    ", "return", " x", " +", " 1.5", "  # note", "\n",
              "s", " =", " '", "abc", "'", "\n"]
    assert py(pieces) == ["keyword", "identifier", "operator", "identifier", "operator", "whitespace", "whitespace",
                          "keyword", "identifier", "operator", "number", "comment", "whitespace",
                          "identifier", "operator", "string", "string", "string", "whitespace"]


def test_other_domains_get_nothing():
    assert py(["def", " f"], domain="books") == ["", ""]


def test_recovers_after_bad_indentation():
    pieces = ["if", " x", ":", "\n", "        ", "a", "\n", "    ", "b", "\n", "c", " =", " 1", "\n"]
    got = py(pieces)  # "    b" dedents to no outer level: IndentationError; labeling goes on after it
    assert got[0] == "keyword" and got[5] == "identifier"
    assert got[10:13] == ["identifier", "operator", "number"]


def test_the_line_that_fails_is_labelled_too():
    # a chunk that starts inside a method, then dedents to a `def`: that `def` line must not be skipped
    pieces = ["        ", "return", " x", "\n", "    ", "def", " g", "(", "self", "):", "\n", "        ", "pass", "\n"]
    got = py(pieces)
    assert got[1] == "keyword" and got[5:10] == ["keyword", "identifier", "operator", "identifier", "operator"]
    assert got[12] == "keyword"


def test_unterminated_triple_quote_is_a_string_to_the_end():
    got = py(["x", " =", " \"\"\"", "doc", "\n", "more", " text"])
    assert got == ["identifier", "operator", "string", "string", "whitespace", "string", "string"]


def test_docstring_and_fragment():
    # an unclosed bracket at the end of a fragment still labels what came before
    assert py(["print", "(", "'", "hi", "'", ",", " foo"]) == ["identifier", "operator", "string", "string",
                                                               "string", "operator", "identifier"]
