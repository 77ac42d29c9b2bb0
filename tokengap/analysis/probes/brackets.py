"""Bracket matching: choose each closing delimiter of a nested line of mixed brackets, HTML tags and LaTeX
environments.

    ( [ <em> \\begin{quote} { two small dogs run . } \\end{quote} </em> ] )
                                                  ^ ^             ^     ^ ^  targets: every closer

Level = depth d: one line opens d delimiters (five families: ( [ { <tag> \\begin{env}, each drawn uniformly
and independently), then holds a few words ending with ".", then closes all d. So *that* a closer
comes next is known from the text (after the "." and until the stack is empty); *which* one needs the
matching opener. Every delimiter is separated by spaces, so a closer is its own pre-token; HTML and LaTeX
closers span several tokens and are scored on the first (" </", " \\"), i.e. on the family. One tag name and
one environment name per document.
"""
from __future__ import annotations

from dataclasses import dataclass

from tokengap.analysis.probes.base import Episode, Probe, ProbeConfig, Target

FAMILIES = ("paren", "bracket", "brace", "html", "latex")
TAGS = ("b", "i", "em", "span", "div", "p", "code", "li", "td", "strong", "small", "section")
ENVS = ("itemize", "center", "quote", "proof", "table", "figure", "enumerate", "verbatim", "abstract", "theorem")
WORDS = ("two", "small", "dogs", "run", "the", "red", "fox", "sleeps", "a", "cold", "wind", "blows", "old", "men",
         "sing", "new", "ideas", "grow", "blue", "birds", "fly", "three", "tall", "trees", "fall", "my", "cat",
         "eats", "some", "fresh", "bread", "rain", "comes", "soon", "we", "read", "books", "they", "walk", "home")


@dataclass(frozen=True)
class BracketsConfig(ProbeConfig):
    levels: tuple[int, ...] = (1, 2, 4, 8, 16)
    leaf_words: tuple[int, int] = (1, 6)  # words inside the innermost pair (then "."): the distance knob
    lines_per_episode: int = 1


def pairs(tag: str, env: str) -> dict:
    """family -> (opener, closer) for a document's tag and environment names."""
    return {"paren": ("(", ")"), "bracket": ("[", "]"), "brace": ("{", "}"), "html": (f"<{tag}>", f"</{tag}>"),
            "latex": (f"\\begin{{{env}}}", f"\\end{{{env}}}")}


def start_doc(rng, cfg: BracketsConfig, level: int, index: int) -> dict:
    return {"pairs": pairs(rng.choice(TAGS), rng.choice(ENVS))}


def episode(rng, cfg: BracketsConfig, depth: int, state: dict):
    pr = state["pairs"]
    candidates = tuple(pr[f][1] for f in FAMILIES)
    lines, targets, offset = [], [], 0
    for _ in range(cfg.lines_per_episode):
        fams = [rng.choice(FAMILIES) for _ in range(depth)]
        leaf = rng.sample(WORDS, rng.randint(*cfg.leaf_words)) + ["."]
        pieces = [pr[f][0] for f in fams] + leaf + [pr[f][1] for f in reversed(fams)]
        starts, pos = [], offset
        for p in pieces:
            starts.append(pos)
            pos += len(p) + 1
        n_open = depth + len(leaf)
        for j, f in enumerate(reversed(fams)):  # j-th closer matches opener depth - 1 - j
            i_open, i_close = depth - 1 - j, n_open + j
            fields = {"depth": depth, "family": f, "nesting": i_open + 1, "distance": starts[i_close] - starts[i_open],
                      "n_between": i_close - i_open - 1}
            baselines = {"last_opener": pr[fams[-1]][1],  # innermost opener, ignoring closes
                         "prev_closer": pr[fams[i_open + 1]][1] if j > 0 else None}  # repeat the previous closer
            targets.append(Target(starts[i_close], pr[f][1], candidates, "delim", fields, baselines))
        lines.append(" ".join(pieces))
        offset = pos
    return Episode("\n".join(lines), targets)


PROBE = Probe(name="brackets", title="Bracket matching", axis="depth", kinds=("delim",),
              presets={"small": BracketsConfig(docs_per_level=32, max_pretokens=1550),
                       "tiny": BracketsConfig(levels=(1, 2, 4, 8), docs_per_level=16, max_pretokens=190)},
              start_doc=start_doc, episode=episode)
