"""HTML and LaTeX lexical labelers against hand-labelled snippets."""
from tokengap.analysis.categories import DocView, REGISTRY


def lex(name, col, pieces, domain):
    return REGISTRY[name](DocView.from_pieces(pieces, domain=domain))[col].tolist()


def test_html_classes():
    pieces = ["<!--", " c", " -->", "<a", " href", "=\"", "x", ".html", "\"", ">", "Click", " here", "</", "a", ">",
              "<script", ">", "var", " x", "</script>", "\n"]
    assert lex("html", "html_lex", pieces, "html") == [
        "comment", "comment", "comment", "tag", "tag", "tag", "attr_value", "attr_value", "attr_value", "tag",
        "text", "text", "tag", "tag", "tag", "tag", "tag", "script", "script", "tag", "whitespace"]
    assert lex("html", "html_lex", ["<a>"], "books") == [""]


def test_html_entities_are_text_and_gt_in_quotes_stays_in_tag():
    assert lex("html", "html_lex", ["<a", " title", "=\"", "a>b", "\">", "&amp;", "x"], "html") == [
        "tag", "tag", "tag", "attr_value", "attr_value", "text", "text"]


def test_latex_classes():
    pieces = ["\\section", "{", "Intro", "}", " We", " have", " $", "x", "^", "2", "$", " \\cite", "{key}", ".",
              " %", " todo", "\n", "\\begin{equation}", " a", "=", "b", " \\end{equation}"]
    assert lex("latex", "latex_lex", pieces, "latex") == [
        "command", "syntax", "text", "syntax", "text", "text", "math", "math", "math", "math", "math", "command",
        "command", "text", "comment", "comment", "whitespace", "command", "math", "math", "math", "command"]


def test_latex_escapes_and_display_math():
    pieces = ["50", "\\%", " of", " \\$", "3", " $$", "y", "$$", " \\[", "z", "\\]", " end"]
    assert lex("latex", "latex_lex", pieces, "latex") == [
        "text", "command", "text", "command", "text", "math", "math", "math", "math", "math", "math", "text"]


def test_unclosed_dollar_math_ends_where_tex_would_end_it():
    # macro code like amsppt.sty: `$$` inside conditionals must not make the rest of the file "math"
    pieces = ["\\noindent", "$$", "x", "\\else", "$$", "\\fi", " text", " \\egroup", "$$", "}", " more", " words"]
    got = lex("latex", "latex_lex", pieces, "latex")
    assert got[:3] == ["command", "math", "math"]  # opened, then ended by \else
    assert got[3] == "command" and got[5] == "command" and got[6] == "text"
    assert got[8] == "math" and got[9] == "syntax" and got[10:] == ["text", "text"]  # `}` closes the group
    # a blank line ends an unclosed `$`; balanced math inside a definition's braces stays math
    assert lex("latex", "latex_lex", ["Cost", " $", "5", "\n\n", "Next", " line"], "latex") == [
        "text", "math", "math", "whitespace", "text", "text"]
    assert lex("latex", "latex_lex", ["\\def", "\\f", "{", "$", "\\frac", "{", "a", "}{", "b", "}", "$", "}", " t"],
               "latex") == ["command", "command", "syntax", "math", "math", "math", "math", "math", "math", "math",
                            "math", "syntax", "text"]
