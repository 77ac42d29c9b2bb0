"""Probe generators: deterministic, and every marked answer recomputed from the text alone.

The resolvers below read only the document text before a target (what a causal model sees) plus the fixed
lexicon of name genders; they never touch the generators' state. Ids read like "pronoun-n_distractors=4".
"""
from __future__ import annotations

import math
import re

import pytest

from tokengap.analysis.probes.base import count_pretokens
from tokengap.analysis.probes.probeset import PROBES, ProbeSet, baseline_rows, generate_probe_set
from tokengap.analysis.probes.pronoun import GENDER_OF_NAME


# ---- brute-force resolvers: text before the target -> answer ------------------------------------------------
def episode_of(prefix: str) -> str:
    return prefix.split("\n\n")[-1]


def resolve_pronoun(prefix: str, kind: str) -> str:
    ep = episode_of(prefix)
    q = re.search(r"the (\w+), $", ep)  # every query ends "... the <object>, " just before the answer
    assert q, ep[-80:]
    obj, body = q.group(1), ep[:q.start()]
    sents = [s for s in re.split(r"(?<=\.) ", body) if re.search(rf"\bthe {obj}\b", s)]
    assert len(sents) == 1, f"object {obj!r} named {len(sents)} times before the query"
    s = sents[0]
    if s.startswith("The "):  # a role noun, gendered only by its explicit pronoun
        return re.search(r", and then (she|he) ", s).group(1)
    name = s.split()[0]
    return GENDER_OF_NAME[name] if kind == "pronoun" else name


_ENTITY = re.compile(
    r'The (?P<i1>\w+) is in box (?P<b1>\d)\.|Box (?P<b2>\d) holds the (?P<i2>\w+)\.|put\("(?P<i3>\w+)", (?P<b3>\d)\)'
    r'|(?:Move|Put) the (?P<m1>\w+) (?:to|into) box (?P<mb1>\d)\.|move\("(?P<m2>\w+)", (?P<mb2>\d)\)'
    r'|(?:Move the contents of box (?P<a1>\d) to|Empty box (?P<a2>\d) into) box (?P<t1>\d)\.'
    r'|move_all\((?P<a3>\d), (?P<t3>\d)\)'
    r'|Swap (?:the contents of )?box (?P<s1>\d) and box (?P<s2>\d)\.|swap\((?P<s3>\d), (?P<s4>\d)\)'
    r'|Now the (?P<q1>\w+) is in box $|assert where\("(?P<q2>\w+)"\) == $')


def resolve_entity(prefix: str) -> str:
    ep, where, pos = episode_of(prefix), {}, 0
    for m in _ENTITY.finditer(ep):
        assert not ep[pos:m.start()].strip(), f"unparsed text {ep[pos:m.start()]!r}"
        pos = m.end()
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        if "i1" in g or "i2" in g or "i3" in g:
            where[g.get("i1") or g.get("i2") or g.get("i3")] = g.get("b1") or g.get("b2") or g.get("b3")
        elif "m1" in g or "m2" in g:
            where[g.get("m1") or g.get("m2")] = g.get("mb1") or g.get("mb2")
        elif "t1" in g or "t3" in g:
            a, t = g.get("a1") or g.get("a2") or g.get("a3"), g.get("t1") or g.get("t3")
            where = {o: (t if b == a else b) for o, b in where.items()}
        elif "s1" in g or "s3" in g:
            a, b2 = g.get("s1") or g.get("s3"), g.get("s2") or g.get("s4")
            where = {o: (b2 if b == a else a if b == b2 else b) for o, b in where.items()}
        else:
            assert pos == len(ep), "the query must end the prefix"
            return where[g.get("q1") or g.get("q2")]
    raise AssertionError(f"no query at the end of {ep[-60:]!r}")


_OPEN = re.compile(r"^(\(|\[|\{|<(\w+)>|\\begin\{(\w+)\})$")
_CLOSE = re.compile(r"^(\)|\]|\}|</\w+>|\\end\{\w+\})$")


def resolve_brackets(prefix: str) -> str:
    line = prefix.split("\n")[-1]
    stack, last = [], None
    for tok in line.split():
        m = _OPEN.match(tok)
        if m:
            stack.append({"(": ")", "[": "]", "{": "}"}.get(tok) or
                         (f"</{m.group(2)}>" if m.group(2) else f"\\end{{{m.group(3)}}}"))
        elif _CLOSE.match(tok):
            assert stack.pop() == tok, "the text itself must be well nested"
        last = tok
    assert stack, "a closer is only asked for while something is open"
    assert last == "." or _CLOSE.match(last), "closers come right after the '.' that ends the innermost text"
    return stack[-1]


def resolve_recall(prefix: str) -> str:
    ep = episode_of(prefix)
    m = re.search(r"(\w+) goes with $", ep)
    if m:
        return re.search(rf"(?:^|\. |\n){m.group(1)} goes with (\w+)\.", ep).group(1)
    m = re.search(r"(?:^|\n)(\w+) = $", ep)
    lookup = ep.split("[check]")[0]
    return re.search(rf"^{m.group(1)} = (\w+)$", lookup, re.M).group(1)


def resolve(probe: str, kind: str, prefix: str) -> str:
    if probe == "pronoun":
        return resolve_pronoun(prefix, kind)
    return {"entity": resolve_entity, "brackets": resolve_brackets, "recall": resolve_recall}[probe](prefix)


# ---- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> ProbeSet:
    d = tmp_path_factory.mktemp("probes_tiny")
    generate_probe_set(d, seed=0, preset="tiny")
    return ProbeSet.load(d)


def by_level(ps: ProbeSet):
    text = {d["id"]: d["text"] for d in ps.docs}
    groups: dict = {}
    for t in ps.targets:
        groups.setdefault((t["probe"], t["kind"], t[ps.axis(t["probe"])]), []).append(t)
    return text, groups


# ---- tests ----------------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        generate_probe_set(tmp_path / name, seed=seed, preset="tiny")
    for f in ("probes.jsonl", "targets.jsonl", "manifest.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "probes.jsonl").read_bytes() != (tmp_path / "c" / "probes.jsonl").read_bytes()


def test_one_probe_alone_is_the_same_as_in_the_full_set(tmp_path, tiny):
    """Per-document seeding: generating a subset does not shift the random streams of the others."""
    generate_probe_set(tmp_path, seed=0, preset="tiny", probes=["entity"])
    alone = ProbeSet.load(tmp_path)
    assert alone.docs == [d for d in tiny.docs if d["source"] == "entity"]


def test_documents_are_eval_style_and_answers_sit_at_their_offsets(tiny):
    text = {d["id"]: d["text"] for d in tiny.docs}
    assert {tuple(sorted(d)) for d in tiny.docs} == {("domain", "id", "source", "text")}
    assert {d["domain"] for d in tiny.docs} == {"probe"} and {d["source"] for d in tiny.docs} == set(PROBES)
    for t in tiny.targets:
        s = text[t["doc"]]
        assert s[t["char"]:t["char"] + len(t["answer"])] == t["answer"]
        assert not s[t["char"]].isspace() and t["answer"] in t["candidates"]
        assert t["char"] == 0 or not s[t["char"] - 1].isalnum(), "a target starts a word"


@pytest.mark.parametrize("probe", list(PROBES))
def test_brute_force_resolver_agrees_with_every_marked_target(tiny, probe):
    text = {d["id"]: d["text"] for d in tiny.docs}
    targets = [t for t in tiny.targets if t["probe"] == probe]
    answers = [resolve(probe, t["kind"], text[t["doc"]][:t["char"]]) for t in targets]
    wrong = [(t["doc"], t["char"], a, t["answer"]) for t, a in zip(targets, answers) if a != t["answer"]]
    assert not wrong, wrong[:5]
    assert len(targets) > 50 and len(set(answers)) > 1  # the check ran on many, varied answers


def test_resolver_catches_a_wrong_mark(tiny):
    """The agreement above is not vacuous: move one target to its neighbour's answer and it fails."""
    text = {d["id"]: d["text"] for d in tiny.docs}
    t = next(t for t in tiny.targets if t["probe"] == "entity")
    other = next(c for c in t["candidates"] if c != t["answer"])
    assert resolve("entity", "box", text[t["doc"]][:t["char"]]) != other


def test_documents_fit_their_length_budget(tiny):
    for d in tiny.docs:
        cfg = PROBES[d["source"]].presets["tiny"]
        assert count_pretokens(d["text"]) <= cfg.max_pretokens


def test_answers_are_balanced_over_closed_candidate_sets(tmp_path):
    """Answers are uniform over the candidates, so a constant guess is at chance (1/K) within sampling error."""
    generate_probe_set(tmp_path, seed=3, preset="tiny", probes=["pronoun", "entity", "brackets"], docs_per_level=96)
    ps = ProbeSet.load(tmp_path)
    for probe, kind in (("pronoun", "pronoun"), ("entity", "box"), ("brackets", "delim")):
        ts = [t for t in ps.targets if t["probe"] == probe and t["kind"] == kind]
        k = len(ts[0]["candidates"])
        for i in range(k):  # by position in the candidate list (bracket candidates carry each doc's tag names)
            share = sum(t["candidates"].index(t["answer"]) == i for t in ts) / len(ts)
            se = math.sqrt((1 / k) * (1 - 1 / k) / len(ts))
            assert abs(share - 1 / k) < 4 * se, (probe, ts[0]["candidates"][i], share, len(ts))


def test_shortcut_heuristics_stay_at_chance(tmp_path):
    """Giveaways measured on a larger set: beyond the first level, the most recent entity / pronoun / box and
    the last explicit mention of an object are right at about chance rate (4 binomial SEs); the positional cue
    of the pronoun probe (target among the first four sentences) stays at its designed 5/8."""
    generate_probe_set(tmp_path, seed=5, preset="tiny", probes=["pronoun", "entity"], docs_per_level=160)
    rows = baseline_rows(ProbeSet.load(tmp_path).targets)
    checked = 0
    for r in rows:
        if r["probe"] == "pronoun" and r["kind"] == "pronoun" and r["level"] >= 1:
            hs, p = ("recent_entity", "recent_pronoun"), 0.5
            se = math.sqrt(0.25 / r["n_targets"])
            assert abs(r["first_entity"] - 0.625) < 4 * se and r["second_entity"] < 0.625 + 4 * se
        elif r["probe"] == "entity":
            hs, p = ("recent_box", "last_explicit"), 0.2
        else:
            continue
        for h in hs:
            se = math.sqrt(p * (1 - p) / r["n_targets"])
            assert abs(r[h] - p) < 4 * se, (r["probe"], r["level"], h, r[h], r["n_targets"])
            checked += 1
    assert checked == 3 * 2 + 4 * 2


def test_stored_baselines_match_the_text(tiny):
    """The heuristic answers written in targets.jsonl are what the text says (recomputed here)."""
    text = {d["id"]: d["text"] for d in tiny.docs}
    for t in tiny.targets:
        ep = episode_of(text[t["doc"]][:t["char"]])
        if t["probe"] == "entity":
            assert t["baselines"]["recent_box"] == re.findall(r"\d", ep.rstrip().removesuffix("=="))[-1]
        elif t["probe"] == "pronoun" and t["kind"] == "pronoun":
            prons = re.findall(r", and then (she|he) ", ep)
            assert t["baselines"]["recent_pronoun"] == (prons[-1] if prons else None)
        elif t["probe"] == "recall":
            assert len(re.findall(rf"\b{t['answer']}\b", ep)) == 1, "the value occurs once before: its own pair"


def test_levels_and_kinds_are_all_present(tiny):
    _, groups = by_level(tiny)
    for name, probe in PROBES.items():
        for level in probe.presets["tiny"].levels:
            assert any(k[0] == name and k[2] == level for k in groups), (name, level)
    assert {k[1] for k in groups if k[0] == "pronoun"} == {"pronoun", "name"}
