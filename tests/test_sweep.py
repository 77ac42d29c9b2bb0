"""The attention-ratio sweep (configs, analysis, figures), copy-distance binning and the planted-repeat probe."""
import argparse

import numpy as np
import pandas as pd
import pytest

from tokengap.analysis.sweep import BASELINE, CLIFF_BINS, SWEEP, distance_bins


# ---- configs ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", SWEEP, ids=lambda p: p.config)
def test_sweep_configs_resolve_parameter_matched_with_the_declared_attention(point):
    from tokengap.models.__main__ import load
    from tokengap.models.config import count_params_formula

    cfg = load([f"model={point.config}", "size=small"])
    base = count_params_formula(load([f"model={BASELINE}", "size=small"]))["non_embedding"]
    n = count_params_formula(cfg)["non_embedding"]
    assert abs(n / base - 1) <= 0.05, (point.config, n, base)
    layers = cfg.layers()
    assert len(layers) == 8
    attn = [i for i, x in enumerate(layers) if x == "attention"]
    assert len(attn) == point.attention
    assert set(layers) - {"attention"} <= {"gdn"}  # the study's recurrent layer everywhere else
    where = {"first": [0, 1], "last": list(range(8 - point.attention, 8)), "spread": [3, 7],
             "alternating": [1, 3, 5, 7]}
    if point.position:
        assert attn == where[point.position], (point.config, attn)


def test_a_sweep_model_runs_forward_on_cpu():
    import torch

    from tokengap.models.__main__ import load
    from tokengap.models.lm import build_model

    cfg = load(["model=sweep_gdn_a2_first", "size=tiny", "model.n_layers=8"])
    lm = build_model(cfg, vocab_size=64).eval()
    x = torch.randint(0, 64, (1, 16))
    assert lm(x).shape == (1, 16, 64)


# ---- copy-distance bins ----------------------------------------------------------------------------------------------
def test_distance_bins_are_inclusive_and_leave_out_novel_tokens():
    d = np.array([0, 1, 32, 33, 128, 129, 512, 513, 2048, 0])
    bins = dict(distance_bins(d))
    assert list(bins) == [f"dist {lo}-{hi}" for lo, hi in CLIFF_BINS]
    assert bins["dist 1-32"].nonzero()[0].tolist() == [1, 2]
    assert bins["dist 33-128"].nonzero()[0].tolist() == [3, 4]
    assert bins["dist 129-512"].nonzero()[0].tolist() == [5, 6]
    assert bins["dist 513-2048"].nonzero()[0].tolist() == [7, 8]


def test_copy_distance_of_a_hand_made_sequence():
    """A 4-gram planted at 10 and again 40 and 300 tokens later: the repeats' copy distance is to the most recent
    earlier occurrence, and they fall in the right bins."""
    from tokengap.analysis.categories.repetition import ngram_ids, repeats

    rng = np.random.default_rng(0)
    seq = rng.integers(100, 10_000, 400)  # distinct enough that no other 4-gram repeats
    seq[10:14] = seq[50:54] = seq[350:354] = [1, 2, 3, 4]
    rep, dist = repeats(ngram_ids(seq, np.arange(400), 4), np.zeros(400, np.int64))
    assert rep.nonzero()[0].tolist() == [53, 353]
    assert dist[53] == 40 and dist[353] == 300
    bins = dict(distance_bins(dist))
    assert bins["dist 33-128"].nonzero()[0].tolist() == [53] and bins["dist 129-512"].nonzero()[0].tolist() == [353]


# ---- the sweep analysis on planted score files -----------------------------------------------------------------------
def test_sweep_recovers_a_planted_trend(synthetic_results, tmp_path):
    """Every sweep point's loss = the transformer's + 0.3 × max(0, 1 − 4 × attention share) on repeated 4-gram tokens
    − 0.05 on content words: the gap on repeated tokens is −0.3, −0.15, then 0 from 2 of 8 on; the content gain is
    flat (saturated)."""
    from tokengap.analysis.labels import read_labels
    from tokengap.analysis.sweep import run
    from tokengap.evaluation.scorefile import load_scores, save_scores

    import shutil

    res = tmp_path / "res"  # a copy: the fixture's folder is shared
    shutil.copytree(synthetic_results(archs=("transformer",), seeds=(0, 1), n_docs_per_domain=6, units=6,
                                      curves=False), res)
    labels, _ = read_labels(res / "labels.parquet")
    rep = labels["rep_4"].to_numpy(bool)
    content = labels["word_class"].astype(str).to_numpy() == "content"
    rng = np.random.default_rng(3)
    for p in SWEEP:
        if p.config == BASELINE:
            continue
        for s in (0, 1):
            t = load_scores(res / "scores" / f"{BASELINE}-s{s}.npz")
            loss = t.loss + 0.3 * max(0.0, 1 - p.attention / 2) * rep - 0.05 * content + rng.normal(0, 0.01, len(rep))
            save_scores(res / "scores" / f"{p.config}-s{s}.npz", np.maximum(loss, 0.01), t.correct,
                        {**t.meta, "name": p.config})
    doc = tmp_path / "R.md"
    doc.write_text("a\n<!-- sweep:begin -->\n<!-- sweep:end -->\nb\n")
    run(argparse.Namespace(results=str(res), out=str(tmp_path / "fig"), update=str(doc), n_boot=200, overwrite=False))
    df = pd.read_csv(res / "sweep" / "sweep.csv")
    r4 = df[df["category"] == "repeated_4"].set_index("config")
    for p in SWEEP:
        if p.config != BASELINE:
            want = -0.3 * max(0.0, 1 - p.attention / 2)
            assert r4.loc[p.config, "lo"] - 0.01 <= want <= r4.loc[p.config, "hi"] + 0.01, (p.config, r4.loc[p.config])
    c = df[df["category"] == "content"].set_index("config")
    assert (c["gap"] - 0.05).abs().max() < 0.02  # content: +0.05 at every point (rep_4 tokens shift it a little)
    text = doc.read_text()
    assert "smallest attention share leaving at most 25% of it: 2 of 8" in text  # 1 of 8 leaves half
    assert "content words:" in text and "saturated" in text
    assert (tmp_path / "fig" / "sweep_repetition.png").is_file() and (tmp_path / "fig" / "copy_cliff.png").is_file()
    cliff = pd.read_csv(res / "sweep" / "cliff.csv")
    assert set(cliff["arch"]) == {p.config for p in SWEEP if p.config != BASELINE}


# ---- the planted-repeat probe ----------------------------------------------------------------------------------------
def test_planted_generator_spans_gaps_and_a_single_copy():
    from tokengap.analysis.probes.planted import PlantedConfig, foreign_copies, generate

    counts = np.zeros(300)
    counts[1:40] = 1000  # a small, skewed vocabulary: chance repeats of the span's 4-grams must be redrawn
    counts[40:] = 5
    cfg = PlantedConfig(window=256, span=16, gaps=(16, 64, 192), per_gap=6, seed=1)
    a = generate(counts, cfg)
    assert a["tokens"].shape == (18, 256) and a["tokens"].dtype == np.int32
    assert (a["tokens"] != 0).all()  # EOT never drawn
    assert sorted(set(a["gap"].tolist())) == [16, 64, 192] and (np.bincount(a["gap"])[[16, 64, 192]] == 6).all()
    for t, f, s, g in zip(a["tokens"], a["first"], a["second"], a["gap"]):
        assert f >= cfg.lead and s == f + cfg.span + g and s + cfg.span <= cfg.window
        assert (t[f:f + 16] == t[s:s + 16]).all()
        assert foreign_copies(t, f, s, 16, 4).size == 0
        spans = [i for i in range(256 - 16 + 1) if (t[i:i + 16] == t[f:f + 16]).all()]
        assert spans == [f, s]  # the second occurrence is the only copy
    with pytest.raises(ValueError, match="does not fit"):
        generate(counts, PlantedConfig(window=64, span=16, gaps=(64,)))


def test_planted_scoring_aligns_inputs_and_targets_and_the_gain_is_first_minus_second():
    import torch

    from tokengap.analysis.probes.planted import PlantedConfig, generate, retrieval_gain, score_sequences

    a = generate(np.ones(50), PlantedConfig(window=128, span=8, gaps=(8, 32), per_gap=4, seed=0))

    def scorer(inputs, targets, chunk):  # loss = the target id; checks the shift by one with EOT first
        assert (inputs[:, 0] == 0).all() and (inputs[:, 1:] == targets[:, :-1]).all()
        return targets.float(), torch.zeros_like(targets, dtype=torch.bool)
    loss = score_sequences(scorer, a["tokens"], batch_size=3)
    assert np.array_equal(loss, a["tokens"].astype(np.float32))
    # a model that retrieves perfectly: 5 nats on the first copy, 0.5 on the second (after each copy's first token)
    planted = np.full(a["tokens"].shape, 5.0, np.float32)
    for i, (s, g) in enumerate(zip(a["second"], a["gap"])):
        planted[i, s + 1:s + 8] = 0.5 if g == 8 else 2.0
    df = retrieval_gain(planted, a, n_boot=100).set_index("gap")
    assert df.loc[8, "gain"] == pytest.approx(4.5) and df.loc[32, "gain"] == pytest.approx(3.0)
    assert df.loc[8, "lo"] <= 4.5 <= df.loc[8, "hi"] and (df["n"] == 4).all()
