"""Shortcuts of the v1 probe set: per target, what a reader that does *not* use the probed ability can do.

    python -m tokengap.analysis probes shortcuts --probes build/probes --out probes/shortcuts.npz

    from tokengap.analysis.probes.shortcuts import compute_shortcuts
    arrays = compute_shortcuts(ProbeSet.load("build/probes"))   # aligned with targets.jsonl

A code review found three ways around the abilities the probes target, plus elimination in recall
(docs/probes.md, "Shortcuts of the v1 probe set"):

- pronoun: the referent is always a person *not mentioned earlier in the document* (targets come from one
  pool and are used once per document; distractors are drawn afresh from another pool for every episode, so they recur). The
  shortcut's candidates are the people of the episode not mentioned before; for the `pronoun` kind, the set
  of their genders.
- brackets: counting how many openers of each family are still open (ignoring their order) leaves the
  families still open; when only one is, the closer is settled.
- entity: the answer is always a box mentioned in the episode.
- recall: no way around the lookup, but elimination: each key is queried at most once, so the values
  already answered in the episode are out; it never settles a target (half the keys are queried).

Every resolver here reads only the document text before the target (what a causal model sees) plus the fixed
name-gender lexicon, like the brute-force resolvers of tests/test_probes.py; none uses the generators' state.
Per target it returns the shortcut's candidates; from them:

    shortcut_candidates  int    how many candidates the shortcut leaves
    shortcut_settles     bool   exactly one, and it is the answer
    shortcut_chance      float  accuracy of guessing uniformly among them (1/count if the answer is one, else 0)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from tokengap.analysis.probes.probeset import PROBES, ProbeSet
from tokengap.analysis.probes.pronoun import GENDER_OF_NAME
from tokengap.models.atomic import atomic_write_stream

ARRAYS = ("shortcut_candidates", "shortcut_settles", "shortcut_chance")
ALIGN = ("probe", "kind", "level")  # stored too, to check row alignment with result files
EPISODE_SEP = "\n\n"


# ---- resolvers: text before the target -> the candidates a shortcut leaves -----------------------------------
def _episode(prefix: str) -> tuple[str, int]:
    """The current episode's text before the target and the offset where it starts in the prefix."""
    start = prefix.rfind(EPISODE_SEP)
    start = 0 if start < 0 else start + len(EPISODE_SEP)
    return prefix[start:], start


_QUERY = re.compile(r"the (\w+), $")  # every pronoun query ends "... the <object>, " right before the answer
_PRONOUN = re.compile(r", and then (she|he) ")


def pronoun_people(prefix: str) -> list[dict]:
    """The people of the current pronoun episode, in order: {"surface", "gender", "novel"}; `novel`: the
    surface form (a name, or "the <role>") does not occur anywhere in the document before its sentence."""
    ep, start = _episode(prefix)
    if not _QUERY.search(ep):
        raise ValueError(f"not a pronoun query: {ep[-80:]!r}")
    sents = re.split(r"(?<=\.) ", ep)[:-1]  # the last piece is the unfinished query sentence
    people, pos = [], start
    for s in sents:
        words = s.split()
        if words[0] == "The":  # a role noun, gendered only by its explicit pronoun
            m = _PRONOUN.search(s)
            if not m:
                raise ValueError(f"role sentence without a pronoun: {s!r}")
            surface, gender = f"the {words[1]}", m.group(1)
            pattern = rf"\b[Tt]he {re.escape(words[1])}\b"
        else:
            surface = words[0]
            if surface not in GENDER_OF_NAME:
                raise ValueError(f"unknown name {surface!r} in {s!r}")
            gender, pattern = GENDER_OF_NAME[surface], rf"\b{re.escape(surface)}\b"
        people.append({"surface": surface, "gender": gender, "novel": not re.search(pattern, prefix[:pos])})
        pos += len(s) + 1
    return people


def pronoun_shortcut(prefix: str, kind: str) -> list[str]:
    """Names (kind "name") or genders (kind "pronoun") of the episode's people not mentioned before."""
    novel = [p for p in pronoun_people(prefix) if p["novel"]]
    if kind == "name":
        return [p["surface"] for p in novel]
    return sorted({p["gender"] for p in novel})


_OPEN = re.compile(r"^(?:\(|\[|\{|<(\w+)>|\\begin\{(\w+)\})$")
_CLOSE = re.compile(r"^(?:\)|\]|\}|</(\w+)>|\\end\{(\w+)\})$")
_FAMILY = {"(": "paren", "[": "bracket", "{": "brace", ")": "paren", "]": "bracket", "}": "brace"}


def _family(tok: str, m: re.Match) -> tuple[str, str]:
    """(family, the closer that family's opener here needs)."""
    if tok in _FAMILY:
        f = _FAMILY[tok]
        return f, {"paren": ")", "bracket": "]", "brace": "}"}[f]
    if m.group(1) is not None:
        return "html", f"</{m.group(1)}>"
    return "latex", f"\\end{{{m.group(2)}}}"


def brackets_shortcut(prefix: str) -> list[str]:
    """Closers of the families with openers still open on the current line, counted per family (the order of
    the openers is ignored: that is the shortcut)."""
    line = prefix.split("\n")[-1]
    count: dict = {}
    closer: dict = {}
    for tok in line.split():
        m = _OPEN.match(tok)
        if m:
            f, c = _family(tok, m)
            count[f] = count.get(f, 0) + 1
            closer[f] = c
            continue
        m = _CLOSE.match(tok)
        if m:
            f, _ = _family(tok, m)
            count[f] = count.get(f, 0) - 1
    return sorted(closer[f] for f, n in count.items() if n > 0)


def entity_shortcut(prefix: str) -> list[str]:
    """Box numbers mentioned in the current episode before the query."""
    ep, _ = _episode(prefix)
    return sorted(set(re.findall(r"\b\d+\b", ep)), key=int)


def recall_shortcut(prefix: str) -> list[str]:
    """Elimination: the values of the episode's table (prose "K goes with v." line or INI [lookup] section)
    not yet answered by an earlier query of the episode (each key is queried at most once). It never settles
    a target (half the keys, rounded up, are queried) but lifts the guess above 1/n_pairs."""
    ep, _ = _episode(prefix)
    if ep.startswith("[lookup]\n"):
        table, _, check = ep.partition("[check]")
        values, answered = (re.findall(r"^\w+ = (\w+)$", part, re.M) for part in (table, check))
    else:
        table, _, check = ep.partition("\n")
        values, answered = (re.findall(r"\w+ goes with (\w+)\.", part) for part in (table, check))
    done = set(answered)
    return [v for v in values if v not in done]


def shortcut_candidates(probe: str, kind: str, prefix: str) -> list[str]:
    if probe == "pronoun":
        return pronoun_shortcut(prefix, kind)
    resolvers = {"brackets": brackets_shortcut, "entity": entity_shortcut, "recall": recall_shortcut}
    if probe not in resolvers:
        raise ValueError(f"no shortcut resolver for probe {probe!r}")
    return resolvers[probe](prefix)


def target_shortcut(probe: str, kind: str, prefix: str, answer: str) -> tuple[int, bool, float]:
    """(shortcut_candidates, shortcut_settles, shortcut_chance) of one target."""
    cands = shortcut_candidates(probe, kind, prefix)
    hit = answer in cands
    return len(cands), len(cands) == 1 and hit, (1 / len(cands)) if hit else 0.0


# ---- a whole probe set --------------------------------------------------------------------------------------
def compute_shortcuts(ps: ProbeSet) -> dict:
    """The three arrays (plus probe, kind, level for alignment), one row per target in targets.jsonl order."""
    text = {d["id"]: d["text"] for d in ps.docs}
    n = len(ps.targets)
    out = {"shortcut_candidates": np.zeros(n, np.int16), "shortcut_settles": np.zeros(n, bool),
           "shortcut_chance": np.zeros(n, np.float32)}
    for i, t in enumerate(ps.targets):
        c, s, ch = target_shortcut(t["probe"], t["kind"], text[t["doc"]][:t["char"]], t["answer"])
        out["shortcut_candidates"][i], out["shortcut_settles"][i], out["shortcut_chance"][i] = c, s, ch
    out["probe"] = np.array([t["probe"] for t in ps.targets])
    out["kind"] = np.array([t["kind"] for t in ps.targets])
    out["level"] = np.array([t[ps.axis(t["probe"])] for t in ps.targets], dtype=np.int32)
    return out


def shortcut_rows(ps: ProbeSet, arrays: dict) -> list[dict]:
    """Per (probe, kind, level), in the order of the manifest's baseline table: the share of targets the
    shortcut settles and its accuracy (mean shortcut_chance)."""
    groups: dict = {}
    for i, t in enumerate(ps.targets):
        groups.setdefault((t["probe"], t["kind"], t[ps.axis(t["probe"])]), []).append(i)
    rows = []
    for (probe, kind, level), idx in sorted(groups.items(), key=lambda kv: (list(PROBES).index(kv[0][0]),) + kv[0][1:]):
        idx = np.array(idx)
        rows.append({"probe": probe, "kind": kind, "level": level, "n_targets": len(idx),
                     "shortcut_settled": round(float(arrays["shortcut_settles"][idx].mean()), 4),
                     "shortcut": round(float(arrays["shortcut_chance"][idx].mean()), 4),
                     "shortcut_mean_candidates": round(float(arrays["shortcut_candidates"][idx].mean()), 3)})
    return rows


def add_shortcut_columns(ps: ProbeSet) -> None:
    """Add the shortcut columns (`shortcut_settled`, `shortcut`) to ps.manifest's baseline rows, next to the
    stored heuristics (generate_probe_set calls this before writing manifest.json; the hash is untouched)."""
    rows = {(r["probe"], r["kind"], r["level"]): r for r in shortcut_rows(ps, compute_shortcuts(ps))}
    for b in ps.manifest["baselines"]:
        r = rows[(b["probe"], b["kind"], b["level"])]
        b["shortcut_settled"], b["shortcut"] = r["shortcut_settled"], r["shortcut"]


# ---- file -----------------------------------------------------------------------------------------------------
@dataclass
class Shortcuts:
    shortcut_candidates: np.ndarray
    shortcut_settles: np.ndarray
    shortcut_chance: np.ndarray
    probe: np.ndarray
    kind: np.ndarray
    level: np.ndarray
    probe_set_hash: str
    meta: dict


def save_shortcuts(path: Union[str, Path], arrays: dict, probe_set_hash: str, meta: Optional[dict] = None) -> Path:
    meta = {"probe_set_hash": probe_set_hash, "n_targets": int(len(arrays["shortcut_settles"])), **(meta or {})}
    return atomic_write_stream(path, lambda f: np.savez_compressed(
        f, **{k: np.asarray(arrays[k]) for k in ARRAYS + ALIGN}, probe_set_hash=np.str_(probe_set_hash),
        meta=np.str_(json.dumps(meta, sort_keys=True))))


def load_shortcuts(path: Union[str, Path]) -> Shortcuts:
    from tokengap.analysis.errors import check_npz
    check_npz(path, [*ARRAYS, *ALIGN, "probe_set_hash", "meta"], "a shortcuts file (from `probes shortcuts`)")
    with np.load(path, allow_pickle=False) as z:
        return Shortcuts(**{k: z[k] for k in ARRAYS + ALIGN}, probe_set_hash=str(z["probe_set_hash"]),
                         meta={**json.loads(str(z["meta"])), "path": str(path)})


def check_matches(sc: Shortcuts, results: Sequence) -> None:
    """Refuse shortcuts from another probe set than the results (ProbeResult), or rows that do not align."""
    for r in results:
        h = str(r.meta.get("probe_set_hash"))
        if h != sc.probe_set_hash:
            raise ValueError(f"{sc.meta.get('path', 'shortcuts')} was computed on probe set {sc.probe_set_hash} but "
                             f"{r.meta.get('path', 'a result file')} was scored on probe set {h}: recompute it "
                             f"(python -m tokengap.analysis probes shortcuts --probes DIR) on the probe set the "
                             f"results were scored on")
        for k in ALIGN:
            if not np.array_equal(getattr(sc, k), getattr(r, k)):
                raise ValueError(f"{sc.meta.get('path', 'shortcuts')}: rows do not align with "
                                 f"{r.meta.get('path', 'a result file')} ({k})")
