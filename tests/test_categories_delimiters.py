"""Delimiter labeler: type, direction, 'is or starts with' (lead) and merged pieces, per hand examples."""
from tokengap.analysis.categories import DocView, REGISTRY


def delim(pieces, domain="python"):
    out = REGISTRY["delimiters"](DocView.from_pieces(pieces, domain=domain))
    return [(t, d, bool(l), bool(m)) if t else None for t, d, l, m in
            zip(out["delim_type"], out["delim_dir"], out["delim_lead"], out["delim_merged"])]


def test_brackets_and_merged_pieces():
    got = delim(["f", "(", "x", "[", "0", "]", ",", " {", "1", "});"])
    assert got == [None, ("paren", "open", True, False), None, ("bracket", "open", True, False), None,
                   ("bracket", "close", True, False), None, ("brace", "open", True, False), None,
                   ("brace", "close", True, True)]  # "});": closing brace, merged with ")" and ";"


def test_delimiter_after_other_characters_is_not_lead():
    got = delim(["print", "(\"", "hi", "\")"])
    assert got[1] == ("paren", "open", True, True)
    assert got[3] == ("paren", "close", False, True)  # '")' holds the ) after a quote


def test_html_tags_void_and_self_closing_left_out():
    got = delim(["<div", " class", "=\"", "a", "\">", "<br>", "text", "<img", "/>", "</", "div", ">"], domain="html")
    assert got[0] == ("html", "open", True, False)
    assert got[5] is None and got[7] is None  # <br>, <img/>: no partner
    assert got[9] == ("html", "close", True, False)
    assert got[4] is None and got[11] is None  # the '>' ending a tag is part of the tag


def test_angle_brackets_are_not_comparisons():
    got = delim(["#include", " <", "stdio", ".h", ">", "\n", "a", " <", " b", " &&", " c", " >", " d"], domain="c")
    assert got[1] == ("angle", "open", True, False) and got[4] == ("angle", "close", True, False)
    assert got[7] is None and got[11] is None


def test_latex_environments_and_dollars():
    got = delim(["\\begin", "{", "equation", "}", " x", " \\end", "{equation}", " and", " $", "y", "$", "."],
                domain="latex")
    assert got[0] == ("latex_env", "open", True, False)
    assert got[1] is None and got[3] is None  # braces inside \begin{...} belong to it
    assert got[5] == ("latex_env", "close", True, False)
    assert got[8] == ("dollar", "open", True, False) and got[10] == ("dollar", "close", True, False)
    # an escaped \$ is not math; $ outside LaTeX documents is not a delimiter
    assert delim(["costs", " \\$", "5"], domain="latex")[1] is None
    assert delim(["costs", " $", "5"], domain="news")[1] is None
