"""Architecture, or just a better model? Each category's gap against what the same overall improvement buys
through training alone (issue 30).

A model that is better overall is better on most categories whatever its architecture; what an architecture can
change is where the improvement lands. For a pair A, B (gap = loss(A) − loss(B), positive favours B):

- A model's *trajectory*: its annealed points and its final point, each with its overall eval loss ℓ and the loss
  of every category; between neighbouring points a category's loss is taken as linear in ℓ.
- The observed gaps at the final points: overall G = ℓ_A − ℓ_B, and g_c per category.
- What a trajectory predicts for an overall improvement of |G|: walking back from its final point to where its
  overall loss is |G| higher, p_c = sign(G) · (f_c(ℓ_final + |G|) − f_c(ℓ_final)). For the better model that point
  is itself at the other's overall loss (the matched-loss view); for the worse one, itself |G| earlier in training.
  Where the trajectory never rises |G| above its final point, the first segment is extended: *extrapolated*, said.
- The prediction is the mean of the two trajectories' (of those that reach |G|; of both if neither does); the
  residual r_c = g_c − p_c is what progress does not explain: an architecture effect where its interval excludes 0.
  The overall residual is 0 by construction.

Intervals: each replicate of the two-level bootstrap (`stats.two_level_means`: each model's seeds, drawn once for
all its checkpoints, and source files within domains) redoes the interpolation, so both terms' uncertainty is in
the residual. Without per-token files at the annealed points the logged filtered losses (results/curves) stand in:
one number per seed, so only the seeds are resampled. Not defined for a model with no point before its final one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tokengap.analysis.stats import CategoryMeans, MeanCI, percentile_ci, seed_weights, two_level_means

TOKENS = "per-token losses at the annealed points"
LOGGED = "logged filtered losses at the annealed points, seeds resampled only"
BEYOND = "beyond a better model"


@dataclass
class Trajectory:
    """One model along its own training, in step order, the final point last."""
    arch: str
    steps: list  # (P,) the final one may be None (a score file without a step)
    values: np.ndarray  # (P, S, N) per-token losses (source TOKENS) or (P, S, C) logged category losses (LOGGED)
    source: str


def token_trajectory(arch: str, annealed: dict, final: np.ndarray, final_step: Optional[int]) -> Optional[Trajectory]:
    """annealed {step: (S, N)} and the final score files (S, N); the annealed file of the final step is the final
    point itself and is left out. None when there is no earlier point."""
    steps = sorted(s for s in annealed if final_step is None or s < final_step)  # a checkpoint: not its future
    if not steps:
        return None
    return Trajectory(arch, steps + [final_step], np.stack([annealed[s] for s in steps] + [final]), TOKENS)


def run_trajectory(name: str, run_dir: Optional[Path], final, labels_meta: dict, n_tokens: int
                   ) -> tuple[Optional[Trajectory], str]:
    """A run directory's trajectory (its scores/annealed-step*.npz, written by the training loop) ending at the
    final score file `final` (a `compare.Side`), or (None, why not) in one line."""
    from tokengap.analysis.compare import check_labels, load_side

    files = sorted((Path(run_dir) / "scores").glob("annealed-step*.npz")) if run_dir else []
    if not files:
        where = f"{run_dir}/scores has no annealed score files" if run_dir else "a single checkpoint, not a run"
        return None, f"{name} has no trajectory ({where})"
    annealed = {}
    for f in files:
        side = load_side([f], name)
        try:
            check_labels(labels_meta, side, n_tokens)
        except ValueError as exc:
            return None, f"{name}'s annealed score files do not fit this eval set ({f.name}: {exc})"
        annealed[side.metas[0].get("step")] = side.loss
    t = token_trajectory(name, annealed, final.loss, final.metas[0].get("step"))
    return t, "" if t else f"{name} has no trajectory (no annealed point before its final one)"


def curve_column(name: str) -> str:
    if name.startswith("domain="):
        return f"eval/domain/{name[7:]}"
    return "eval/all" if name == "all" else f"eval/filter/{name}"


def logged_names(curves) -> list:
    """'all', then every filter and domain logged at every annealed point of `curves`."""
    ok = [c for c in curves.columns if curves[c].notna().all()]
    return ["all", *sorted(c[12:] for c in ok if c.startswith("eval/filter/") and c != "eval/filter/all"),
            *sorted(f"domain={c[12:]}" for c in ok if c.startswith("eval/domain/"))]


def logged_trajectory(curves, arch: str, names: list) -> Optional[Trajectory]:
    """The annealed eval rows of `arch` (every seed at every step kept), (P, S, C) in `names` order."""
    c = curves[curves["arch"] == arch]
    seeds = set(c["seed"])
    steps = [int(s) for s in sorted(set(c["step"])) if set(c[c["step"] == s]["seed"]) == seeds]
    if len(steps) < 2:
        return None
    cols = [curve_column(k) for k in names]
    vals = np.stack([c[c["step"] == s].sort_values("seed")[cols].to_numpy(np.float64) for s in steps])
    return Trajectory(arch, steps, vals, LOGGED)


# ---- the estimator ----------------------------------------------------------------------------------------------
def predicted(curve: np.ndarray, gap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a trajectory predicts for an overall improvement of `gap`.

    curve: (R, P, C) category losses at P points in step order, the final last, column 0 the overall loss;
    gap: (R,) the observed overall gap. Returns the predicted gaps (R, C) and (R,) bool: extrapolated (walking back
    from the final point, the overall loss never gets |gap| above the final's: the first segment is extended)."""
    R, P, _ = curve.shape
    ell = curve[:, :, 0]
    target = ell[:, -1] + np.abs(gap)
    reach = ell[:, :-1] >= target[:, None]
    found = reach.any(1)
    k = np.where(found, P - 2 - np.argmax(reach[:, ::-1], axis=1), 0)  # the nearest point back that gets there
    r = np.arange(R)
    far, near = curve[r, k], curve[r, k + 1]
    with np.errstate(invalid="ignore", divide="ignore"):  # a flat segment (or an empty category): NaN, not defined
        t = (target - near[:, 0]) / (far[:, 0] - near[:, 0])
        return np.sign(gap)[:, None] * (near + t[:, None] * (far - near) - curve[:, -1]), ~found


@dataclass
class Progress:
    """One comparison A − B: every quantity per category (column 0 = all tokens) with its bootstrap replicates."""
    pair: str
    a: str
    b: str
    names: list
    source: str
    obs: CategoryMeans  # the observed gap at the final points
    pred_a: CategoryMeans  # predicted by A's trajectory
    pred_b: CategoryMeans
    pred: CategoryMeans  # the mean of the trajectories in `used`
    resid: CategoryMeans  # obs − pred
    a_minus_b: CategoryMeans  # pred_a − pred_b: where the two trajectories disagree
    used: tuple  # the trajectories averaged: (A,), (B,) or (A, B)
    extrapolated: dict  # arch -> whether the point estimate's walk back leaves its trajectory
    extrapolated_share: dict  # arch -> the share of bootstrap replicates whose walk back does
    points: dict  # arch -> [(step, overall loss)] at the point estimate
    target: dict  # arch -> the overall loss its walk back reaches for

    def relative(self, i: int) -> MeanCI:
        """Residual i over the observed overall gap (scale-free; the residual of all tokens is 0)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            r = self.resid.reps[:, i] / self.obs.reps[:, 0]
        r = r[np.isfinite(r)]
        a = self.resid.alpha
        lo, hi = np.quantile(r, [a / 2, 1 - a / 2]) if r.size else (np.nan, np.nan)
        return MeanCI(float(self.resid.mean[i] / self.obs.mean[0]), float(lo), float(hi),
                      int(self.resid.n_tokens[i]), int(self.resid.n_clusters[i]))

    def notes(self, idx: list) -> list:
        """Extrapolation and disagreement of the trajectories for the categories `idx`, as short phrases."""
        out = [f"{x}'s trajectory extrapolated" if self.extrapolated[x] else
               f"{x}'s trajectory extrapolated in {self.extrapolated_share[x]:.0%} of the replicates"
               for x in (self.a, self.b) if self.extrapolated[x] or self.extrapolated_share[x] > 0.025]
        for i in idx:
            d = self.a_minus_b
            if d.lo[i] > 0 or d.hi[i] < 0:
                out.append(f"the trajectories disagree on {self.names[i]}: {self.a}'s predicts "
                           f"{self.pred_a.mean[i]:+.3f}, {self.b}'s {self.pred_b.mean[i]:+.3f}")
        return out


def _means(v: np.ndarray, counts: Optional[np.ndarray], alpha: float = 0.05) -> CategoryMeans:
    """CategoryMeans from (1 + R, C): the point estimate, then the replicates. counts (k, C), or None (logged)."""
    c = np.ones((2, v.shape[1])) if counts is None else counts
    lo, hi = percentile_ci(v[1:], c, alpha)
    n = np.zeros(v.shape[1], np.int64) if counts is None else c.sum(0).astype(np.int64)
    k = np.zeros(v.shape[1], np.int64) if counts is None else (c > 0).sum(0).astype(np.int64)
    return CategoryMeans(v[0], lo, hi, n, k, v[1:], alpha)


def estimate(pair: str, ta: Trajectory, tb: Trajectory, names: list, n_boot: int = 1000, seed: int = 0,
             masks: Optional[list] = None, clusters=None, strata=None) -> Progress:
    """The comparison A − B from two trajectories of one source. names: the categories, 'all' first; masks,
    clusters, strata: the per-token categories and resampling units (TOKENS only)."""
    if ta.source == TOKENS:
        sides, counts = two_level_means([ta.values, tb.values], clusters, masks, strata, n_boot, seed)
    else:  # logged values: one number per seed, so only seeds resample; one seed has no interval (NaN replicates)
        counts = None
        sides = [(t.values.mean(1), np.einsum("rs,psc->rpc", seed_weights(t.values.shape[1], n_boot, seed + i),
                                              t.values) if t.values.shape[1] > 1
                  else np.full((n_boot, *t.values[:, 0].shape), np.nan)) for i, t in enumerate((ta, tb), 1)]
    x = {t.arch: np.concatenate([m[None], r]) for t, (m, r) in zip((ta, tb), sides)}  # row 0: the point estimate
    obs = x[ta.arch][:, -1] - x[tb.arch][:, -1]
    pred, ext = {}, {}
    for arch, curve in x.items():
        pred[arch], ext[arch] = predicted(curve, obs[:, 0])
    # the replicates average the same trajectories as the point estimate: one estimator throughout
    used = tuple(a for a in x if not ext[a][0]) or tuple(x)
    mean = np.mean([pred[a] for a in used], axis=0)
    return Progress(pair, ta.arch, tb.arch, list(names), ta.source, _means(obs, counts),
                    _means(pred[ta.arch], counts), _means(pred[tb.arch], counts), _means(mean, counts),
                    _means(obs - mean, counts), _means(pred[ta.arch] - pred[tb.arch], counts), used,
                    {a: bool(e[0]) for a, e in ext.items()}, {a: float(e[1:].mean()) for a, e in ext.items()},
                    {t.arch: list(zip(t.steps, x[t.arch][0, :, 0].tolist())) for t in (ta, tb)},
                    {a: float(c[0, -1, 0] + abs(obs[0, 0])) for a, c in x.items()})


# ---- the comparisons of a pair from results/ ---------------------------------------------------------------------
def token_categories(inp) -> dict:
    """The per-token categories: the claims' masks (filters, PTB tags, …), domains and copy-distance bins."""
    from tokengap.analysis.categories.families import build_categories

    extra = {(f"domain={c.name}" if f == "domain" else c.name): c.mask
             for f, c in build_categories(inp.labels, ("domain", "copy_distance"))}
    return {"all": inp.masks["all"], **{k: v for k, v in inp.masks.items() if k != "all"}, **extra}


def comparisons(inp, pair: str, models: tuple, n_boot: int = 1000) -> tuple[list, list]:
    """The comparisons A − B for B in models[1:] (A = models[0]) whose two models have trajectories, from per-token
    files when both have them, else from the logged filtered losses. Returns (Progress list, one line per
    comparison left out)."""
    a, out, missing, masks = models[0], [], [], None
    curves = inp.curves
    for b in models[1:]:
        if a not in inp.loss or b not in inp.loss:
            continue
        tt = {x: token_trajectory(x, inp.annealed.get(x, {}), inp.loss[x], inp.final_step.get(x)) for x in (a, b)}
        if all(tt.values()):
            masks = masks or token_categories(inp)
            out.append(estimate(pair, tt[a], tt[b], list(masks), n_boot, masks=list(masks.values()),
                                clusters=inp.clusters, strata=inp.strata))
            continue
        lt = {}
        if curves is not None and {a, b} <= set(curves["arch"]):
            names = logged_names(curves[curves["arch"].isin([a, b])])
            lt = {x: logged_trajectory(curves, x, names) for x in (a, b)}
        if lt and all(lt.values()):
            out.append(estimate(pair, lt[a], lt[b], names, n_boot))
        else:
            none = [x for x in (a, b) if not tt[x] and not lt.get(x)]
            why = (f"{' and '.join(none)} {'has' if len(none) == 1 else 'have'} no trajectory: no annealed point "
                   "before the final one, per-token or logged" if none else
                   "per-token files for one model, logged losses for the other: no source both have")
            missing.append(f"{pair}, {a} − {b}: no progress-predicted gaps ({why})")
    return out, missing


# ---- tables -----------------------------------------------------------------------------------------------------
def family_of(name: str) -> str:
    if name == "all":
        return "all tokens"
    if name.startswith("domain="):
        return "domain"
    if name.startswith(("repeated_", "novel", "dist ")):
        return "repetition"
    if "delim" in name or "brace" in name:
        return "delimiters"
    if name.startswith(("py_", "html_", "latex_")):
        return "code / markup"
    return "words"


def verdict(lo: float, hi: float, a: str, b: str) -> str:
    """The residual's reading: the architecture of the model it favours when its interval excludes 0, else a
    better model (what progress predicts, within the interval)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    return f"{b}'s architecture" if lo > 0 else f"{a}'s architecture" if hi < 0 else "a better model"


def table(p: Progress, families: Optional[dict] = None):
    """DataFrame, one row per category: the observed gap, each trajectory's prediction, their mean, the residual
    (each with its 95% interval), the verdict and notes. families: category -> family (default `family_of`)."""
    import pandas as pd

    rows = []
    for i, name in enumerate(p.names):
        fam = (families or {}).get(name) or family_of(name)
        r = {"pair": p.pair, "a": p.a, "b": p.b, "source": p.source, "family": fam, "category": name,
             "tokens": int(p.obs.n_tokens[i])}
        for key, cm in (("observed", p.obs), ("pred_a", p.pred_a), ("pred_b", p.pred_b), ("predicted", p.pred),
                        ("residual", p.resid), ("a_minus_b", p.a_minus_b)):
            r[key], r[f"{key}_lo"], r[f"{key}_hi"] = float(cm.mean[i]), float(cm.lo[i]), float(cm.hi[i])
        r["verdict"] = "—" if i == 0 else verdict(r["residual_lo"], r["residual_hi"], p.a, p.b)
        r["averaged"] = " and ".join(p.used)
        r["note"] = "; ".join(p.notes([i] if i else []))
        rows.append(r)
    return pd.DataFrame(rows)


def step_text(step) -> str:
    return "final" if step is None else f"step {step:,}"


def ci(m: float, lo: float, hi: float) -> str:
    return "" if m != m else f"{m:+.3f}" if lo != lo else f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def describe(p: Progress) -> str:
    """One paragraph: the source, the overall gap, each trajectory's points and where its walk back ends."""
    parts = []
    for x in (p.a, p.b):
        pts = ", ".join(f"{step_text(s)} {v:.4f}" for s, v in p.points[x])
        ext = " — **extrapolated**" if p.extrapolated[x] else ""
        parts.append(f"{x}: {pts}; walks back to {p.target[x]:.4f}{ext}")
    return (f"**{p.pair}, {p.a} − {p.b}** ({p.source}). Overall gap at the final points "
            f"{ci(p.obs.mean[0], p.obs.lo[0], p.obs.hi[0])}. Trajectories (overall eval loss): "
            + "; ".join(parts) + f". Prediction: the mean of {' and '.join(p.used)}'s.")


def ranked(df, k: int = 5) -> str:
    """The k largest positive and k largest negative residuals of one comparison, as a markdown table."""
    d = df[df["category"] != "all"].dropna(subset=["residual"]).sort_values("residual", ascending=False)
    top, bottom = d.head(k), d[~d.index.isin(d.head(k).index)].tail(k)[::-1]
    lines = ["| | category | observed gap | predicted by training | beyond a better model | reading | notes |",
             "|---|---|---|---|---|---|---|"]
    for side, rows in (("+", top[top["residual"] > 0]), ("−", bottom[bottom["residual"] < 0])):
        for r in rows.itertuples():
            lines.append(f"| {side} | {r.category} ({r.family}) | {ci(r.observed, r.observed_lo, r.observed_hi)} | "
                         f"{ci(r.predicted, r.predicted_lo, r.predicted_hi)} | "
                         f"{ci(r.residual, r.residual_lo, r.residual_hi)} | {r.verdict} | {r.note} |")
    return "\n".join(lines)


def full_table(df) -> str:
    """Every category of one comparison: the observed gap, each trajectory's prediction, the residual."""
    a, b = df["a"].iloc[0], df["b"].iloc[0]
    lines = [f"| family | category | tokens | observed gap | predicted by {a}'s training | predicted by {b}'s "
             "training | beyond a better model | reading | notes |", "|---|---|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        lines.append(f"| {r.family} | {r.category} | {r.tokens:,} | {ci(r.observed, r.observed_lo, r.observed_hi)} |"
                     f" {ci(r.pred_a, r.pred_a_lo, r.pred_a_hi)} | {ci(r.pred_b, r.pred_b_lo, r.pred_b_hi)} | "
                     f"{ci(r.residual, r.residual_lo, r.residual_hi)} | {r.verdict} | {r.note} |")
    return "\n".join(lines)


def write(results: Path, progs: list, missing: list) -> str:
    """results/progress.csv (every category of every comparison) and results/progress.md (the full tables);
    returns the short markdown for RESULTS.md: per comparison its trajectories and the ranked residuals."""
    import pandas as pd

    from tokengap.models.atomic import atomic_write_text

    tables = [table(p) for p in progs]
    if tables:
        atomic_write_text(results / "progress.csv", pd.concat(tables, ignore_index=True).to_csv(
            index=False, float_format="%.6g"))
    else:  # an old table would be drawn as if it were current
        (results / "progress.csv").unlink(missing_ok=True)
    short, full = [], []
    for p, t in zip(progs, tables):
        short += [describe(p), "", ranked(t), ""]
        full += [describe(p), "", full_table(t), ""]
    lines = missing + ([""] if missing else [])
    atomic_write_text(results / "progress.md", "\n".join(lines + full).rstrip() + "\n")
    return "\n".join(lines + short).rstrip()
