"""The claim table recovers planted effects with the right verdicts, follows one verdict rule, picks matched-loss
points correctly, reads per-checkpoint score files (and refuses another eval set's), and rewrites only its block
in RESULTS.md."""
import argparse

import numpy as np
import pandas as pd
import pytest

from tokengap.analysis.claims import ABOVE_1, NEAR_0, NEG, POS, Region, build, judge, matched_points, run
from tokengap.analysis.errors import AnalysisError
from tests.synthetic import PLANTED


@pytest.fixture(scope="module")
def results(synthetic_results):
    return synthetic_results(seeds=(0, 1), n_docs_per_domain=6, units=6)


def _row(rows, what, view="equal tokens"):
    return next(r for r in rows if r["what"].startswith(what) and r["view"] in (view, "training"))


def test_planted_effects_and_verdicts(results):
    rows, info = build(results, n_boot=300)
    assert info["seeds"] == {"transformer": 2, "hybrid": 2, "recurrent": 2} and info["pairs"] == ["Mamba2 pair"]
    assert {r["pair"] for r in rows} == {"Mamba2 pair"}  # the study's pair has no score files: not run
    ratio = _row(rows, "content ÷ function gap")
    planted = PLANTED["content"] / PLANTED["function"]  # 3: the lexicon's PTB and UD classes agree
    assert ratio["lo"] <= planted <= ratio["hi"] and ratio["kind"] == "ratio"
    assert ratio["verdict"] == judge(ratio["lo"], ratio["hi"], ABOVE_1)  # inconclusive here: 800 function tokens
    content = _row(rows, "gap on content words")
    assert content["lo"] <= PLANTED["content"] <= content["hi"] and content["verdict"] == "agrees"
    assert content["rel_lo"] <= content["relative"] <= content["rel_hi"] and content["relative"] > 1
    oc = _row(rows, "opening − closing delimiters (all domains)")
    assert oc["lo"] <= PLANTED["open_delim"] - PLANTED["close_delim"] <= oc["hi"] and oc["verdict"] == "agrees"
    # the synthetic curves put the hybrid, then the recurrent model, ahead on content words; recurrent worst on
    # repeats (+0.15)
    assert _row(rows, "content words, not repeated: transformer − hybrid (final")["verdict"] == "agrees"
    rr = _row(rows, "repeated 4-grams: transformer − recurrent (final")
    assert rr["verdict"] == "agrees" and rr["measured"] == pytest.approx(-0.15, abs=0.02)
    assert all(r["claim"] in (0, 1, 2, 3, 4, 6) for r in rows)  # 0: the matched points; no probe results written
    assert [r["claim"] for r in rows] == sorted(r["claim"] for r in rows)
    # matched loss: the synthetic curves have the same overall loss for every architecture at each step, so the
    # matched points are the same step; the gaps there come from the curves' filters
    ml = [r for r in rows if r["view"] == "matched loss"]
    assert ml and all(r["source"].startswith("training curves") for r in ml)
    assert abs(_row(rows, "overall gap at the matched points", "matched loss")["measured"]) < 0.01


@pytest.mark.parametrize("lo,hi,region,verdict", [
    (0.01, 0.03, POS, "agrees"), (-0.01, 0.03, POS, "inconclusive"), (-0.03, -0.01, POS, "disagrees"),
    (-0.3, -0.1, NEG, "agrees"), (0.1, 0.2, NEG, "disagrees"),
    (-0.1, 0.2, NEAR_0, "agrees"), (0.2, 0.4, NEAR_0, "inconclusive"), (0.3, 0.6, NEAR_0, "disagrees"),
    (-0.6, -0.3, NEAR_0, "disagrees"), (np.nan, np.nan, POS, "inconclusive"), (0.1, 0.2, None, "—"),
    (1.2, 1.9, Region(1.0, float("inf"), "> 1"), "agrees"), (3.0, 9.0, Region(0.5, 9.5, "rank ≤ 9"), "agrees"),
    (3.0, 12.0, Region(0.5, 9.5, "rank ≤ 9"), "inconclusive"), (17, 28, Region(0.5, 9.5, "rank ≤ 9"), "disagrees"),
])
def test_one_verdict_rule(lo, hi, region, verdict):
    assert judge(lo, hi, region) == verdict


def curve_frame(losses: dict) -> pd.DataFrame:
    """{(seed, step): overall loss} -> annealed curve rows."""
    return pd.DataFrame([{"seed": s, "step": t, "tokens": t * 1000, "eval/all": v} for (s, t), v in losses.items()])


def test_matched_points_pick_the_closest_seed_means():
    a = curve_frame({(0, 10): 3.0, (1, 10): 3.2, (0, 20): 2.6, (1, 20): 2.8, (0, 30): 2.5, (1, 30): 2.5})
    b = curve_frame({(0, 10): 2.75, (1, 10): 2.65, (0, 20): 2.3, (1, 20): 2.3, (0, 30): 2.0, (1, 30): 2.2})
    # seed means: A 3.1, 2.7, 2.5; B 2.7, 2.3, 2.1 -> A step 20 and B step 10 (both 2.7)
    pt = matched_points(a, b)
    assert (pt["step_a"], pt["step_b"], pt["tokens_a"], pt["tokens_b"]) == (20, 10, 20000, 10000)
    assert pt["diff"] == pytest.approx(0.0, abs=1e-12)
    pt = matched_points(a, curve_frame({(0, 10): 1.0, (0, 20): 0.9}))  # nothing close: the closest pair anyway
    assert (pt["step_a"], pt["step_b"]) == (30, 10) and pt["diff"] == pytest.approx(1.5)


def write_annealed(res, eval_hash=None, steps=(3200,)):
    """Per-token score files at annealed points: the planted final losses, the same at every step."""
    from tokengap.evaluation.scorefile import load_scores, save_scores

    for arch in ("transformer", "hybrid"):
        for s in (0, 1):
            sc = load_scores(res / "scores" / f"{arch}-s{s}.npz")
            meta = {**sc.meta, **({"eval_hash": eval_hash} if eval_hash else {})}
            for step in steps:
                save_scores(res / "scores" / "annealed" / f"{arch}-s{s}-step{step:07d}.npz", sc.loss,
                            np.zeros(len(sc.loss), bool), {**meta, "step": step, "annealed": True})


def test_matched_loss_from_per_token_files_and_refusal(results, tmp_path):
    import shutil

    res = tmp_path / "res"
    shutil.copytree(results, res)
    write_annealed(res, steps=(200, 400, 800, 1600, 3200))
    rows, info = build(res, n_boot=200)
    ml = {r["what"]: r for r in rows if r["view"] == "matched loss"}
    assert {r["source"] for r in ml.values()} == {"per-token losses"}
    # the annealed files hold the final losses, so each matched-loss row equals its equal-token row
    eq = {r["what"]: r for r in rows if r["view"] == "equal tokens"}
    g = "gap on content words (PTB NN*, VB*, JJ*, RB*; all pieces)"
    assert ml[g]["measured"] == pytest.approx(eq[g]["measured"], abs=1e-9)
    assert "existential there (EX) − all tokens" in ml  # the same masks as at equal tokens, not only the filters
    # a file scored on another eval set is refused, by name
    write_annealed(res, eval_hash="f" * 64, steps=(800,))
    with pytest.raises(AnalysisError, match="transformer-s0-step0000800.npz.*eval_hash"):
        build(res, n_boot=50)


def test_update_replaces_only_the_block(results, tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text("before\n<!-- claims:begin -->\nold table\n<!-- claims:end -->\nafter\n")
    run(argparse.Namespace(results=str(results), update=str(doc), n_boot=100))
    text = doc.read_text()
    assert text.startswith("before\n<!-- claims:begin -->\n") and text.endswith("<!-- claims:end -->\nafter\n")
    assert "old table" not in text and "| # | claim |" in text and "| # | measurement |" in text
    assert (results / "claims.csv").is_file() and (results / "claims.md").is_file()


def test_describe_layers():
    from tokengap.analysis.claims import describe_layers

    assert describe_layers(["mamba2"] * 3 + ["attention"] + ["mamba2"] * 3 + ["attention"]) == "(mamba2 ×3, attention) ×2"
    assert describe_layers(["attention"] * 8) == "attention ×8"
    assert describe_layers(["mamba2", "attention", "mamba2", "swa"]) == "mamba2, attention, mamba2, swa"


def test_robustness_rows_leave_out_the_overlapping_documents(results, tmp_path):
    import json
    import shutil

    import numpy as np
    import pandas as pd

    from tokengap.analysis.claims import clean_tokens

    res = tmp_path / "res"
    shutil.copytree(results, res)
    doc = pd.read_parquet(res / "labels.parquet", columns=["doc_index"])["doc_index"].to_numpy()
    n_docs = int(doc.max()) + 1
    docs = {str(i): {"id": f"d{i}", "domain": "x", "ngram13_in_train": 0.9 if i < 3 else 0.0,
                     "sibling_in_train": i == 5} for i in range(n_docs)}
    (res / "eval_overlap.json").write_text(json.dumps({"eval_hash": "h", "n_docs": n_docs, "docs": docs}))
    keep, n_bad, _ = clean_tokens(res, doc)
    assert n_bad == 4 and keep.sum() == np.isin(doc, [0, 1, 2, 5], invert=True).sum()
    run(argparse.Namespace(results=str(res), update=None, n_boot=100))
    text = (res / "claims.md").read_text()
    assert "Without the 4 of" in text and f"({int(keep.sum()):,} tokens left" in text


# ---- claim 5 without the shortcut-settled probe targets (results/probes/shortcuts.npz) ---------------------------
PROBE_KINDS = (("pronoun", "pronoun"), ("entity", "box"), ("brackets", "delim"), ("recall", "value"))


def write_probe_results(res, settled_share: dict, planted: dict, h: str = "hsynth", n_docs: int = 24,
                        per_doc: int = 8):
    """results/probes/{transformer,hybrid}-s{0,1}.npz for the four claim-5 probes, and the shortcut flags.

    Per probe, `settled_share` of the targets (evenly spread) are settled by a shortcut; `planted[probe]` =
    (gap on the settled targets, gap on the others), gap = loss(transformer) - loss(hybrid)."""
    import numpy as np

    from tokengap.analysis.probes.scoring import save_results
    from tokengap.analysis.probes.shortcuts import save_shortcuts

    n = n_docs * per_doc
    cols: dict = {k: [] for k in ("probe", "kind", "doc", "level", "settled", "gap")}
    for p, (probe, kind) in enumerate(PROBE_KINDS):
        doc = p * n_docs + np.repeat(np.arange(n_docs), per_doc)
        settled = (np.arange(n) * settled_share.get(probe, 0.0)) % 1 + settled_share.get(probe, 0.0) > 1 - 1e-9
        cols["probe"] += [probe] * n
        cols["kind"] += [kind] * n
        cols["doc"].append(doc)
        cols["level"].append(np.where(doc % n_docs < n_docs // 2, 1, 2))
        cols["settled"].append(settled)
        cols["gap"].append(np.where(settled, *planted[probe]))
    probe, kind = np.array(cols["probe"]), np.array(cols["kind"])
    doc, level = np.concatenate(cols["doc"]).astype(np.int32), np.concatenate(cols["level"]).astype(np.int32)
    settled, gap = np.concatenate(cols["settled"]), np.concatenate(cols["gap"])
    N = len(probe)
    rng = np.random.default_rng(0)
    base = 3.0 + 0.3 * rng.standard_normal(N)
    for arch in ("transformer", "hybrid"):
        for s in (0, 1):
            loss = base + (gap if arch == "transformer" else 0.0) + 0.01 * rng.standard_normal(N)
            arrays = {"loss": loss.astype(np.float32), "correct": rng.random(N) < 0.3, "token": np.zeros(N, np.int64),
                      "n_pieces": np.ones(N, np.int16), "first_shared": np.zeros(N, bool),
                      "chance": np.full(N, 0.25, np.float32), "chance_token": np.full(N, 0.25, np.float32),
                      "doc": doc, "level": level, "probe": probe, "kind": kind, "answer": np.array(["x"] * N),
                      "piece": np.array([" x"] * N)}
            save_results(res / "probes" / f"{arch}-s{s}.npz", arrays,
                         {"probe_set_hash": h, "arch": arch, "axes": {p: "level" for p, _ in PROBE_KINDS}})
    sc = {"shortcut_candidates": np.where(settled, 1, 2).astype(np.int16), "shortcut_settles": settled,
          "shortcut_chance": np.where(settled, 1.0, 0.5).astype(np.float32), "probe": probe, "kind": kind,
          "level": level}
    return save_shortcuts(res / "probes" / "shortcuts.npz", sc, h), settled


def test_claim5_rows_without_shortcut_settled_targets(results, tmp_path):
    """Brackets: the hybrid wins by 1.0 nat on the settled half and loses by 0.5 on the rest, so the gap flips
    from +0.25 (disagrees with "transformer wins") to -0.5 (agrees) without the settled targets; pronoun: the
    whole +0.2 gap sits on the settled quarter; entity and recall have nothing settled and get no extra row."""
    import shutil

    import pandas as pd

    res = tmp_path / "res"
    shutil.copytree(results, res)
    sc_path, settled = write_probe_results(
        res, {"brackets": 0.5, "pronoun": 0.25},
        {"pronoun": (0.8, 0.0), "entity": (0.1, 0.1), "brackets": (1.0, -0.5), "recall": (0.3, 0.3)})
    rows, _ = build(res, n_boot=200)
    c5 = [r for r in rows if r["claim"] == 5]
    assert all(r["pair"] == "Mamba2 pair" for r in c5)
    assert [r["what"] for r in c5] == [f"probe {p}: loss gap (all levels)" for p, _ in PROBE_KINDS] + [
        f"probe {p}: loss gap (all levels), excluding shortcut-settled targets" for p in ("pronoun", "brackets")]
    by = {r["what"]: r for r in c5}
    full, kept = (lambda p: by[f"probe {p}: loss gap (all levels)"],
                  lambda p: by[f"probe {p}: loss gap (all levels), excluding shortcut-settled targets"])
    assert full("brackets")["measured"] == pytest.approx(0.25, abs=0.01) and full("brackets")["verdict"] == "disagrees"
    assert kept("brackets")["measured"] == pytest.approx(-0.5, abs=0.01) and kept("brackets")["verdict"] == "agrees"
    assert kept("brackets")["hi"] < 0 < full("brackets")["lo"]
    assert full("pronoun")["measured"] == pytest.approx(0.2, abs=0.01) and full("pronoun")["verdict"] == "agrees"
    assert kept("pronoun")["measured"] == pytest.approx(0.0, abs=0.01)
    n = len(settled) // 4
    assert kept("brackets")["tokens"] == n // 2 and full("brackets")["tokens"] == n
    assert kept("pronoun")["tokens"] == n - n // 4
    assert kept("brackets")["note"].startswith(f"{n // 2:,} of {n:,} targets left out")
    assert "shortcut accuracy on the rest 0.500" in kept("brackets")["note"]
    assert full("entity")["measured"] == pytest.approx(0.1, abs=0.01)

    # without the shortcuts file: the same rows less the added ones
    sc_path.rename(tmp_path / "shortcuts.npz")
    plain, _ = build(res, n_boot=200)
    assert pd.DataFrame(plain).equals(pd.DataFrame([r for r in rows if "excluding shortcut-settled" not in r["what"]]))
    # the shortcut flags of another probe set are refused
    from tokengap.analysis.probes.shortcuts import load_shortcuts, save_shortcuts

    sc = load_shortcuts(tmp_path / "shortcuts.npz")
    save_shortcuts(sc_path, {k: getattr(sc, k) for k in ("shortcut_candidates", "shortcut_settles", "shortcut_chance",
                                                          "probe", "kind", "level")}, "another_probe_set")
    with pytest.raises(AnalysisError, match="another_probe_set"):
        build(res, n_boot=50)


def test_holds_for_counts_pairs():
    from tokengap.analysis.claims import holds_for

    assert holds_for({"A": ["agrees", "agrees"], "B": ["agrees"]}) == "both pairs"
    assert holds_for({"A": ["agrees"], "B": ["agrees", "inconclusive"]}) == "A only"
    assert holds_for({"A": ["disagrees"], "B": ["inconclusive"]}) == "neither"
    assert holds_for({"A": ["agrees", "inconclusive"], "B": []}) == "no (A); B not run"
    assert holds_for({"A": [], "B": []}) == "not run"


def test_one_seed_is_said_and_curve_rows_claim_no_interval(synthetic_results):
    """With one run of an architecture the seed level cannot be resampled: text rows' intervals cover documents
    only (and the table says so), rows from the curves (one number per seed) have no interval at all."""
    from tokengap.analysis.claims import to_markdown
    rows, info = build(synthetic_results(seeds=(0,), n_docs_per_domain=6, units=6), n_boot=200)
    assert info["seeds"] == {"transformer": 1, "hybrid": 1, "recurrent": 1}
    curve = [r for r in rows if r["view"] == "training"]
    assert curve and all(r["lo"] != r["lo"] and r["verdict"] == "inconclusive" for r in curve)
    assert all("one seed: curves have no interval" in r["note"] for r in curve)
    content = _row(rows, "gap on content words")
    assert content["lo"] < content["measured"] < content["hi"]  # documents still resampled
    md = to_markdown(rows, info)
    assert "**One seed of transformer, hybrid, recurrent:**" in md and "(one seed: see the pair's table)" in md


def test_seed_spread_names_a_planted_seed_difference(results, tmp_path):
    """seed 1 of the hybrid made 0.5 nats worse on Python identifiers only: that is its largest per-category seed
    difference (0.5 plus the synthetic seeds' own noise of a few hundredths, the category's token count beside it);
    per-seed overall losses as in the score files."""
    import shutil

    from tokengap.analysis import claims
    from tokengap.analysis.labels import read_labels
    from tokengap.evaluation.scorefile import load_scores, save_scores

    res = tmp_path / "results"
    shutil.copytree(results, res)
    labels, _ = read_labels(res / "labels.parquet")
    ident = (labels["py_lex"] == "identifier").to_numpy()
    f = res / "scores" / "hybrid-s1.npz"
    s = load_scores(f)
    save_scores(f, s.loss + 0.5 * ident, s.correct, s.meta)
    old = claims.SPREAD_MIN_TOKENS
    claims.SPREAD_MIN_TOKENS = 1  # the synthetic set is small
    try:
        table = claims.seed_spread_table(res)
    finally:
        claims.SPREAD_MIN_TOKENS = old
    row = next(r for r in table.splitlines() if r.startswith("| hybrid |"))
    import re
    m = re.search(r"\| py_identifier ([0-9.]+) \(n=([0-9,]+)\) \|$", row)
    assert m and abs(float(m.group(1)) - 0.5) < 0.05 and m.group(2) == f"{int(ident.sum()):,}", row
    means = [float(load_scores(res / "scores" / f"hybrid-s{k}.npz").loss.mean()) for k in (0, 1)]
    assert f"s0 {means[0]:.4f}, s1 {means[1]:.4f}" in row and f"| {max(means) - min(means):.4f} |" in row
    assert "py_identifier" not in next(r for r in table.splitlines() if r.startswith("| transformer |"))
