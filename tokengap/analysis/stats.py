"""Statistics for per-token loss gaps.

- `cluster_bootstrap_ci`: one token-weighted mean with a document-level cluster bootstrap CI.
- `category_means`: the same for many categories at once, from per-document sums and one shared matrix of
  resampling weights (`bootstrap_weights`, optionally stratified by domain), so a million tokens and hundreds
  of categories take seconds, and differences between categories get CIs from the same replicates.
- `ols_clustered`: OLS with document-clustered (sandwich) standard errors, equal to statsmodels'
  `cov_type="cluster"` (tested against it) but computed from X'X, so a million rows take about a second.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class MeanCI:
    mean: float  # token-weighted mean
    lo: float  # 2.5th percentile of the bootstrap distribution (for alpha = 0.05)
    hi: float  # 97.5th percentile
    n_tokens: int
    n_clusters: int


def cluster_bootstrap_ci(values: np.ndarray, clusters: np.ndarray, n_boot: int = 1000, alpha: float = 0.05,
                         seed: int = 0, mask: Optional[np.ndarray] = None) -> MeanCI:
    """Token-weighted mean of `values` with a percentile CI from resampling whole clusters (documents).

    values: (N,) float; clusters: (N,) int ids (e.g. document index); mask: (N,) bool selects tokens.
    Each replicate draws n_clusters clusters with replacement and takes sum(values) / count over them,
    so tokens of one document move together (they are not independent)."""
    values = np.asarray(values, dtype=np.float64)
    clusters = np.asarray(clusters)
    if mask is not None:
        values, clusters = values[mask], clusters[mask]
    n = values.shape[0]
    if n == 0:
        return MeanCI(float("nan"), float("nan"), float("nan"), 0, 0)
    _, cid = np.unique(clusters, return_inverse=True)
    k = int(cid.max()) + 1
    sums = np.bincount(cid, weights=values, minlength=k)
    counts = np.bincount(cid, minlength=k).astype(np.float64)
    mean = float(sums.sum() / counts.sum())
    if k < 2:
        return MeanCI(mean, float("nan"), float("nan"), n, k)
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    step = max(1, min(n_boot, 2_000_000 // k))  # bound memory: (step, k) weights at a time
    for s in range(0, n_boot, step):
        w = rng.multinomial(k, np.full(k, 1.0 / k), size=min(step, n_boot - s)).astype(np.float64)
        reps[s:s + w.shape[0]] = (w @ sums) / np.maximum(w @ counts, 1e-12)
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return MeanCI(mean, float(lo), float(hi), n, k)


# ---- many categories at once --------------------------------------------------------------------------------
def bootstrap_weights(n_clusters: int, n_boot: int = 1000, seed: int = 0,
                      strata: Optional[np.ndarray] = None) -> np.ndarray:
    """(n_boot, n_clusters) float64: how often each cluster is drawn in each bootstrap replicate.

    Without strata: n_clusters draws with replacement from all clusters. With strata ((n_clusters,) labels,
    e.g. each document's domain): each stratum is resampled on its own with its own size, which keeps the
    eval set's design (a fixed number of documents per domain) in every replicate."""
    rng = np.random.default_rng(seed)
    w = np.zeros((n_boot, n_clusters))
    groups = [np.arange(n_clusters)] if strata is None else \
        [np.flatnonzero(strata == s) for s in np.unique(strata)]
    for idx in groups:
        k = idx.shape[0]
        if k:
            w[:, idx] = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot)
    return w


@dataclass(frozen=True)
class CategoryMeans:
    """Token-weighted means of one value per token over C categories, with bootstrap replicates.

    mean, lo, hi: (C,); n_tokens, n_clusters: (C,) int; reps: (n_boot, C), the same resampled clusters for every
    category (so a difference of two categories has a CI too: `contrast`)."""
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_tokens: np.ndarray
    n_clusters: np.ndarray
    reps: np.ndarray
    alpha: float

    def contrast(self, i: int, j: int) -> MeanCI:
        """Category i minus category j, with the percentile CI of the paired replicates."""
        d = self.reps[:, i] - self.reps[:, j]
        d = d[np.isfinite(d)]
        lo, hi = np.quantile(d, [self.alpha / 2, 1 - self.alpha / 2]) if d.size else (np.nan, np.nan)
        return MeanCI(float(self.mean[i] - self.mean[j]), float(lo), float(hi),
                      int(self.n_tokens[i] + self.n_tokens[j]), int(max(self.n_clusters[i], self.n_clusters[j])))


def cluster_sums(values: np.ndarray, clusters: np.ndarray, masks, n_clusters: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums of `values` and token counts under each mask.

    values: (N,) or (N, P); clusters: (N,) ints in [0, n_clusters); masks: (C, N) bool or a list of C (N,) bool.
    Returns sums (n_clusters, C) (or (P, n_clusters, C)) and counts (n_clusters, C), float64. One bincount per
    value column over all categories at once (key = category * n_clusters + cluster)."""
    values = np.asarray(values, dtype=np.float64)
    idx = [np.flatnonzero(m) for m in masks]
    C = len(idx)
    rows = np.concatenate(idx) if C else np.zeros(0, dtype=np.int64)
    key = np.concatenate([c * n_clusters + np.asarray(clusters)[i] for c, i in enumerate(idx)]) if C else rows
    size = C * n_clusters
    counts = np.bincount(key, minlength=size).reshape(C, n_clusters).T.astype(np.float64)
    if values.ndim == 1:
        sums = np.bincount(key, weights=values[rows], minlength=size).reshape(C, n_clusters).T
    else:
        sums = np.stack([np.bincount(key, weights=values[rows, p], minlength=size).reshape(C, n_clusters).T
                         for p in range(values.shape[1])])
    return sums, counts


def percentile_ci(reps: np.ndarray, counts: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(C,) lo and hi: percentiles of each category's finite replicates (reps (R, C)); NaN for a category found
    in fewer than two clusters (counts (k, C)), whose "interval" would only resample one cluster."""
    lo, hi = np.full(reps.shape[1], np.nan), np.full(reps.shape[1], np.nan)
    for c in range(reps.shape[1]):
        r = reps[:, c][np.isfinite(reps[:, c])]
        if r.size and (counts[:, c] > 0).sum() >= 2:
            lo[c], hi[c] = np.quantile(r, [alpha / 2, 1 - alpha / 2])
    return lo, hi


def category_means(values: np.ndarray, clusters: np.ndarray, masks: np.ndarray, n_boot: int = 1000,
                   alpha: float = 0.05, seed: int = 0, strata: Optional[np.ndarray] = None,
                   weights: Optional[np.ndarray] = None) -> CategoryMeans:
    """Token-weighted mean of `values` in each category with a document-level cluster bootstrap CI.

    values: (N,); clusters: (N,) int ids (documents); masks: (C, N) bool or a list of (N,) bool; strata:
    (n_clusters,) stratum of each cluster in `np.unique(clusters)` order (see `cluster_strata`); weights:
    precomputed `bootstrap_weights` (to share replicates between calls). Replicates where a category has no
    token are left out of its quantiles."""
    masks = list(masks) if not isinstance(masks, np.ndarray) else list(np.atleast_2d(masks))
    uniq, cid = np.unique(clusters, return_inverse=True)
    k = uniq.shape[0]
    sums, counts = cluster_sums(values, cid, masks, k)
    tot_s, tot_c = sums.sum(0), counts.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = tot_s / tot_c
    w = weights if weights is not None else bootstrap_weights(k, n_boot, seed, strata)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (w @ sums) / (w @ counts)
    lo, hi = percentile_ci(reps, counts, alpha)
    return CategoryMeans(mean, lo, hi, tot_c.astype(np.int64), (counts > 0).sum(0).astype(np.int64), reps, alpha)


def seed_weights(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_seeds): each replicate's seeds drawn with replacement, as weights summing to 1 (one seed: 1)."""
    rng = np.random.default_rng(seed)
    if n_seeds == 1:
        return np.ones((n_boot, 1))
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot) / n_seeds


def _two_level_draws(n_clusters: int, n_seeds: list, n_boot: int, seed: int, strata=None) -> tuple:
    """The replicates' weights: clusters (n_boot, n_clusters), drawn within strata, and the seeds of each model
    (one (n_boot, S_i) per entry of n_seeds), each from its own stream of `seed`."""
    rng = np.random.SeedSequence(seed).spawn(1 + len(n_seeds))
    w = bootstrap_weights(n_clusters, n_boot, int(rng[0].generate_state(1)[0]), strata)
    return w, [seed_weights(s, n_boot, int(r.generate_state(1)[0])) for s, r in zip(n_seeds, rng[1:])]


def _seed_cluster_sums(loss: np.ndarray, cid: np.ndarray, masks: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """loss (S, N) -> per-seed cluster sums (S, k, C) and counts (k, C)."""
    s, counts = cluster_sums(np.atleast_2d(loss).astype(np.float64).T, cid, masks, k)
    return (s[None] if s.ndim == 2 else s), counts


def _replicate_sums(sums: np.ndarray, w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(R, C): each replicate's seed-weighted sum over its resampled clusters; sums (S, k, C), w (R, k), u (R, S)."""
    return np.einsum("rs,rsc->rc", u, np.einsum("rk,skc->rsc", w, sums))


def two_level_gaps(loss_a: np.ndarray, loss_b: np.ndarray, clusters: np.ndarray, masks, strata=None,
                   n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> CategoryMeans:
    """Mean gap loss(A) − loss(B) per category with a two-level bootstrap: each replicate resamples the seeds of A
    and, independently, the seeds of B (training runs: the seed sets model init and data order), and the clusters
    (source files) within strata (domains), and takes the token-weighted gap of the seed-averaged losses over the
    resampled clusters. So the interval covers what another pair of training runs would give on another draw of
    documents, not the documents alone.

    loss_a: (S_A, N), loss_b: (S_B, N); clusters: (N,) ids; masks: C (N,) bool; strata: (n_clusters,) in
    np.unique(clusters) order. Returns CategoryMeans (mean at every seed and cluster once; reps (n_boot, C))."""
    masks = list(masks) if not isinstance(masks, np.ndarray) else list(np.atleast_2d(masks))
    uniq, cid = np.unique(clusters, return_inverse=True)
    k = uniq.shape[0]
    sa, counts = _seed_cluster_sums(loss_a, cid, masks, k)  # (S_A, k, C), (k, C)
    sb, _ = _seed_cluster_sums(loss_b, cid, masks, k)
    w, (u, v) = _two_level_draws(k, [sa.shape[0], sb.shape[0]], n_boot, seed, strata)
    num = _replicate_sums(sa, w, u) - _replicate_sums(sb, w, v)
    den = w @ counts
    tot_c = counts.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = num / den
        mean = (sa.mean(0).sum(0) - sb.mean(0).sum(0)) / tot_c
    lo, hi = percentile_ci(reps, counts, alpha)
    return CategoryMeans(mean, lo, hi, tot_c.astype(np.int64), (counts > 0).sum(0).astype(np.int64), reps, alpha)


def two_level_means(models: list, clusters: np.ndarray, masks, strata=None, n_boot: int = 1000, seed: int = 0
                    ) -> tuple[list, np.ndarray]:
    """Category means of several models' checkpoints under the bootstrap of `two_level_gaps`: each replicate draws
    the clusters once for all models, and each model's seeds once for all its checkpoints (a seed is one training
    run: its checkpoints move together). With two models of one checkpoint each, the replicates' differences are
    `two_level_gaps`' (same seed, same draws).

    models: list of (P_i, S_i, N) losses (model i's P_i checkpoints, its S_i seeds at each). Returns
    ([(mean (P_i, C), reps (n_boot, P_i, C)) for each model], counts (k, C))."""
    masks = list(masks) if not isinstance(masks, np.ndarray) else list(np.atleast_2d(masks))
    uniq, cid = np.unique(clusters, return_inverse=True)
    k = uniq.shape[0]
    sums = [[_seed_cluster_sums(p, cid, masks, k) for p in m] for m in models]
    counts = sums[0][0][1]
    w, seeds = _two_level_draws(k, [m.shape[1] for m in models], n_boot, seed, strata)
    den, tot_c = w @ counts, counts.sum(0)
    out = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for m, u in zip(sums, seeds):
            mean = np.stack([s.mean(0).sum(0) / tot_c for s, _ in m])
            reps = np.stack([_replicate_sums(s, w, u) / den for s, _ in m], axis=1)
            out.append((mean, reps))
    return out, counts


def ratio_ci(cm: CategoryMeans, i: int, j: int) -> MeanCI:
    """Category i over category j (e.g. content / function gap, or a category's gap / the overall gap), with the
    percentile CI of the paired replicates."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cm.reps[:, i] / cm.reps[:, j]
    r = r[np.isfinite(r)]
    lo, hi = np.quantile(r, [cm.alpha / 2, 1 - cm.alpha / 2]) if r.size else (np.nan, np.nan)
    return MeanCI(float(cm.mean[i] / cm.mean[j]), float(lo), float(hi), int(cm.n_tokens[i]),
                  int(cm.n_clusters[i]))


def source_files(doc_ids) -> np.ndarray:
    """(n_docs,) the source file of each eval document: its id without the chunk number the corpus builder adds
    when it cuts a long file (`html/pandas-doc-html/.../pivot_table.html/0003` -> `.../pivot_table.html`).
    Chunks of one file are not independent: they are resampled together."""
    out = []
    for i in doc_ids:
        head, _, tail = str(i).rpartition("/")
        out.append(head if tail.isdigit() and head else str(i))
    return np.array(out, dtype=object)


def cluster_strata(clusters: np.ndarray, token_strata: np.ndarray) -> np.ndarray:
    """(n_clusters,) stratum of each cluster, in `np.unique(clusters)` order, from per-token strata."""
    uniq, first = np.unique(clusters, return_index=True)
    return np.asarray(token_strata)[first]


# ---- regression with document-clustered standard errors --------------------------------------------------
@dataclass(frozen=True)
class OLSResult:
    names: list
    coef: np.ndarray
    se: np.ndarray
    n: int
    n_clusters: int
    r2: float
    dropped: list  # columns left out because they were constant or collinear with earlier ones
    alpha: float = 0.05

    @property
    def z(self) -> np.ndarray:
        return self.coef / self.se

    @property
    def p(self) -> np.ndarray:
        from scipy.stats import norm
        return 2 * norm.sf(np.abs(self.z))

    def ci(self) -> tuple[np.ndarray, np.ndarray]:
        from scipy.stats import norm
        q = norm.ppf(1 - self.alpha / 2)
        return self.coef - q * self.se, self.coef + q * self.se

    def table(self):
        import pandas as pd
        lo, hi = self.ci()
        return pd.DataFrame({"term": self.names, "coef": self.coef, "se": self.se, "z": self.z, "p": self.p,
                             "lo": lo, "hi": hi})

    def __getitem__(self, name: str) -> tuple[float, float]:
        i = self.names.index(name)
        return float(self.coef[i]), float(self.se[i])


def independent_columns(gram: np.ndarray, tol: float = 1e-9) -> list[int]:
    """Indices of columns that are not (numerically) linear combinations of earlier kept columns, from the
    Gram matrix X'X (a greedy pivoted Cholesky in column order)."""
    keep: list[int] = []
    L = np.zeros((0, 0))
    for j in range(gram.shape[0]):
        if gram[j, j] <= 0:
            continue
        if keep:
            v = np.linalg.solve(L, gram[keep, j]) if L.size else np.zeros(0)
            d = gram[j, j] - v @ v
        else:
            v, d = np.zeros(0), gram[j, j]
        if d > tol * gram[j, j]:
            keep.append(j)
            k = len(keep)
            L2 = np.zeros((k, k))
            L2[:k - 1, :k - 1] = L
            L2[k - 1, :k - 1] = v
            L2[k - 1, k - 1] = np.sqrt(d)
            L = L2
    return keep


def ols_clustered(y: np.ndarray, X: np.ndarray, names: list, groups: np.ndarray, alpha: float = 0.05
                  ) -> OLSResult:
    """OLS of y (N,) on X (N, K) with cluster-robust (sandwich) standard errors, clusters = `groups`.

    Same estimator and small-sample correction as statsmodels' `OLS(y, X).fit(cov_type="cluster",
    cov_kwds={"groups": groups})`, i.e. V = c (X'X)^-1 (sum_g s_g s_g') (X'X)^-1 with s_g = X_g' e_g and
    c = G/(G-1) (N-1)/(N-K); normal quantiles for CIs and p-values (tests/test_analysis_stats.py checks it
    against statsmodels). Computed from X'X: about 1 s for 1.1M x 32 here, where statsmodels' general fit took
    6-9 s per regression and `make figures` runs one per comparison. Constant and collinear columns (e.g. a
    category absent from this eval set) are dropped first and listed in `dropped`."""
    y = np.asarray(y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    gram = X.T @ X
    keep = independent_columns(gram)
    dropped = [names[j] for j in range(X.shape[1]) if j not in keep]
    X, gram, names = X[:, keep], gram[np.ix_(keep, keep)], [names[j] for j in keep]
    inv = np.linalg.inv(gram)
    coef = inv @ (X.T @ y)
    e = y - X @ coef
    _, g = np.unique(groups, return_inverse=True)
    G = int(g.max()) + 1
    S = np.stack([np.bincount(g, weights=X[:, j] * e, minlength=G) for j in range(X.shape[1])], axis=1)
    n, k = X.shape
    c = G / (G - 1) * (n - 1) / (n - k)
    V = c * inv @ (S.T @ S) @ inv
    tss = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(e @ e) / tss if tss > 0 else float("nan")  # a constant gap (a model against itself) explains nothing
    return OLSResult(names, coef, np.sqrt(np.diag(V)), n, G, r2, dropped, alpha)
