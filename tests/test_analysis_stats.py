"""Statistics: bootstrap for many categories, clustered OLS against statsmodels, and planted effects."""
import numpy as np
import pandas as pd
import pytest

from tokengap.analysis.compare import Side, gap_table, regression
from tokengap.analysis.stats import (bootstrap_weights, category_means, cluster_bootstrap_ci, independent_columns,
                                     ols_clustered, ratio_ci, seed_weights, source_files, two_level_gaps,
                                     two_level_means)


def clustered_data(rng, n_docs=120, per_doc=80, doc_sd=0.3, noise=1.0):
    doc = np.repeat(np.arange(n_docs), per_doc)
    return doc, rng.normal(0, doc_sd, n_docs)[doc] + rng.normal(0, noise, doc.shape[0])


def test_category_means_agrees_with_cluster_bootstrap_ci():
    rng = np.random.default_rng(1)
    doc, v = clustered_data(rng)
    cm = category_means(v, doc, np.ones((1, v.shape[0]), bool), n_boot=2000, seed=3)
    ref = cluster_bootstrap_ci(v, doc, n_boot=2000, seed=4)
    assert np.isclose(cm.mean[0], ref.mean) and cm.n_tokens[0] == ref.n_tokens and cm.n_clusters[0] == 120
    assert abs((cm.hi[0] - cm.lo[0]) - (ref.hi - ref.lo)) < 0.15 * (ref.hi - ref.lo)


def test_stratified_weights_keep_stratum_sizes():
    strata = np.array(["a"] * 5 + ["b"] * 3)
    w = bootstrap_weights(8, 50, seed=0, strata=strata)
    assert (w[:, :5].sum(1) == 5).all() and (w[:, 5:].sum(1) == 3).all()


def test_cluster_bootstrap_covers_where_iid_does_not():
    """Planted category means with document-level noise: the document bootstrap CI covers the truth about 95%
    of the time; a token-level (iid) interval, too narrow, does not."""
    covered, iid_covered, reps = 0, 0, 60
    for r in range(reps):
        rng = np.random.default_rng(100 + r)
        doc, noise = clustered_data(rng, n_docs=60, per_doc=50, doc_sd=1.0)
        cat = rng.random(doc.shape[0]) < 0.3
        v = noise + np.where(cat, 0.04, 0.02)  # truth: category mean 0.04 (document effects have mean 0)
        cm = category_means(v, doc, np.stack([cat, ~cat]), n_boot=400, seed=r)
        covered += cm.lo[0] <= 0.04 <= cm.hi[0]
        se = v[cat].std() / np.sqrt(cat.sum())
        iid_covered += abs(v[cat].mean() - 0.04) <= 1.96 * se
    assert covered / reps >= 0.85
    assert iid_covered / reps < 0.75


# ---- two-level bootstrap: seeds of each side and clusters -------------------------------------------------------------
def seeded_pair(rng, seed_sd: float, n_seeds=3, n_docs=60, per_doc=40, effect=0.05):
    """Losses (S, N) of A and B: B is lower by `effect` on a category (30% of tokens) and by 0.02 elsewhere;
    every training seed shifts a model's loss by N(0, seed_sd) (init and data order), documents by N(0, 0.3)."""
    doc = np.repeat(np.arange(n_docs), per_doc)
    cat = rng.random(doc.shape[0]) < 0.3
    base = 3.0 + rng.normal(0, 0.3, n_docs)[doc]
    adv = np.where(cat, effect, 0.02)

    def side(shift):
        return np.stack([base - shift + rng.normal(0, seed_sd) + rng.normal(0, 0.5, doc.shape[0])
                         for _ in range(n_seeds)])
    return side(0.0), side(adv), doc, cat


def test_seed_weights_resample_seeds():
    w = seed_weights(3, 500, seed=0)
    assert w.shape == (500, 3) and np.allclose(w.sum(1), 1) and set(np.unique(w * 3)) <= {0, 1, 2, 3}
    assert (seed_weights(1, 7, 0) == 1).all()


def test_planted_seed_effect_widens_the_interval():
    """Same documents, same planted gaps; seeds that move each model by 0.1 nats must widen the interval (the
    document bootstrap alone does not see them), and the interval must still cover the planted gap."""
    w = {}
    for sd in (0.0, 0.1):
        la, lb, doc, cat = seeded_pair(np.random.default_rng(5), sd)
        cm = two_level_gaps(la, lb, doc, [cat, ~cat], n_boot=600, seed=1)
        w[sd] = cm.hi[0] - cm.lo[0]
        docs_only = two_level_gaps(la.mean(0), lb.mean(0), doc, [cat], n_boot=600, seed=1)
        if sd:
            assert docs_only.hi[0] - docs_only.lo[0] < 0.5 * w[sd]
    assert w[0.1] > 2 * w[0.0]


def test_two_level_interval_covers_planted_gap_under_seed_noise():
    """Over repeated worlds with seed noise, the two-level interval covers the planted category gap about 95% of the
    time and the documents-only interval far less often."""
    cover, cover_docs, n = 0, 0, 40
    for r in range(n):
        la, lb, doc, cat = seeded_pair(np.random.default_rng(200 + r), 0.08, n_seeds=4)
        cm = two_level_gaps(la, lb, doc, [cat], n_boot=300, seed=r)
        cover += cm.lo[0] <= 0.05 <= cm.hi[0]
        d = two_level_gaps(la.mean(0), lb.mean(0), doc, [cat], n_boot=300, seed=r)
        cover_docs += d.lo[0] <= 0.05 <= d.hi[0]
    assert cover / n >= 0.8 and cover_docs / n < 0.6, (cover, cover_docs)


def test_two_level_contrast_and_ratio_recover_planted_effects():
    la, lb, doc, cat = seeded_pair(np.random.default_rng(9), 0.01, effect=0.08)
    cm = two_level_gaps(la, lb, doc, [cat, ~cat], n_boot=800, seed=2)
    c = cm.contrast(0, 1)
    assert c.lo <= 0.06 <= c.hi and c.lo > 0
    r = ratio_ci(cm, 0, 1)
    assert r.lo <= 4.0 <= r.hi and abs(r.mean - cm.mean[0] / cm.mean[1]) < 1e-12
    # the point estimate is the plain gap of the seed means
    assert np.isclose(cm.mean[0], (la.mean(0) - lb.mean(0))[cat].mean())


def test_two_level_means_share_the_draws_of_two_level_gaps():
    """Per-model means of several checkpoints: their difference at one checkpoint each is two_level_gaps', draw for
    draw, and a model's seeds are drawn once for all its checkpoints (a seed is one run)."""
    la, lb, doc, cat = seeded_pair(np.random.default_rng(4), 0.05)
    cm = two_level_gaps(la, lb, doc, [cat, ~cat], n_boot=200, seed=3)
    (ma, ra), (mb, rb) = two_level_means([la[None], lb[None]], doc, [cat, ~cat], n_boot=200, seed=3)[0]
    assert np.allclose(ra[:, 0] - rb[:, 0], cm.reps) and np.allclose(ma[0] - mb[0], cm.mean)
    assert np.allclose(ma[0, 0], la.mean(0)[cat].mean())
    # a later checkpoint = the same runs 0.1 lower everywhere: every replicate moves by exactly 0.1
    [(_, r2)], _ = two_level_means([np.stack([la, la - 0.1])], doc, [cat], n_boot=200, seed=3)
    assert np.allclose(r2[:, 0] - r2[:, 1], 0.1)


def test_source_files_merge_chunks_of_one_file():
    ids = ["html/pandas/pivot.html/0003", "html/pandas/pivot.html/0004", "books/austen/emma", "c/lz4/lz4.c/0000"]
    assert source_files(ids).tolist() == ["html/pandas/pivot.html", "html/pandas/pivot.html", "books/austen/emma",
                                          "c/lz4/lz4.c"]


def test_ols_clustered_matches_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(0)
    doc, noise = clustered_data(rng, n_docs=40, per_doc=30)
    X = np.column_stack([np.ones(doc.shape[0]), rng.random(doc.shape[0]) < 0.3, rng.normal(size=doc.shape[0])])
    y = X @ np.array([0.1, 0.05, -0.02]) + noise
    ours = ols_clustered(y, X, ["c", "a", "b"], doc)
    ref = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": doc})
    assert np.allclose(ours.coef, ref.params) and np.allclose(ours.se, ref.bse, rtol=1e-8)
    assert np.allclose(ours.p, ref.pvalues) and np.isclose(ours.r2, ref.rsquared)


def test_collinear_columns_are_dropped():
    rng = np.random.default_rng(0)
    a = rng.random(200) < 0.5
    X = np.column_stack([np.ones(200), a, ~a, rng.normal(size=200)])  # a + ~a = intercept
    assert independent_columns(X.T @ X) == [0, 1, 3]
    r = ols_clustered(rng.normal(size=200), X, ["c", "a", "not_a", "z"], np.arange(200) // 10)
    assert r.dropped == ["not_a"] and r.names == ["c", "a", "z"]


def planted_world(seed=0, n_docs=200, per_doc=150):
    """Tokens with a content-word flag and a log frequency; content words are rarer. The true gap is
    0.03 * content − 0.02 * log_freq + doc effects + noise: content words have a planted effect of 0.03, but
    their raw mean gap is inflated by their rarity (a confounder the regression controls for)."""
    rng = np.random.default_rng(seed)
    N = n_docs * per_doc
    doc = np.repeat(np.arange(n_docs), per_doc)
    content = rng.random(N) < 0.4
    log_freq = np.where(content, rng.normal(-11, 1.5, N), rng.normal(-6, 1.5, N))
    rep4 = rng.random(N) < 0.15
    gap = 0.03 * content - 0.02 * (log_freq + 8) - 0.05 * rep4 + rng.normal(0, .1, n_docs)[doc] + rng.normal(0, .5, N)
    labels = pd.DataFrame({
        "doc_index": doc.astype(np.int32), "domain": pd.Categorical(np.where(doc % 2 == 0, "books", "news")),
        "word_class": pd.Categorical(np.where(content, "content", "function")), "log_freq": log_freq,
        "rep_4": rep4, "ctx_pos": np.tile(np.arange(per_doc), n_docs).astype(np.int32)})
    base = rng.gamma(2, 1, N)
    a = Side("transformer", (base + gap)[None].astype(np.float64), [{}])
    b = Side("hybrid", base[None].astype(np.float64), [{}])
    return labels, a, b


def test_planted_effects_regression_recovers_what_raw_means_do_not():
    labels, a, b = planted_world()
    r = regression(a, b, labels)
    coef, se = r["content"]
    assert abs(coef - 0.03) < 1.96 * se + 1e-9, (coef, se)  # planted content effect inside the 95% CI
    f, fse = r["log_freq"]
    assert abs(f + 0.02) < 3 * fse and abs(r["rep_4"][0] + 0.05) < 3 * r["rep_4"][1]
    # the raw category means: content − function is confounded by frequency, far from 0.03
    gaps = gap_table(a, b, labels)
    wc = gaps[(gaps["family"] == "word_class") & (gaps["pieces"] == "all") & (gaps["subset"] == "all")]
    wc = wc.set_index("category")
    raw = wc.loc["content", "gap"] - wc.loc["function", "gap"]
    assert raw > 0.03 + 0.05  # ≈ 0.03 + 0.02 * 5 = 0.13
    # each category's raw mean is still recovered within its CI: the planted mean of the content gap is
    # 0.03 − 0.02 (E[log_freq | content] + 8) − 0.05 P(rep4) = 0.03 + 0.06 − 0.0075
    truth = 0.03 + 0.06 - 0.05 * 0.15
    assert wc.loc["content", "lo"] <= truth <= wc.loc["content", "hi"]
