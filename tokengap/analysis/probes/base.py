"""What every probe shares: targets, episodes, and the loop that fills documents with episodes.

A probe is a pair of functions (`start_doc`, `episode`) plus a typed config. `generate_docs` calls `episode`
until the document's length budget is spent; each episode is a self-contained item (a story, a puzzle, a
line of brackets, a key-value table) whose targets carry character offsets relative to the episode, shifted
here to document offsets. Everything is driven by one `random.Random` per document, seeded with a string
(seed/probe/level/index), so the same seed gives the same bytes on every machine and a change to one probe
or level leaves the others untouched. Answers are drawn independently and uniformly (never in balanced
rounds, which would let a model guess a later answer of the same document by elimination).
"""
from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

EPISODE_SEP = "\n\n"

# ASCII version of the GPT-2 / byte-level BPE pre-tokenizer pattern. Every pre-token is at least one BPE
# token, and common words are exactly one, so this count is the length budget (probe texts are ASCII).
_PRETOKEN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


def count_pretokens(text: str) -> int:
    return len(_PRETOKEN.findall(text))


@dataclass(frozen=True)
class Target:
    """One scored position. `char` is the offset of the answer's first character (never the space before it)."""
    char: int
    answer: str
    candidates: tuple[str, ...]  # the answers a reader could choose between here; chance = 1 / len
    kind: str  # sub-task with its own chance level (e.g. pronoun probe: "pronoun" or "name")
    fields: dict = field(default_factory=dict)  # difficulty fields (the probe's axis among them), surface form
    baselines: dict = field(default_factory=dict)  # heuristic name -> the answer that heuristic would give


@dataclass
class Episode:
    text: str
    targets: list[Target]


@dataclass(frozen=True)
class ProbeConfig:
    levels: tuple[int, ...]  # values of the probe's difficulty axis; one set of documents per level
    docs_per_level: int = 64
    # Document length budget in pre-tokens (count_pretokens). Presets set it per probe from the measured
    # tokens per pre-token of byte-level BPEs (about 1.1 for brackets, up to 1.55 for city names): docs/probes.md.
    max_pretokens: int = 1200
    max_episodes: int = 32  # per document


def spread(index: int, share: float) -> bool:
    """True for a `share` fraction of document indices, evenly spread (share 0.5: every second document)."""
    return int(index * share) != int((index + 1) * share)


@dataclass(frozen=True)
class Probe:
    name: str
    title: str
    axis: str  # the difficulty field tables and figures are drawn against
    kinds: tuple[str, ...]
    presets: dict  # preset name -> config
    start_doc: Callable  # (rng, cfg, level, index) -> per-document state (pools drawn without replacement)
    episode: Callable  # (rng, cfg, level, state) -> Episode, or None when the document's pools ran out


def sample_until(rng: random.Random, make: Callable[[], tuple], wants: dict, tries: int = 500):
    """Call make() -> (result, {heuristic: hit}) until every heuristic named in `wants` hits as wanted.

    Used to put shortcut heuristics at a chosen rate (e.g. "the most recent box is the answer" at chance):
    the caller draws the wanted outcomes, this rejects episodes until they occur. Gives up after `tries`
    and returns the last draw (the measured baseline rates in the manifest show it if that happens often)."""
    result = None
    for _ in range(tries):
        result, hits = make()
        if all(hits[k] == v for k, v in wants.items()):
            return result
    return result


def generate_docs(probe: Probe, cfg: ProbeConfig, seed: int) -> list[tuple[dict, list[dict]]]:
    """All documents of one probe: [(doc, [target record, ...])], levels in cfg order.

    doc = {"id", "domain": "probe", "source": probe name, "text"}; a target record is the JSON line of
    targets.jsonl (see docs/probes.md)."""
    out = []
    for level in cfg.levels:
        for i in range(cfg.docs_per_level):
            rng = random.Random(f"{seed}/{probe.name}/{level}/{i}")
            state = probe.start_doc(rng, cfg, level, i)
            parts: list[str] = []
            targets: list[Target] = []
            length = 0  # pre-tokens so far; a document ends with a non-space, so counts add up exactly
            while len(parts) < cfg.max_episodes:
                ep: Optional[Episode] = probe.episode(rng, cfg, level, state)
                if ep is None:
                    break
                sep = EPISODE_SEP if parts else ""
                n = count_pretokens(sep + ep.text)
                if length + n > cfg.max_pretokens:
                    if not parts:
                        raise ValueError(f"{probe.name} {probe.axis}={level}: one episode needs {n} pre-tokens, "
                                         f"more than max_pretokens={cfg.max_pretokens}")
                    break
                shift = len(EPISODE_SEP.join(parts)) + len(sep)
                targets += [dataclasses.replace(t, char=t.char + shift) for t in ep.targets]
                parts.append(ep.text)
                length += n
            doc_id = f"probe/{probe.name}/{probe.axis}={level}/{i:04d}"
            text = EPISODE_SEP.join(parts)
            records = [{"doc": doc_id, "probe": probe.name, "kind": t.kind, "char": t.char, "answer": t.answer,
                        "candidates": list(t.candidates), **t.fields, "baselines": t.baselines} for t in targets]
            out.append(({"id": doc_id, "domain": "probe", "source": probe.name, "text": text}, records))
    return out
