"""Architecture, or just a better model? (tokengap/analysis/progress.py). On synthetic score files whose losses move
with a known progress scalar: a later checkpoint of the same model leaves every residual at 0, an effect planted on one
category is recovered there and nowhere else, a trajectory that is too short is flagged as extrapolated, and
without per-token files the logged filtered losses stand in, saying so."""
import shutil

import numpy as np
import pytest

from tokengap.analysis.claims import build, load_inputs, to_markdown
from tokengap.analysis.progress import BEYOND, LOGGED, TOKENS, comparisons, describe, predicted, table, token_categories
from tokengap.evaluation.scorefile import load_scores, save_scores

STEPS = (100, 200, 300, 400, 500)
PROGRESS = dict(zip(STEPS, (2.0, 1.2, 0.8, 0.5, 0.3)))  # a loss scale that training shrinks
PAIR = ("transformer", "hybrid")


@pytest.fixture(scope="module")
def base(synthetic_results):
    return synthetic_results(seeds=(0, 1), n_docs_per_domain=6, units=6)


def sensitivity(labels) -> np.ndarray:
    """(N,) how much each token's loss falls per unit of progress: categories differ, so a better model's gap is
    larger on some than on others without any architecture in it."""
    wc, dom = labels["word_class"].astype(str).to_numpy(), labels["domain"].astype(str).to_numpy()
    return (1.0 + 0.8 * (wc == "content") + 0.3 * (wc == "function") - 0.4 * labels["rep_4"].to_numpy(float)
            + 0.3 * (dom == "python") + 0.5 * (dom == "latex"))


def write_model(res, arch: str, steps: tuple, planted=None, delta: float = 0.0, progress=PROGRESS) -> None:
    """arch's score files: annealed points at steps[:-1], the final point at steps[-1]. Seed s is one run whose
    checkpoints share its per-token noise (so a later `arch` with the same seeds continues the earlier one); seed 1
    progresses 5% faster. planted: (N,) bool, tokens on which this model is better by `delta` at every point."""
    from tokengap.analysis.labels import read_labels

    labels, _ = read_labels(res / "labels.parquet")
    n, sens = len(labels), sensitivity(labels)
    base = 3.0 + np.random.default_rng(99).gamma(2.0, 0.5, n)
    meta = {k: v for k, v in load_scores(res / "scores" / "transformer-s0.npz").meta.items() if k != "step"}
    for s in (0, 1):
        noise = 0.2 * np.random.default_rng(s).standard_normal(n)
        for step in steps:
            loss = base + noise + sens * progress[step] * (1 + 0.05 * s) - (delta * planted if delta else 0.0)
            path = res / "scores" / (f"{arch}-s{s}.npz" if step == steps[-1] else
                                     f"annealed/{arch}-s{s}-step{step:07d}.npz")
            path.parent.mkdir(parents=True, exist_ok=True)
            save_scores(path, loss.astype(np.float32), np.zeros(n, bool), {**meta, "name": arch, "step": step})


def results_with(base, tmp_path, a_steps, b_steps, progress=PROGRESS, **planted):
    res = tmp_path / "res"
    shutil.copytree(base, res)
    write_model(res, "transformer", a_steps, progress=progress)
    write_model(res, "hybrid", b_steps, progress=progress, **planted)
    return res


def compare(res, n_boot=300):
    inp, _ = load_inputs(res)
    progs, missing = comparisons(inp, "Mamba2 pair", PAIR, n_boot)
    assert len(progs) == 1 and not missing
    return progs[0], inp


def finite(t):
    return t[np.isfinite(t["residual_lo"]) & (t["category"] != "all")]


def test_a_later_checkpoint_of_the_same_model_is_all_progress(base, tmp_path):
    res = results_with(base, tmp_path, STEPS[:3], STEPS)  # B = A trained on to step 500
    p, _ = compare(res)
    t = finite(table(p))
    assert p.source == TOKENS and p.used == PAIR and not any(p.extrapolated.values())
    assert not any(p.extrapolated_share.values())
    assert p.obs.mean[0] > 0.4  # a large overall gap, and large category gaps ...
    assert (t["observed"].abs() > 0.2).all() and len(t) > 40
    assert (t["residual_lo"] <= 0).all() and (t["residual_hi"] >= 0).all()  # ... all of it progress
    assert t["residual"].abs().max() < 1e-3 and (t["verdict"] == "a better model").all()
    assert t["observed"].std() > 0.1  # not a trivial case: the categories' gaps differ
    assert (t["pred_a"] - t["observed"]).abs().max() < 1e-3  # both trajectories predict it
    assert (t["pred_b"] - t["observed"]).abs().max() < 1e-3
    assert p.resid.mean[0] == pytest.approx(0, abs=1e-12)  # the overall residual: 0 by construction


def test_a_planted_architecture_effect_is_recovered_and_the_rest_stays_at_0(base, tmp_path):
    from tokengap.analysis.labels import read_labels

    labels, _ = read_labels(base / "labels.parquet")
    comment = labels["py_lex"].astype(str).to_numpy() == "comment"
    res = results_with(base, tmp_path, STEPS[:3], STEPS, planted=comment, delta=0.2)
    p, _ = compare(res)
    t = finite(table(p)).set_index("category")
    x = t.loc["py_comment"]
    assert x["residual_lo"] <= 0.2 <= x["residual_hi"] and x["residual_lo"] > 0.1
    assert x["verdict"] == "hybrid's architecture" and x["observed"] > x["predicted"] + 0.15
    # everything without Python comments in it stays at 0 (domain=python holds them: 0.2 × their share is left)
    masks = token_categories(load_inputs(res)[0])
    rest = t[[not (comment & masks[name]).any() for name in t.index]]
    assert len(rest) > 30 and (rest["residual_lo"] <= 0).all() and (rest["residual_hi"] >= 0).all()
    share = comment[labels["domain"].astype(str).to_numpy() == "python"].mean()
    assert t.loc["domain=python", "residual"] == pytest.approx(0.2 * share, abs=0.01)
    # the claims table's column: the same residual, judged by the claims' rule (> 0: the hybrid helps)
    rows, info = build(res, n_boot=200)
    r = next(r for r in rows if r["view"] == BEYOND and r["what"] == "gap on Python comments")
    assert r["measured"] == pytest.approx(x["residual"], abs=0.01) and r["verdict"] == "agrees"
    assert r["source"] == TOKENS
    assert "| Mamba2 pair, beyond a better model |" in to_markdown(rows, info)


def test_a_trajectory_that_does_not_reach_the_gap_is_flagged(base, tmp_path):
    # A's only earlier point is close to its final one: walking back 0.5 of progress leaves its trajectory
    progress = {**PROGRESS, 250: 0.9}
    res = results_with(base, tmp_path, (250, 300), STEPS, progress)
    p, _ = compare(res)
    assert p.extrapolated == {"transformer": True, "hybrid": False}
    assert p.used == ("hybrid",)  # the prediction comes from the trajectory that covers the gap
    assert "transformer's trajectory extrapolated" in table(p)["note"].iloc[1]
    assert "**extrapolated**" in describe(p)
    # neither reaches: both averaged, both flagged, in the claims table's notes too
    shutil.rmtree(res / "scores" / "annealed")
    write_model(res, "transformer", (250, 300), progress=progress)
    write_model(res, "hybrid", (400, 500), progress=progress)
    p, _ = compare(res)
    assert p.used == PAIR and p.extrapolated == {"transformer": True, "hybrid": True}
    rows, _ = build(res, n_boot=100)
    assert any("hybrid's trajectory extrapolated" in r["note"] for r in rows if r["view"] == BEYOND)


def test_logged_filtered_losses_stand_in_without_per_token_files(base, tmp_path):
    """The synthetic curves have the same overall loss for every model and the hybrid 0.05 better on content words
    not repeated: the gap there is all architecture."""
    p, inp = compare(base)
    assert p.source == LOGGED and "content_novel" in p.names and "domain=books" not in p.names
    t = table(p).set_index("category")
    assert abs(t.loc["all", "observed"]) < 0.01
    assert t.loc["content_novel", "residual"] == pytest.approx(0.05, abs=0.015)
    assert t.loc["content_novel", "tokens"] == 0  # one number per seed: no token counts, seeds resampled only
    # per-token files for one model only: both fall back to the logged losses
    res = tmp_path / "res"
    shutil.copytree(base, res)
    write_model(res, "transformer", STEPS[:3])
    assert compare(res)[0].source == LOGGED


def test_no_trajectory_is_said_in_one_line_and_the_column_left_out(base, tmp_path):
    res = tmp_path / "res"
    shutil.copytree(base, res)
    shutil.rmtree(res / "curves")
    inp, _ = load_inputs(res)
    progs, missing = comparisons(inp, "Mamba2 pair", PAIR, 50)
    assert progs == [] and len(missing) == 1 and "hybrid have no trajectory" in missing[0] and "\n" not in missing[0]
    rows, info = build(res, n_boot=50)
    assert not any(r["view"] == BEYOND for r in rows) and "beyond a better model" not in to_markdown(rows, info)


def test_predicted_interpolates_walking_back_and_flags_extrapolation():
    # overall loss 3.0, 2.0, 1.5 (final); a category 5.0, 3.0, 2.5 (slope 2 then 1 per nat of overall loss)
    curve = np.array([[[3.0, 5.0], [2.0, 3.0], [1.5, 2.5]]] * 4)
    gap = np.array([0.25, 1.0, -1.0, 2.0])
    pred, ext = predicted(curve, gap)
    assert pred[:, 0] == pytest.approx(gap)  # all tokens: the overall gap itself
    # 0.25 back: inside the last segment (slope 1); 1.0 back: 0.5 at slope 1 then 0.5 at slope 2; a negative gap
    # the same with its sign; 2.0 back: beyond the first point, the first segment extended
    assert pred[:, 1] == pytest.approx([0.25, 1.5, -1.5, 3.5])
    assert ext.tolist() == [False, False, False, True]
    # a trajectory that wanders back up: the nearest point back that reaches the target counts
    wander = np.array([[[2.0, 9.0], [1.6, 2.0], [1.9, 4.0], [1.5, 3.0]]])
    assert predicted(wander, np.array([0.3]))[0][0, 1] == pytest.approx(0.75)


def test_figure_and_results_files(base, tmp_path):
    """`analysis claims` writes results/progress.{csv,md} and the RESULTS.md block; `figures` draws one figure per
    pair from the CSV."""
    import argparse

    from tokengap.analysis.claims import run
    from tokengap.analysis.figures import make_all

    res = results_with(base, tmp_path, STEPS[:3], STEPS)
    doc = tmp_path / "RESULTS.md"
    doc.write_text("<!-- claims:begin -->\n<!-- claims:end -->\n"
                   "<!-- progress:begin -->\nstale table\n<!-- progress:end -->\n")
    run(argparse.Namespace(results=str(res), update=str(doc), n_boot=100))
    text = doc.read_text()
    assert "stale table" not in text and "| Mamba2 pair | 1 |" in text and "transformer − hybrid" in text
    assert "transformer − recurrent" in text  # the recurrent model: its logged trajectory
    assert (res / "progress.csv").is_file() and "| family | category |" in (res / "progress.md").read_text()
    entries, _ = make_all(res, tmp_path / "figs", n_boot=50, probes=False)
    e = next(e for e in entries if e["name"] == "progress_mamba2_pair")
    assert (tmp_path / "figs" / "progress_mamba2_pair.png").stat().st_size > 0 and "identity" in e["caption"]


def test_logged_losses_of_one_seed_give_no_interval(synthetic_results):
    """One run of each model: the logged values (one number per seed) leave nothing to resample, so the
    residuals have no interval (and no verdict) rather than a zero-width one."""
    inp, _ = load_inputs(synthetic_results(seeds=(0,), n_docs_per_domain=6, units=6))
    progs, _ = comparisons(inp, "Mamba2 pair", PAIR, 200)
    t = table(progs[0]).set_index("category")
    assert progs[0].source == LOGGED and np.isfinite(t.loc["content_novel", "residual"])
    assert np.isnan(t.loc["content_novel", "residual_lo"]) and np.isnan(t.loc["content_novel", "residual_hi"])
