"""Shortcuts of the v1 probe set (tokengap/analysis/probes/shortcuts.py): resolvers on hand-built documents, the flags
on a generated probe set, compare with `exclude`, and the probe-set hash check (CPU, seconds).

The resolvers read only the text before a target; the hand-built documents below are in the generators'
formats, with prior episodes that mention (or not) the people of the current one.
"""
from __future__ import annotations

import re

import json
from pathlib import Path

import numpy as np
import pytest

from tokengap.analysis.probes.compare import compare
from tokengap.analysis.probes.probeset import ProbeSet, generate_probe_set
from tokengap.analysis.probes.scoring import ProbeResult, load_results, save_results
from tokengap.analysis.probes.shortcuts import (ARRAYS, check_matches, compute_shortcuts, load_shortcuts,
                                                pronoun_people, save_shortcuts, shortcut_candidates, shortcut_rows,
                                                target_shortcut)

REPO = Path(__file__).resolve().parents[1]


# ---- hand-built documents ---------------------------------------------------------------------------------------
PRIOR = ("Tom washed the kettle. The baker sold the rug, and then he smiled. Anna bought the lamp on Monday. "
         "Asked about the lamp, Anna said nothing more.")


def test_pronoun_name_settled_when_the_answer_is_the_only_new_person():
    doc = PRIOR + "\n\n" + "Tom cleaned the map. Mary carried the drum. Later, speaking of the drum, "
    assert shortcut_candidates("pronoun", "name", doc) == ["Mary"]
    assert target_shortcut("pronoun", "name", doc, "Mary") == (1, True, 1.0)


def test_pronoun_name_not_settled_when_several_people_are_new():
    doc = PRIOR + "\n\n" + "Tom cleaned the map. Mary carried the drum. Peter fixed the sled. Asked about the drum, "
    assert shortcut_candidates("pronoun", "name", doc) == ["Mary", "Peter"]
    assert target_shortcut("pronoun", "name", doc, "Mary") == (2, False, 0.5)
    # the first episode of a document: everybody is new, the shortcut leaves every person
    first = "Tom cleaned the map. Mary carried the drum. Asked about the drum, "
    assert target_shortcut("pronoun", "name", first, "Mary") == (2, False, 0.5)
    # the answer mentioned before: the shortcut leaves only others, and guessing among them is always wrong
    assert target_shortcut("pronoun", "name", doc.replace("Mary", "Anna"), "Anna") == (1, False, 0.0)


def test_pronoun_names_are_matched_as_whole_words():
    doc = "Ella bought the lamp. Asked about the lamp, Ella said nothing more.\n\nEllen moved the fan. " \
          "Tom packed the tent. Asked about the fan, "
    people = pronoun_people(doc)
    assert [(p["surface"], p["gender"], p["novel"]) for p in people] == [("Ellen", "she", True), ("Tom", "he", True)]


def test_pronoun_gender_settled_by_the_genders_of_the_new_people():
    """Kind "pronoun": the new people's genders. The role noun mentioned before does not count; two new women
    settle "she" although neither alone is singled out."""
    doc = PRIOR + "\n\n" + ("The baker found the bowl, and then he sat down. The judge lost the vase, and then she "
                            "waved. Mary washed the boat. When someone mentioned the vase, ")
    assert shortcut_candidates("pronoun", "pronoun", doc) == ["she"]
    assert target_shortcut("pronoun", "pronoun", doc, "she") == (1, True, 1.0)
    mixed = doc.replace("Mary washed", "Peter washed")
    assert target_shortcut("pronoun", "pronoun", mixed, "she") == (2, False, 0.5)
    assert [p["novel"] for p in pronoun_people(mixed)] == [False, True, True]


def test_brackets_settled_when_one_family_is_open():
    assert target_shortcut("brackets", "delim", "( ( [ the cat . ] ", ")") == (1, True, 1.0)
    latex = "<em> \\begin{quote} { run . } \\end{quote} "
    assert target_shortcut("brackets", "delim", latex, "</em>") == (1, True, 1.0)
    # the previous line of the episode does not count
    assert target_shortcut("brackets", "delim", "( a . )\n[ ( dogs . ) ", "]") == (1, True, 1.0)


def test_brackets_not_settled_when_several_families_are_open():
    assert shortcut_candidates("brackets", "delim", "( [ ( a . ) ") == [")", "]"]
    assert target_shortcut("brackets", "delim", "( [ ( a . ) ", "]") == (2, False, 0.5)
    prefix = "( <b> \\begin{proof} [ a . ] "
    assert shortcut_candidates("brackets", "delim", prefix) == [")", "</b>", "\\end{proof}"]
    assert target_shortcut("brackets", "delim", prefix, "\\end{proof}") == (3, False, pytest.approx(1 / 3))


def test_entity_counts_the_boxes_mentioned_in_the_episode():
    prior = "The pen is in box 5. Box 2 holds the cup. Now the pen is in box 5."
    prose = prior + "\n\n" + ("The key is in box 3. Box 1 holds the coin. The card is in box 4. Swap box 3 and box 1. "
                              "Now the key is in box ")
    assert shortcut_candidates("entity", "box", prose) == ["1", "3", "4"]
    assert target_shortcut("entity", "box", prose, "1") == (3, False, pytest.approx(1 / 3))
    code = 'put("key", 3)\nput("coin", 1)\nput("card", 4)\nmove_all(4, 2)\nassert where("card") == '
    assert target_shortcut("entity", "box", code, "2") == (4, False, 0.25)
    assert target_shortcut("entity", "box", code, "5") == (4, False, 0.0)  # an unmentioned box: never guessed


def test_recall_eliminates_the_values_already_answered():
    prior = "Rome goes with song. Kyiv goes with king.\nKyiv goes with king."  # another episode: does not count
    prose = prior + "\n\n" + "Oslo goes with water. Lima goes with song. Rome goes with horse.\nLima goes with "
    assert target_shortcut("recall", "value", prose, "song") == (3, False, pytest.approx(1 / 3))
    later = prose + "song. Oslo goes with "
    assert shortcut_candidates("recall", "value", later) == ["water", "horse"]
    assert target_shortcut("recall", "value", later, "water") == (2, False, 0.5)
    code = "[lookup]\noslo = water\nlima = song\nrome = horse\n[check]\nlima = song\noslo = "
    assert shortcut_candidates("recall", "value", code) == ["water", "horse"]
    assert shortcut_candidates("recall", "value", code.rsplit("\n", 2)[0] + "\nlima = ") == ["water", "song", "horse"]


# ---- a generated probe set ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("probes_sc")
    generate_probe_set(d, seed=0, preset="tiny", docs_per_level=48)
    ps = ProbeSet.load(d)
    return ps, compute_shortcuts(ps)


@pytest.fixture(scope="module")
def small_pronoun(tmp_path_factory):
    """The pronoun shortcut needs documents with many episodes (tiny documents hold two or three)."""
    d = tmp_path_factory.mktemp("probes_sc_pronoun")
    generate_probe_set(d, seed=0, preset="small", probes=["pronoun"], docs_per_level=16)
    ps = ProbeSet.load(d)
    return ps, compute_shortcuts(ps)


def rows_of(ps, arrays):
    return {(r["probe"], r["kind"], r["level"]): r for r in shortcut_rows(ps, arrays)}


def test_flags_are_aligned_and_consistent(tiny):
    ps, a = tiny
    n = len(ps.targets)
    assert all(a[k].shape == (n,) for k in ARRAYS)
    assert a["probe"].tolist() == [t["probe"] for t in ps.targets]
    c, s, ch = a["shortcut_candidates"], a["shortcut_settles"], a["shortcut_chance"]
    assert np.all(s == ((c == 1) & (ch == 1.0)))
    assert np.all((ch == 0) | np.isclose(ch, 1 / np.maximum(c, 1)))


def test_pronoun_shortcut_on_a_generated_set(small_pronoun):
    """The answer is always a person new to the document: the shortcut never rules it out, settles a third of
    the name targets at every k and beats chance by far; for the pronoun kind it settles less as k grows."""
    ps, a = small_pronoun
    r = rows_of(ps, a)
    chance = {(b["probe"], b["kind"], b["level"]): b["chance"] for b in ps.manifest["baselines"]}
    text = {d["id"]: d["text"] for d in ps.docs}
    assert (a["shortcut_chance"] > 0).all()
    for t in ps.targets:  # the parsed people are the episode's candidates, in order
        if t["kind"] == "name":
            assert [p["surface"] for p in pronoun_people(text[t["doc"]][:t["char"]])] == t["candidates"]
    for k in (1, 2, 4, 8):
        assert r["pronoun", "name", k]["shortcut"] > chance["pronoun", "name", k] + 0.25
        assert r["pronoun", "name", k]["shortcut_settled"] > 0.2
        assert r["pronoun", "pronoun", k]["shortcut"] > 0.55
    assert r["pronoun", "pronoun", 1]["shortcut_settled"] > r["pronoun", "pronoun", 16]["shortcut_settled"] + 0.2


def test_other_shortcuts_on_a_generated_set(tiny):
    ps, a = tiny
    r = rows_of(ps, a)
    cands = a["shortcut_candidates"]
    is_ = {k: np.array([t["probe"] == k[0] and t["kind"] == k[1] for t in ps.targets]) for k in
           (("entity", "box"), ("recall", "value"))}
    # brackets: one opener left (the last closer of a line) is always settled; counting settles far more at
    # depth 2 than at the deepest level; guessing among open families beats 1/5
    nesting1 = np.array([t["probe"] == "brackets" and t["nesting"] == 1 for t in ps.targets])
    assert a["shortcut_settles"][nesting1].all()
    assert r["brackets", "delim", 1]["shortcut_settled"] == 1.0
    assert r["brackets", "delim", 2]["shortcut_settled"] > r["brackets", "delim", 8]["shortcut_settled"] + 0.3
    assert r["brackets", "delim", 2]["shortcut"] > 0.7 and r["brackets", "delim", 8]["shortcut"] > 0.3
    # entity: the answer is always a mentioned box; at least the three initial boxes are; never settled
    assert (a["shortcut_chance"][is_["entity", "box"]] > 0).all() and (cands[is_["entity", "box"]] >= 3).all()
    assert not a["shortcut_settles"][is_["entity", "box"]].any()
    assert r["entity", "box", 1]["shortcut"] > 0.26
    # recall: elimination only, the table less the values already answered in the episode; never settled
    assert cands[is_["recall", "value"]].tolist() == [len(t["candidates"]) - t["query_index"] for t in ps.targets
                                                      if t["probe"] == "recall"]
    assert (a["shortcut_chance"][is_["recall", "value"]] > 0).all()
    assert not a["shortcut_settles"][is_["recall", "value"]].any()


def test_committed_shortcuts_match_the_committed_results():
    """results/probes/shortcuts.npz belongs to the probe set the committed results were scored on."""
    path = REPO / "results" / "probes" / "shortcuts.npz"
    results = sorted((REPO / "results" / "probes").glob("*-s*.npz"))
    if not path.exists() or not results:
        pytest.skip("no committed probe results")
    sc = load_shortcuts(path)
    rs = [load_results(p) for p in results]
    check_matches(sc, rs)
    assert sc.shortcut_settles[(sc.probe == "brackets") & (sc.level == 1)].all()
    assert not sc.shortcut_settles[sc.probe == "recall"].any()


# ---- compare with exclude, and the hash check ----------------------------------------------------------------
def fake(arch, seed, h="h0", n_docs=40, per_doc=10):
    rng = np.random.default_rng([seed, len(arch)])
    n = n_docs * per_doc
    doc = np.repeat(np.arange(n_docs), per_doc).astype(np.int32)
    level = np.where(doc < n_docs // 2, 1, 2).astype(np.int32)
    arrays = {"loss": rng.gamma(2.0, 1.0, n).astype(np.float32), "correct": rng.random(n) < 0.4,
              "token": np.zeros(n, np.int64), "n_pieces": np.ones(n, np.int16), "first_shared": np.zeros(n, bool),
              "chance": np.full(n, 0.2, np.float32), "chance_token": np.full(n, 0.2, np.float32), "doc": doc,
              "level": level, "probe": np.array(["brackets"] * n), "kind": np.array(["delim"] * n),
              "answer": np.array([")"] * n), "piece": np.array([" )"] * n)}
    meta = {"probe_set_hash": h, "axes": {"brackets": "depth"}, "arch": arch}
    return arrays, meta


def as_result(arrays, meta, path):
    return ProbeResult(**arrays, meta={**meta, "path": path})


def test_compare_with_exclude_drops_exactly_those_targets():
    a = [as_result(*fake("transformer", 0), "transformer-s0.npz")]
    b = [as_result(*fake("hybrid", 0), "hybrid-s0.npz")]
    n = len(a[0].loss)
    exclude = np.random.default_rng(1).random(n) < 0.3
    plain = compare(a, b, n_boot=50)
    assert plain.equals(compare(a, b, n_boot=50, exclude=None)) and "n_excluded" not in plain
    df = compare(a, b, n_boot=50, exclude=exclude).set_index("level")
    for level, sel in ((1, a[0].level == 1), (2, a[0].level == 2), ("all", np.ones(n, bool))):
        keep = sel & ~exclude
        assert df.loc[level, "n_targets"] == keep.sum() and df.loc[level, "n_excluded"] == (sel & exclude).sum()
        assert np.isclose(df.loc[level, "loss_a"], a[0].loss[keep].mean())
        assert np.isclose(df.loc[level, "acc_b"], b[0].correct[keep].mean())
        assert np.isclose(df.loc[level, "gap"], (a[0].loss[keep] - b[0].loss[keep]).mean())
    # a level with every target left out has no row; the pooled row is over what is left
    drop1 = a[0].level == 1
    df1 = compare(a, b, n_boot=50, exclude=drop1, shortcut_chance=np.where(drop1, 1.0, 0.5))
    assert df1["level"].tolist() == [2, "all"] and (df1["n_targets"] == (~drop1).sum()).all()
    assert np.allclose(df1["shortcut_chance"], 0.5)
    with pytest.raises(ValueError, match="shape"):
        compare(a, b, exclude=exclude[:-1])


def test_cli_compare_with_shortcuts_and_a_mismatched_hash(tmp_path, capsys):
    from tokengap.analysis.__main__ import main

    pa = save_results(tmp_path / "transformer-s0.npz", *fake("transformer", 0))
    pb = save_results(tmp_path / "hybrid-s0.npz", *fake("hybrid", 0))
    r = load_results(pa)
    n = len(r.loss)
    arrays = {"shortcut_candidates": np.full(n, 2, np.int16), "shortcut_settles": r.level == 1,
              "shortcut_chance": np.full(n, 0.5, np.float32), "probe": r.probe, "kind": r.kind, "level": r.level}
    good = save_shortcuts(tmp_path / "sc_good.npz", arrays, "h0")
    assert main(["probes", "compare", "--a", str(pa), "--b", str(pb), "--n-boot", "20", "--shortcuts", str(good)]) == 0
    out = capsys.readouterr().out
    assert f"left out {(r.level == 1).sum()} of {n}" in out and "brackets delim 1" in out
    bad = save_shortcuts(tmp_path / "sc_bad.npz", arrays, "h_other_probe_set")
    assert main(["probes", "compare", "--a", str(pa), "--b", str(pb), "--shortcuts", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search("h_other_probe_set.*h0", err) and err.count("\n") == 0
    with pytest.raises(ValueError, match="h_other_probe_set"):
        check_matches(load_shortcuts(bad), [r])
    misaligned = save_shortcuts(tmp_path / "sc_mis.npz", {**arrays, "level": r.level[::-1].copy()}, "h0")
    with pytest.raises(ValueError, match="align"):
        check_matches(load_shortcuts(misaligned), [r])


def test_cli_generate_adds_shortcut_baselines_and_shortcuts_writes_the_file(tmp_path, capsys):
    from tokengap.analysis.__main__ import main

    out = tmp_path / "p"
    assert main(["probes", "generate", "--out", str(out), "--preset", "tiny", "--docs-per-level", "2"]) == 0
    generate_probe_set(tmp_path / "api", seed=0, preset="tiny", docs_per_level=2)
    ps = ProbeSet.load(out)
    assert ps.hash == ProbeSet.load(tmp_path / "api").hash  # the documents and targets are untouched
    m = json.loads((out / "manifest.json").read_text())
    assert all({"shortcut_settled", "shortcut"} <= set(row) for row in m["baselines"])
    row = next(x for x in m["baselines"] if x["probe"] == "brackets" and x["level"] == 1)
    assert row["shortcut_settled"] == 1.0 and row["shortcut"] == 1.0
    assert "shortcut_settled" in capsys.readouterr().out
    assert main(["probes", "shortcuts", "--probes", str(out), "--out", str(tmp_path / "sc.npz")]) == 0
    sc = load_shortcuts(tmp_path / "sc.npz")
    assert sc.probe_set_hash == ps.hash and len(sc.shortcut_settles) == len(ps.targets)
    assert np.array_equal(sc.shortcut_chance, compute_shortcuts(ps)["shortcut_chance"])
