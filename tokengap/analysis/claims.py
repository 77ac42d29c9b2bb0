"""The study's six headline claims (paper.md), measured on the committed results, for each pair of models.

    python -m tokengap.analysis claims [--results results] [--update RESULTS.md] [--n-boot 1000]

Pairs: the Mamba2 pair (transformer, hybrid, recurrent) and the study's pair (transformer_swa, hybrid_gdn,
recurrent_gdn); a pair without score files is reported as not run. Reads results/scores/<arch>-s<seed>.npz,
results/scores/annealed/<arch>-s<seed>-step<k>.npz (per-token losses at annealed points, when present),
results/labels.parquet, results/filters.npz, results/curves/*.jsonl, results/probes/*.npz and
results/eval_overlap.json (document ids, for the source-file clusters); writes results/claims.csv (one row per
measurement, pair and view), results/claims.md and results/progress.{csv,md} (tokengap/analysis/progress.py), and with
--update replaces the blocks between `<!-- claims:begin/end -->`, `<!-- runs:begin/end -->` and
`<!-- progress:begin/end -->` in RESULTS.md, so every number there comes from here.

Gap = loss(transformer) − loss(B): positive favours B. Every interval is a two-level bootstrap
(`tokengap.analysis.stats.two_level_gaps`): each replicate resamples the seeds of each architecture and the source files
of the eval documents within domains (chunks of one file together), 1000 replicates shared by all rows of a pair,
so contrasts and ratios of two rows have intervals too. Curve rows (claim 6, and matched loss without per-token
files) resample the seeds only: the curves hold one number per seed.

One verdict rule for every row: each judged row states the region the study's claim puts the quantity in;
agrees = the 95% interval lies inside that region, disagrees = it lies wholly outside, inconclusive = it
straddles a boundary. Rows with no region are references (verdict "—").

Three views per pair: at equal tokens (the final checkpoints), at matched overall loss (the annealed points,
one of A and one of B, whose seed-mean overall eval losses are closest: inductive bias without the sample-
efficiency lead), and beyond a better model (the residual after the gap that the two models' own training
trajectories predict for their overall gap: tokengap/analysis/progress.py; left out where a model has no trajectory).
The relative gap (a row's gap ÷ the overall gap, with its interval) is scale-free.
"""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tokengap.analysis.errors import AnalysisError, existing_dir, existing_file, positive_int
from tokengap.analysis.progress import BEYOND, TOKENS, comparisons, curve_column
from tokengap.analysis.progress import write as write_progress
from tokengap.analysis.stats import (CategoryMeans, MeanCI, cluster_strata, ratio_ci, seed_weights, source_files,
                                     two_level_gaps)

PAIRS = {"Mamba2 pair": ("transformer", "hybrid", "recurrent"),
         "study pair": ("transformer_swa", "hybrid_gdn", "recurrent_gdn")}
ARCHS = tuple(a for p in PAIRS.values() for a in p)
PROSE, CODE, MARKUP = ("books", "encyclopedic", "technical", "news"), ("python", "c"), ("html", "latex")
STUDY_CONTENT, STUDY_FUNCTION = 0.0384, 0.0238  # the 7B pair (paper.md): ratio 1.61
INF = float("inf")


# ---- the verdict rule -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    """Where the study's claim puts a quantity: (lo, hi), open at both ends."""
    lo: float
    hi: float
    text: str


POS, NEG = Region(0.0, INF, "> 0"), Region(-INF, 0.0, "< 0")
ABOVE_1 = Region(1.0, INF, "> 1")
NEAR_0 = Region(-0.25, 0.25, "within ±0.25")  # a relative gap: "nearly vanishes", "the transformer matches"


def judge(lo: float, hi: float, region: Optional[Region]) -> str:
    """agrees: [lo, hi] inside the region; disagrees: wholly outside; inconclusive: straddles a boundary (or no
    interval). No region: a reference row, "—"."""
    if region is None:
        return "—"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if region.lo < lo and hi < region.hi:
        return "agrees"
    if hi < region.lo or lo > region.hi:
        return "disagrees"
    return "inconclusive"


# ---- inputs ---------------------------------------------------------------------------------------------------------
def seed_of(p: Path) -> int:
    return int(re.search(r"-s(\d+)$", p.stem).group(1))


def seed_files(results: Path, sub: str, arch: str, ext: str = "npz") -> list[Path]:
    """results/<sub>/<arch>-s<seed>.<ext>, by seed (not `transformer_swa-s0` for `transformer`)."""
    pat = re.compile(rf"^{re.escape(arch)}-s\d+$")
    return sorted((p for p in results.glob(f"{sub}/{arch}-s*.{ext}") if pat.match(p.stem)), key=seed_of)


def token_clusters(results: Path, doc_index: np.ndarray) -> tuple[np.ndarray, str]:
    """(N,) the resampling unit of each token: its source file (document ids in results/eval_overlap.json, cut
    chunks of one file share it), else its document; and a word for the caption."""
    path = results / "eval_overlap.json"
    if path.is_file():
        docs = json.loads(path.read_text())["docs"]
        ids = [docs.get(str(i), {}).get("id", f"#{i}") for i in range(int(doc_index.max()) + 1)]
        files = source_files(ids)
        return np.unique(files, return_inverse=True)[1][doc_index], "source files"
    return doc_index, "documents"


def fixed_point(mean: np.ndarray, reps: np.ndarray, alpha: float = 0.05) -> CategoryMeans:
    """CategoryMeans from a point estimate (C,) and replicates (R, C) (curve rows: no token counts)."""
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2], axis=0) if len(reps) else (mean * np.nan,) * 2
    z = np.zeros(len(mean), np.int64)
    return CategoryMeans(np.asarray(mean, float), lo, hi, z, z, reps, alpha)


def seed_replicates(values: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """values (S, C), one row per seed -> (mean over seeds (C,), (n_boot, C) means over resampled seeds). One seed
    has nothing to resample: the replicates are NaN (no interval, verdict inconclusive), not S copies of the mean,
    which would read as certainty."""
    if values.shape[0] < 2:
        return values.mean(0), np.full((n_boot, values.shape[1]), np.nan)
    return values.mean(0), seed_weights(values.shape[0], n_boot, seed) @ values


@dataclass
class Inputs:
    """What one pair's rows are computed from."""
    labels: object  # DataFrame
    masks: dict  # name -> (N,) bool
    clusters: np.ndarray  # (N,) resampling unit
    strata: np.ndarray  # (n_units,) domain of each unit
    loss: dict  # arch -> (S, N) float32, final checkpoints
    curves: object  # DataFrame of annealed eval rows (arch, seed, step, tokens, metrics) or None
    annealed: dict  # arch -> {step: (S, N)} per-token losses at annealed points (all seeds present)
    final_step: dict  # arch -> the step of its final score files (None when they do not say)


def read_annealed_scores(results: Path, arch: str, n_seeds: int, labels_meta: dict, n_tokens: int) -> dict:
    """{step: (S, N)} from results/scores/annealed/<arch>-s<seed>-step<k>.npz for steps every seed has. Files
    scored on another eval set than the labels are refused (AnalysisError naming the file)."""
    from tokengap.analysis.compare import check_labels, load_side

    found: dict = {}
    for p in sorted((results / "scores" / "annealed").glob(f"{arch}-s*-step*.npz")):
        m = re.match(rf"^{re.escape(arch)}-s(\d+)-step(\d+)$", p.stem)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    out = {}
    for step, by_seed in sorted(found.items()):
        if len(by_seed) < n_seeds:
            continue
        paths = [by_seed[s] for s in sorted(by_seed)]
        try:
            side = load_side(paths, arch)
            check_labels(labels_meta, side, n_tokens)
        except ValueError as exc:
            raise AnalysisError(f"{paths[0]}: {exc}")
        out[step] = side.loss
    return out


def load_inputs(results: Path) -> tuple[Inputs, dict]:
    from tokengap.analysis.compare import check_labels, load_side
    from tokengap.analysis.figures import read_curves
    from tokengap.analysis.labels import read_labels
    from tokengap.analysis.categories.pos import CONTENT_PTB_PREFIXES, FUNCTION_PTB

    labels, lmeta = read_labels(results / "labels.parquet")
    n = len(labels)
    with np.load(results / "filters.npz") as z:
        F = {k: z[k].astype(bool) for k in z.files if k != "eval_hash"}
    loss, final_step = {}, {}
    for arch in ARCHS:
        if files := seed_files(results, "scores", arch):
            side = load_side(files, arch)
            try:
                check_labels(lmeta, side, n)
            except ValueError as exc:
                raise AnalysisError(f"{files[0]}: {exc}")
            loss[arch], final_step[arch] = side.loss, side.metas[0].get("step")
    ptb = labels["ptb"].astype(str).to_numpy()
    dom = labels["domain"].astype(str).to_numpy()
    dtype, ddir = (labels[c].astype(str).to_numpy() for c in ("delim_type", "delim_dir"))
    masks = {"all": np.ones(n, bool), **F,
             "content_ptb": np.array([t.startswith(CONTENT_PTB_PREFIXES) and t != "WRB" for t in ptb], bool),
             "function_ptb": np.isin(ptb, FUNCTION_PTB), "EX": ptb == "EX",
             "close_brace": (dtype == "brace") & (ddir == "close") & labels["delim_lead"].to_numpy(bool)}
    for k in (4, 8):
        masks[f"novel_{k}"] = ~F[f"repeated_{k}"]
    for g, ds in (("prose", PROSE), ("code", CODE), ("markup", MARKUP)):
        gm = np.isin(dom, ds)
        masks[f"open_delim&{g}"], masks[f"close_delim&{g}"] = F["open_delim"] & gm, F["close_delim"] & gm
    for t in np.unique(ptb):
        if t and (ptb == t).sum() >= 1000:
            masks[f"ptb={t}"] = ptb == t
    clusters, unit = token_clusters(results, labels["doc_index"].to_numpy())
    strata = cluster_strata(clusters, dom)
    curves = read_curves(results / "curves")
    if curves is not None:
        curves = curves[curves["annealed"] & (curves["step"] > 0)]
    annealed = {a: read_annealed_scores(results, a, loss[a].shape[0], lmeta, n) for a in loss}
    n_units = int(np.unique(clusters).shape[0])
    info = {"seeds": {a: int(v.shape[0]) for a, v in loss.items()}, "n_tokens": n, "units": unit,
            "n_units": n_units}
    return Inputs(labels, masks, clusters, strata, loss, curves, annealed, final_step), info


# ---- the measurements -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """One measurement of claims 1-4 (A = transformer, B = hybrid of the pair).

    op: "gap" (the gap on masks[0]), "diff" (gap on masks[0] − gap on masks[1]) or "ratio" (their quotient);
    curve: the training-time filters (results/curves) that stand in for `masks` at matched loss when there are no
    per-token files at the annealed points (their content / function masks are spaCy's UD classes, not PTB)."""
    claim: int
    what: str
    study: str
    region: Optional[Region]
    op: str
    masks: tuple
    curve: tuple = ()
    note: str = ""


SPECS = (
    Spec(1, "gap on content words (PTB NN*, VB*, JJ*, RB*; all pieces)", f"+{STUDY_CONTENT} (7B)", POS, "gap",
         ("content_ptb",), ("content",), "absolute sizes are not comparable across scales"),
    Spec(1, "gap on function words (PTB DT, IN, PRP, CC, MD, TO, …)", f"+{STUDY_FUNCTION} (7B)", POS, "gap",
         ("function_ptb",), ("function",)),
    Spec(1, "content ÷ function gap", f"{STUDY_CONTENT / STUDY_FUNCTION:.2f} (content larger)", ABOVE_1, "ratio",
         ("content_ptb", "function_ptb"), ("content", "function"), "the scale-free form of claim 1"),
    Spec(1, "existential there (EX) − all tokens", "EX among the largest gaps", POS, "diff", ("EX", "all")),
    *(Spec(2, f"gap on {label}", "> 0 (hybrid helps)", POS, "gap", (name,), (name,))
      for name, label in (("py_identifier", "Python identifiers"), ("py_string", "Python strings"),
                          ("py_comment", "Python comments"), ("html_text", "HTML text nodes"),
                          ("html_attr_value", "HTML attribute values"), ("latex_command", "LaTeX commands"))),
    *(s for k in (4, 8) for s in (
        Spec(3, f"gap on repeated {k}-grams", "(reference)", None, "gap", (f"repeated_{k}",),
             (f"repeated_{k}",) if k == 4 else ()),
        Spec(3, f"gap on novel tokens (no repeated {k}-gram)", "(reference)", None, "gap", (f"novel_{k}",),
             ("novel",) if k == 4 else ()),
        Spec(3, f"repeated ÷ novel gap ({k}-grams)", "≈ 0: nearly vanishes, not clearly negative", NEAR_0, "ratio",
             (f"repeated_{k}", f"novel_{k}"), (f"repeated_{k}", "novel") if k == 4 else ()))),
    Spec(4, "opening − closing delimiters (all domains)", "> 0", POS, "diff", ("open_delim", "close_delim"),
         ("open_delim", "close_delim")),
    *(Spec(4, f"opening − closing delimiters ({g})", "> 0 in each", POS, "diff", (f"open_delim&{g}",
                                                                                   f"close_delim&{g}"))
      for g in ("prose", "code", "markup")),
    Spec(4, "closing braces ÷ all tokens (relative gap)", "≈ 0: the transformer matches", NEAR_0, "ratio",
         ("close_brace", "all")),
)


def spec_value(cm: CategoryMeans, idx: dict, op: str, names: tuple) -> MeanCI:
    i = idx[names[0]]
    if op == "gap":
        return MeanCI(float(cm.mean[i]), float(cm.lo[i]), float(cm.hi[i]), int(cm.n_tokens[i]),
                      int(cm.n_clusters[i]))
    j = idx[names[1]]
    return cm.contrast(i, j) if op == "diff" else ratio_ci(cm, i, j)


def row(pair, view, claim, what, study, region, vs, m: MeanCI, rel: Optional[MeanCI] = None, kind="nats",
        note="", source="") -> dict:
    return {"pair": pair, "view": view, "claim": claim, "what": what, "vs": vs, "study": study,
            "rule": "" if region is None else region.text, "measured": m.mean, "lo": m.lo, "hi": m.hi,
            "relative": np.nan if rel is None else rel.mean, "rel_lo": np.nan if rel is None else rel.lo,
            "rel_hi": np.nan if rel is None else rel.hi, "tokens": m.n_tokens, "kind": kind,
            "verdict": judge(m.lo, m.hi, region), "note": note, "source": source}


def text_rows(inp: Inputs, pair: str, n_boot: int, keep: Optional[np.ndarray] = None) -> list[dict]:
    """Claims 1-4 at equal tokens: the final checkpoints of A and B, two-level bootstrap. keep: (N,) bool."""
    a, b, _ = PAIRS[pair]
    names = list(dict.fromkeys(["all", *(x for s in SPECS for x in s.masks),
                                *(k for k in inp.masks if k.startswith("ptb="))]))
    masks = [inp.masks[k] if keep is None else inp.masks[k] & keep for k in names]
    cm = two_level_gaps(inp.loss[a], inp.loss[b], inp.clusters, masks, inp.strata, n_boot)
    idx = {k: i for i, k in enumerate(names)}
    out = []
    for s in SPECS:
        m = spec_value(cm, idx, s.op, s.masks)
        rel = ratio_ci(cm, idx[s.masks[0]], idx["all"]) if s.op == "gap" and s.masks[0] != "all" else None
        note = s.note
        if s.op == "ratio" and s.claim == 1:
            inside = m.lo <= STUDY_CONTENT / STUDY_FUNCTION <= m.hi
            note = f"{note}; the study's 1.61 is {'inside' if inside else 'outside'} the interval"
        out.append(row(pair, "equal tokens", s.claim, s.what, s.study, s.region, b, m, rel,
                       "ratio" if s.op == "ratio" else "nats", note))
    if any(k.startswith("ptb=") for k in idx):
        out.append(rank_row(cm, idx, pair, b))
    return out


def rank_row(cm: CategoryMeans, idx: dict, pair: str, b: str) -> dict:
    """Claim 1's fine-grained part: the ranks of RB, JJ and EX among the PTB tags with ≥ 1000 tokens, by gap,
    with their intervals from the same replicates; the study's side = the top quarter."""
    tags = [k for k in idx if k.startswith("ptb=")]
    cols = [idx[t] for t in tags]
    order = np.argsort(-cm.mean[cols])
    rank = {tags[i][4:]: r + 1 for r, i in enumerate(order)}
    rep_rank = (-cm.reps[:, cols]).argsort(1).argsort(1) + 1  # (R, T)
    top = max(1, len(tags) // 4)
    region = Region(0.5, top + 0.5, f"rank ≤ {top} (top quarter of {len(tags)})")
    worst = None
    for t in ("RB", "JJ", "EX"):
        if f"ptb={t}" in idx:
            lo, hi = np.quantile(rep_rank[:, tags.index(f"ptb={t}")], [0.025, 0.975])
            v = judge(lo, hi, region)
            if worst is None or ("agrees", "inconclusive", "disagrees").index(v) > \
                    ("agrees", "inconclusive", "disagrees").index(worst[1]):
                worst = (t, v, lo, hi)
    detail = ", ".join(f"{t} {rank[t]}" for t in ("RB", "JJ", "EX") if t in rank)
    lead = ", ".join(f"{tags[i][4:]} {cm.mean[cols][i]:+.3f}" for i in order[:5])
    t, v, lo, hi = worst if worst else ("", "inconclusive", np.nan, np.nan)
    m = MeanCI(float(rank.get(t, np.nan)), float(lo), float(hi), 0, 0)
    r = row(pair, "equal tokens", 1, "rank of RB, JJ, EX among PTB tags by gap (the lowest-ranked shown)",
            "RB, JJ, EX largest", region, b, m, kind="rank",
            note=f"ranks {detail}; largest: {lead}; the verdict is the worst of the three")
    r["verdict"] = v
    return r


# ---- matched overall loss -------------------------------------------------------------------------------------------
def matched_points(curve_a, curve_b, metric: str = "eval/all") -> dict:
    """The annealed points (one of A, one of B) whose seed-mean `metric` are closest.

    curve_a, curve_b: DataFrames of annealed eval rows (columns seed, step, tokens, metric). Returns step_a,
    step_b, tokens_a, tokens_b, loss_a, loss_b, diff (loss_a − loss_b); ties go to the earliest points."""
    ma = curve_a.groupby("step")[[metric, "tokens"]].mean()
    mb = curve_b.groupby("step")[[metric, "tokens"]].mean()
    d = np.abs(ma[metric].to_numpy()[:, None] - mb[metric].to_numpy()[None, :])
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    la, lb = float(ma[metric].iloc[i]), float(mb[metric].iloc[j])
    return {"step_a": int(ma.index[i]), "step_b": int(mb.index[j]), "tokens_a": int(ma["tokens"].iloc[i]),
            "tokens_b": int(mb["tokens"].iloc[j]), "loss_a": la, "loss_b": lb, "diff": la - lb}


def curve_values(curves, arch: str, step: int, names: tuple) -> np.ndarray:
    """(S, C) the filters `names` of every seed of `arch` at an annealed step."""
    sel = curves[(curves["arch"] == arch) & (curves["step"] == step)].sort_values("seed")
    return sel[[curve_column(k) for k in names]].to_numpy(np.float64)


def matched_rows(inp: Inputs, pair: str, n_boot: int) -> tuple[list[dict], Optional[dict]]:
    """Claims 1-4 at matched overall loss (A = transformer, B = hybrid). Per-token losses at the two points when
    both sides have them (the same masks and two-level bootstrap as at equal tokens), else the training-time
    filters of the curves (seeds resampled only)."""
    a, b, _ = PAIRS[pair]
    if inp.curves is None or not {a, b} <= set(inp.curves["arch"]):
        return [], None
    pt = matched_points(inp.curves[inp.curves["arch"] == a], inp.curves[inp.curves["arch"] == b])
    la, lb = inp.annealed.get(a, {}).get(pt["step_a"]), inp.annealed.get(b, {}).get(pt["step_b"])
    per_token = la is not None and lb is not None
    pt["source"] = "per-token losses" if per_token else "training curves (seeds resampled only)"
    out = []
    if per_token:
        names = list(dict.fromkeys(["all", *(x for s in SPECS for x in s.masks)]))
        cm = two_level_gaps(la, lb, inp.clusters, [inp.masks[k] for k in names], inp.strata, n_boot)
    else:
        logged = {k for k in (x for s in SPECS for x in s.curve)
                  if curve_column(k) in inp.curves.columns and inp.curves[curve_column(k)].notna().all()}
        names = ["all", *sorted(logged)]
        ma, ra = seed_replicates(curve_values(inp.curves, a, pt["step_a"], tuple(names)), n_boot, 1)
        mb, rb = seed_replicates(curve_values(inp.curves, b, pt["step_b"], tuple(names)), n_boot, 2)
        cm = fixed_point(ma - mb, ra - rb)
    idx = {k: i for i, k in enumerate(names)}
    cm_all = MeanCI(float(cm.mean[0]), float(cm.lo[0]), float(cm.hi[0]), int(cm.n_tokens[0]), 0)
    out.append(row(pair, "matched loss", 0, "overall gap at the matched points", "(≈ 0 by construction)", None, b,
                   cm_all, source=pt["source"],
                   note=f"{a} step {pt['step_a']:,} vs {b} step {pt['step_b']:,}"))
    for s in SPECS:
        names_s = s.masks if per_token else s.curve
        if not names_s or not set(names_s) <= set(idx):
            continue
        op, region, notes = s.op, s.region, []
        if s.op == "ratio" and s.masks[1] != "all":
            # at matched loss both gaps are near 0, so their ratio is noise: judge their difference instead
            op, region = "diff", POS if s.claim == 1 else NEG
            notes.append(f"at matched loss the difference {names_s[0]} − {names_s[1]} ({region.text}; a ratio of "
                         "two near-zero gaps says nothing)")
        if not per_token:
            notes.append(f"training-time filter{'s' if len(names_s) > 1 else ''} {', '.join(names_s)}")
        out.append(row(pair, "matched loss", s.claim, s.what, s.study, region, b, spec_value(cm, idx, op, names_s),
                       kind="ratio" if op == "ratio" else "nats", source=pt["source"], note="; ".join(notes)))
    return out, pt


# ---- beyond a better model (tokengap/analysis/progress.py) -----------------------------------------------------------
def beyond_rows(p) -> list[dict]:
    """Claims 1-4 on the residuals of a `progress.Progress` (A = transformer, B = hybrid): each measurement with the
    gap that A's and B's own training predict for their overall gap taken out. A ratio of two categories becomes
    the difference of their residuals (as at matched loss); a ratio to all tokens, the residual over the observed
    overall gap (the residual of all tokens is 0 by construction)."""
    idx = {k: i for i, k in enumerate(p.names)}
    out = []
    for s in SPECS:
        names = s.masks if p.source == TOKENS else s.curve
        if not names or not set(names) <= set(idx):
            continue
        op, region, notes = s.op, s.region, []
        if op == "ratio" and names[1] != "all":
            op, region = "diff", POS if s.claim == 1 else NEG
            notes.append(f"the residuals' difference {names[0]} − {names[1]} ({region.text})")
        if op == "ratio":
            m = p.relative(idx[names[0]])
            notes.append("the residual ÷ the observed overall gap")
        else:
            m = spec_value(p.resid, idx, op, names)
        if p.source != TOKENS:
            notes.append(f"training-time filter{'s' if len(names) > 1 else ''} {', '.join(names)}")
        notes += p.notes([idx[k] for k in names])
        out.append(row(p.pair, BEYOND, s.claim, s.what, s.study, region, p.b, m,
                       kind="ratio" if op == "ratio" else "nats", source=p.source, note="; ".join(notes)))
    return out


# ---- claim 5: the synthetic probes ----------------------------------------------------------------------------------
SHORTCUTS = "shortcuts.npz"  # under results/probes/: per-target shortcut flags (tokengap/analysis/probes/shortcuts.py)
PROBE_CLAIMS = (("pronoun", "pronoun", "hybrid wins", POS), ("entity", "box", "hybrid wins", POS),
                ("brackets", "delim", "transformer wins", NEG), ("recall", "value", "(not in the study)", None))


def probe_rows(results: Path, pair: str, n_boot: int) -> list[dict]:
    """Claim 5: the loss gap on each probe's targets (all levels), seeds and probe documents resampled; with
    results/probes/shortcuts.npz, one more row per probe with shortcut-settled targets, without them."""
    from tokengap.analysis.probes.compare import check_same_targets
    from tokengap.analysis.probes.scoring import load_results

    a, b, _ = PAIRS[pair]
    ra, rb = ([load_results(p) for p in seed_files(results, "probes", x)] for x in (a, b))
    if not ra or not rb:
        return []
    try:
        check_same_targets(ra + rb)
    except ValueError as exc:
        raise AnalysisError(str(exc))
    ref = ra[0]
    la, lb = np.stack([r.loss for r in ra]), np.stack([r.loss for r in rb])
    ca, cb = np.mean([r.correct for r in ra], 0), np.mean([r.correct for r in rb], 0)
    variants = [(np.ones(len(ref.loss), bool), None)]
    sc_path = results / "probes" / SHORTCUTS
    if sc_path.is_file():
        from tokengap.analysis.probes.shortcuts import check_matches, load_shortcuts

        sc = load_shortcuts(sc_path)
        try:
            check_matches(sc, ra + rb)
        except ValueError as exc:
            raise AnalysisError(str(exc))
        variants.append((~sc.shortcut_settles.astype(bool), sc))
    out = []
    for keep, sc in variants:
        groups = [(p, k, st, reg, (ref.probe == p) & (ref.kind == k)) for p, k, st, reg in PROBE_CLAIMS]
        groups = [g for g in groups if g[4].any() and (sc is None or (g[4] & ~keep).any())]
        if not groups:
            continue
        cm = two_level_gaps(la, lb, ref.doc, [g[4] & keep for g in groups], None, n_boot)
        for i, (probe, kind, study, region, group) in enumerate(groups):
            mask = group & keep
            m = MeanCI(float(cm.mean[i]), float(cm.lo[i]), float(cm.hi[i]), int(mask.sum()), int(cm.n_clusters[i]))
            acc = f"accuracy T {ca[mask].mean():.3f} / H {cb[mask].mean():.3f} (chance {ref.chance[mask].mean():.3f})"
            if region is not None and max(ca[mask].mean(), cb[mask].mean()) < ref.chance[mask].mean() + 0.03:
                acc += "; neither model's arg-max beats chance"
            what = f"probe {probe}: loss gap (all levels)"
            if sc is not None:
                n_all, n_out = int(group.sum()), int((group & ~keep).sum())
                what += ", excluding shortcut-settled targets"
                sh = float(sc.shortcut_chance[mask].mean())
                acc = (f"{n_out:,} of {n_all:,} targets left out (a shortcut settles them, results/probes/"
                       f"{SHORTCUTS}); {acc}; shortcut accuracy on the rest {sh:.3f}")
                if ref.chance[mask].mean() < sh and max(ca[mask].mean(), cb[mask].mean()) < sh:
                    acc += " (neither model's arg-max reaches it)"
            out.append(row(pair, "equal tokens", 5, what, study, region, b, m, note=acc))
    return out


# ---- claim 6: filtered losses during training -----------------------------------------------------------------------
CN, RP, AL = "content_novel", "repeated_4", "all"


def curve_rows(inp: Inputs, pair: str, n_boot: int) -> list[dict]:
    """Claim 6 from the annealed points of the curves, at the first one and the last one that all three
    architectures have; intervals resample each architecture's seeds."""
    t, h, r = PAIRS[pair]
    if inp.curves is None or not {t, h, r} <= set(inp.curves["arch"]):
        return []
    common = set.intersection(*(set(inp.curves[inp.curves["arch"] == x]["step"]) for x in (t, h, r)))
    if not common:
        return []
    out = []
    for when, step in (("first annealed point", min(common)), ("final", max(common))):
        tokens = int(inp.curves[inp.curves["step"] == step]["tokens"].mean())
        rep = {}
        for i, x in enumerate((t, h, r)):
            rep[x] = seed_replicates(curve_values(inp.curves, x, step, (CN, RP, AL)), n_boot, 10 + i)
        col = {CN: 0, RP: 1, AL: 2}

        def diff(x, y, f):
            return rep[x][0][col[f]] - rep[y][0][col[f]], rep[x][1][:, col[f]] - rep[y][1][:, col[f]]

        def add(what, study, region, vs, m, reps, note=""):
            lo, hi = np.quantile(reps, [0.025, 0.975])
            if lo != lo:
                note = "; ".join(x for x in (note, "one seed: curves have no interval") if x)
            out.append(row(pair, "training", 6, f"{what} ({when}, {tokens / 1e6:.0f}M tokens)", study, region, vs,
                           MeanCI(float(m), float(lo), float(hi), 0, 0), note=note,
                           source="training curves (seeds resampled)"))
        add("content words, not repeated: transformer − hybrid", "hybrid best", POS, h, *diff(t, h, CN))
        add("content words, not repeated: recurrent − hybrid", "hybrid best", POS, h, *diff(r, h, CN))
        add("content words, not repeated: transformer − recurrent", "recurrent beats the transformer", POS, r,
            *diff(t, r, CN))
        add("repeated 4-grams: transformer − recurrent", "recurrent worst", NEG, r, *diff(t, r, RP))
        add("repeated 4-grams: hybrid − recurrent", "recurrent worst", NEG, r, *diff(h, r, RP))
        (gc, gcr), (gr, grr), (ga, gar) = diff(t, r, CN), diff(t, r, RP), diff(t, r, AL)
        add("hidden in the overall loss: min(abs(content-novel gap), abs(repeated gap)) − abs(overall gap), "
            "transformer vs recurrent", "invisible in overall loss", POS, r,
            min(abs(gc), abs(gr)) - abs(ga), np.minimum(abs(gcr), abs(grr)) - abs(gar),
            note=f"overall {ga:+.3f}, content-novel {gc:+.3f}, repeated {gr:+.3f}")
    return out


# ---- all rows -------------------------------------------------------------------------------------------------------
def build(results: Path, n_boot: int = 1000, keep: Optional[np.ndarray] = None,
          text_only: bool = False) -> tuple[list[dict], dict]:
    """The claim rows of every pair that has score files. keep: (N,) bool, restrict claims 1-4 to these tokens;
    text_only: claims 1-4 at equal tokens only."""
    inp, info = load_inputs(results)
    if not any(PAIRS[p][0] in inp.loss and PAIRS[p][1] in inp.loss for p in PAIRS):
        raise AnalysisError(f"{results}/scores: no pair with score files on both sides "
                            f"({'; '.join(f'{p}: {x[0]} and {x[1]}' for p, x in PAIRS.items())})")
    rows: list[dict] = []
    info["matched"], info["pairs"], info["progress"], info["no_progress"] = {}, [], [], []
    for pair, (a, b, _) in PAIRS.items():
        if a not in inp.loss or b not in inp.loss:
            continue
        info["pairs"].append(pair)
        rows += text_rows(inp, pair, n_boot, keep)
        if text_only:
            continue
        mrows, pt = matched_rows(inp, pair, n_boot)
        rows += mrows
        if pt:
            info["matched"][pair] = pt
        progs, missing = comparisons(inp, pair, PAIRS[pair], n_boot)
        info["progress"] += progs
        info["no_progress"] += missing
        rows += [r for p in progs if p.b == b for r in beyond_rows(p)]
        rows += probe_rows(results, pair, n_boot)
        rows += curve_rows(inp, pair, n_boot)
    rows.sort(key=lambda r: r["claim"])  # stable: rows keep their order within a claim
    return rows, info


# ---- markdown -------------------------------------------------------------------------------------------------------
def fmt(m: float, lo: Optional[float] = None, hi: Optional[float] = None, kind: str = "nats") -> str:
    if m != m:
        return ""
    f = {"nats": "{:+.3f}", "ratio": "{:.2f}", "rank": "{:.0f}"}[kind]
    return f.format(m) if lo is None or lo != lo else f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]"


def cell(r: Optional[dict]) -> str:
    if r is None:
        return "—"
    v = "" if r["verdict"] == "—" else f" **{r['verdict']}**"
    return fmt(r["measured"], r["lo"], r["hi"], r["kind"]) + v


def holds_for(verdicts: dict) -> str:
    """verdicts: pair -> the claim's judged verdicts at equal tokens ([] = not run). Holds = every row agrees."""
    run = [p for p, v in verdicts.items() if v]
    ok = [p for p in run if all(x == "agrees" for x in verdicts[p])]
    missing = [p for p in verdicts if p not in run]
    if not run:
        return "not run"
    if not missing:
        return "both pairs" if len(ok) == len(run) else f"{ok[0]} only" if ok else "neither"
    return f"{'yes' if ok else 'no'} ({run[0]}); {', '.join(missing)} not run"


CLAIMS = {1: "content > function words; RB, JJ, EX largest", 2: "code / markup categories favour the hybrid",
          3: "advantage nearly vanishes on repeated n-grams", 4: "opening > closing delimiters; braces matched",
          5: "probes: hybrid wins pronoun and entity, transformer brackets",
          6: "early in training: hybrid < recurrent < transformer on content; recurrent worst on repeats; "
             "invisible in overall loss"}


def tally(vs: list) -> str:
    """['agrees', 'agrees', 'disagrees'] -> '2 agrees, 1 disagrees'."""
    return ", ".join(f"{vs.count(v)} {v}" for v in ("agrees", "inconclusive", "disagrees") if vs.count(v))


def survives(verdicts: dict) -> str:
    """verdicts: pair -> the claim's judged verdicts beyond a better model, or a word ("not run", "no trajectory").
    yes = every row agrees, in part = some do, no = none does; "—" when no pair has such rows for the claim."""
    run = {p: v for p, v in verdicts.items() if isinstance(v, list) and v}
    if not run:
        return "—"

    def one(v: list) -> str:
        k = v.count("agrees")
        return "yes" if k == len(v) else "no" if k == 0 else f"in part ({k} of {len(v)})"
    many = len(verdicts) > 1
    return "; ".join([f"{one(v)}{f' ({p})' if many else ''}" for p, v in run.items()] +
                     [f"{p} {v}" for p, v in verdicts.items() if isinstance(v, str)])


def to_markdown(rows: list[dict], info: dict) -> str:
    seeds = ", ".join(f"{a} {n}" for a, n in info["seeds"].items())
    pairs = [p for p in PAIRS if p in info["pairs"]]
    missing = [p for p in PAIRS if p not in info["pairs"]]
    beyond = any(r["view"] == BEYOND for r in rows)  # no trajectory anywhere: the column is left out
    views = ("equal tokens", "matched loss") + ((BEYOND,) if beyond else ())
    lines = [f"Seeds: {seeds}. {info['n_tokens']:,} eval tokens in {info['n_units']} {info['units']}. Gap = "
             "loss(transformer) − loss(B) in nats, positive favours B. 95% intervals: two-level bootstrap "
             f"(each architecture's seeds, and {info['units']} within domains; 1000 replicates). Verdict: agrees = "
             "the interval lies inside the region the study's claim gives (column *rule*), disagrees = wholly "
             "outside, inconclusive = it straddles a boundary."
             + (" Not run: " + ", ".join(p + " (" + ", ".join(PAIRS[p]) + ")" for p in missing) + "."
                if missing else "")
             + (" *Beyond a better model*: the gap left after the gap that the models' own training trajectories "
                "predict for their overall gap is taken out (`tokengap/analysis/progress.py`; the section "
                "\"Architecture or a better model?\")." if beyond else ""), ""]
    # which claims hold for which pair
    lines += ["| # | claim | " + " | ".join(f"{p}, {v}" for p in PAIRS for v in views) + " | holds for (equal tokens) |"
              + (" survives a better model |" if beyond else ""),
              "|---|---|" + "---|" * (len(views) * len(PAIRS) + 1 + beyond)]
    has_beyond = {p: any(r["pair"] == p and r["view"] == BEYOND for r in rows) for p in PAIRS}
    for c, text in CLAIMS.items():
        cells, verd, surv = [], {}, {}
        for p in PAIRS:
            one = "" if p in missing or min(info["seeds"].get(a, 0) for a in PAIRS[p] if a in info["seeds"]) > 1 \
                else " (one seed: see the pair's table)"
            for view in views:
                vs = [r["verdict"] for r in rows if r["pair"] == p and r["claim"] == c and r["verdict"] != "—"
                      and (r["view"] == view or (view == "equal tokens" and r["view"] == "training"))]
                if view == "equal tokens":
                    verd[p] = vs
                if view == BEYOND:
                    surv[p] = vs if has_beyond[p] else "not run" if p in missing else "no trajectory"
                cells.append((tally(vs) + one if vs else "") or ("not run" if p in missing else "—"))
        lines.append(f"| {c} | {text} | " + " | ".join(cells) + f" | {holds_for(verd)} |"
                     + (f" {survives(surv)} |" if beyond else ""))
    # matched points
    if info["matched"]:
        lines += ["", "Matched overall loss: the annealed points (of A and of B) whose seed-mean overall eval losses "
                  "are closest.", "", "| pair | A at | B at | overall loss A | overall loss B | A − B | category "
                  "gaps from |", "|---|---|---|---|---|---|---|"]
        for p, pt in info["matched"].items():
            a, b, _ = PAIRS[p]
            lines.append(f"| {p} | {a}, step {pt['step_a']:,} ({pt['tokens_a'] / 1e6:.0f}M tokens) | {b}, step "
                         f"{pt['step_b']:,} ({pt['tokens_b'] / 1e6:.0f}M tokens) | {pt['loss_a']:.4f} | "
                         f"{pt['loss_b']:.4f} | {pt['diff']:+.4f} | {pt['source']} |")
    # the rows, one pair's views side by side
    for p in pairs:
        one = [a for a in PAIRS[p] if info["seeds"].get(a) == 1]
        caveat = (f" **One seed of {', '.join(one)}:** the seed level of the bootstrap cannot be resampled from one "
                  "run, so these intervals cover the draw of documents (source files) only, not what another "
                  "training run would give; they are narrower than intervals over seeds would be." if one else "")
        lines += ["", f"**{p}** ({', '.join(PAIRS[p])}): B = {PAIRS[p][1]} unless the row says otherwise.{caveat}", "",
                  "| # | measurement | study | rule | equal tokens (95% CI) | relative gap (÷ overall) | matched loss "
                  "(95% CI) |" + (" beyond a better model (95% CI) |" if beyond else "") + " notes |",
                  "|---|---|---|---|---|---|---|" + "---|" * beyond + "---|"]
        eq = [r for r in rows if r["pair"] == p and r["view"] in ("equal tokens", "training")]
        ml = {(r["claim"], r["what"]): r for r in rows if r["pair"] == p and r["view"] == "matched loss"}
        bb = {(r["claim"], r["what"]): r for r in rows if r["pair"] == p and r["view"] == BEYOND}
        for r in eq:
            m, z = ml.get((r["claim"], r["what"])), bb.get((r["claim"], r["what"]))
            rel = fmt(r["relative"], r["rel_lo"], r["rel_hi"], "ratio") if r["relative"] == r["relative"] else ""
            what = r["what"] if r["vs"] == PAIRS[p][1] else f"{r['what']} (B = {r['vs']})"
            notes = [t for t in (r["note"], m["note"] if m else "") if t]
            extra = [t for t in (z["note"].split("; ") if z and z["note"] else []) if t not in "; ".join(notes)]
            notes = "; ".join(notes + (["beyond: " + "; ".join(extra)] if extra else []))
            none = "—" if r["view"] != "training" else "n/a"
            lines.append(f"| {r['claim']} | {what} | {r['study']} | {r['rule']} | {cell(r)} | {rel} | "
                         f"{cell(m) if m else none} |" + (f" {cell(z) if z else none} |" if beyond else "")
                         + f" {notes} |")
        if (0, "overall gap at the matched points") in ml:
            r = ml[(0, "overall gap at the matched points")]
            lines.append(f"| | overall gap at the matched points | | | | | {cell(r)} |" + " |" * beyond
                         + f" {r['note']}; {r['source']} |")
    return "\n".join(lines)


def progress_markdown(rows: list[dict], info: dict, comparisons_md: str) -> str:
    """RESULTS.md's "Architecture or a better model?" block: per pair and claim, the verdicts at equal tokens and
    beyond a better model; then each comparison's trajectories and its largest residuals (`progress.write`)."""
    lines = ["Beyond a better model = observed gap − the gap the models' own training predicts for their overall gap "
             "(`tokengap/analysis/progress.py`, docs/analysis.md). Verdicts under the claims' rule, on the residuals; "
             "survives: yes = every judged row agrees, in part = some do, no = none does.", "",
             "| pair | # | claim | equal tokens | beyond a better model | survives a better model |",
             "|---|---|---|---|---|---|"]
    for p in info["pairs"]:
        for c, text in CLAIMS.items():
            vs = {v: [r["verdict"] for r in rows if r["pair"] == p and r["claim"] == c and r["verdict"] != "—"
                      and r["view"] in ((v, "training") if v == "equal tokens" else (v,))]
                  for v in ("equal tokens", BEYOND)}
            if vs[BEYOND]:
                lines.append(f"| {p} | {c} | {text} | {tally(vs['equal tokens'])} | {tally(vs[BEYOND])} | "
                             f"{survives({p: vs[BEYOND]})} |")
    if len(lines) == 4:
        lines = []
    return "\n".join(lines + ["", comparisons_md]).strip()


def describe_layers(layers: list) -> str:
    """['mamba2', 'mamba2', 'mamba2', 'attention'] * 2 -> '(mamba2 ×3, attention) ×2'."""
    n = len(layers)
    p = next(k for k in range(1, n + 1) if n % k == 0 and layers == layers[:k] * (n // k))
    runs: list = []
    for x in layers[:p]:
        if runs and runs[-1][0] == x:
            runs[-1][1] += 1
        else:
            runs.append([x, 1])
    body = ", ".join(f"{x} ×{c}" if c > 1 else x for x, c in runs)
    return body if p == n else f"{body} ×{n // p}" if len(runs) == 1 and runs[0][1] == 1 else f"({body}) ×{n // p}"


def clean_tokens(results: Path, labels_doc: np.ndarray, max_overlap: float = 0.5) -> Optional[tuple]:
    """(N,) bool: tokens of eval documents with < max_overlap of their 13-grams in training and no chunk of
    the same file in training (results/eval_overlap.json, scripts/eval_overlap.py); None without that file."""
    path = results / "eval_overlap.json"
    if not path.is_file():
        return None
    ov = json.loads(path.read_text())
    bad = {int(i) for i, r in ov["docs"].items() if r["ngram13_in_train"] >= max_overlap or r["sibling_in_train"]}
    return ~np.isin(labels_doc, sorted(bad)), len(bad), ov["n_docs"]


def robustness_markdown(full: list[dict], clean: list[dict], n_bad: int, n_docs: int, n_tokens: int) -> str:
    by_key = {(r["pair"], r["claim"], r["what"]): r for r in clean}
    lines = [f"Without the {n_bad} of {n_docs} eval documents that have ≥50% of their word 13-grams in the training "
             f"split or another chunk of the same file in it ({n_tokens:,} tokens left; `scripts/eval_overlap.py`), "
             "at equal tokens:", "", "| pair | # | measurement | all eval documents | without overlapping documents |",
             "|---|---|---|---|---|"]
    for r in full:
        c = by_key.get((r["pair"], r["claim"], r["what"]))
        if c is None or r["view"] != "equal tokens" or r["kind"] == "rank":
            continue
        lines.append(f"| {r['pair']} | {r['claim']} | {r['what']} | {cell(r)} | {cell(c)} |")
    return "\n".join(lines)


def runs_table(results: Path) -> str:
    """One row per training run: size, tokens, wall time and throughput (results/runs/*), final losses."""
    from tokengap.evaluation.scorefile import load_scores

    lines = ["| run | layers | non-embedding params | tokens | steps | train wall (s) | train tokens/s | GPU | "
             "final eval loss (annealed) | eval loss, `analysis score` |", "|---|---|---|---|---|---|---|---|---|---|"]
    for d in sorted((results / "runs").glob("*-s*")):
        run, summ = json.loads((d / "run.json").read_text()), json.loads((d / "summary.json").read_text())
        curve = results / "curves" / f"{d.name}.jsonl"
        final = [json.loads(x) for x in curve.read_text().splitlines()] if curve.is_file() else []
        final = [r for r in final if r.get("kind") == "eval" and r["step"] == summ["steps"] and r.get("annealed")]
        sc = results / "scores" / f"{d.name}.npz"
        mean = f"{float(load_scores(sc).loss.mean()):.4f}" if sc.is_file() else ""
        lines.append(f"| {d.name} | {describe_layers(run['layers'])} | {run['non_embedding_params']:,} | "
                     f"{summ['tokens']:,} | {summ['steps']:,} | {summ['wall_seconds']:.0f} | "
                     f"{summ['train_tokens_per_s']:,.0f} | {summ['device_name']} | "
                     f"{final[-1]['eval/all']:.4f} | {mean} |" if final else "")
    return "\n".join(x for x in lines if x)


SPREAD_MIN_TOKENS = 1000  # a category's seed spread over fewer tokens is mostly sampling noise: not ranked


def seed_spread_table(results: Path) -> str:
    """Per architecture: each seed's mean eval loss, the spread across seeds (max - min), and the category (filter
    mask of labels.parquet, or domain) whose mean loss differs most between seeds: the seed variance a reader needs
    to judge the intervals of the claims table. Categories under SPREAD_MIN_TOKENS tokens are not ranked."""
    import re

    from tokengap.analysis.categories.filters import filter_masks
    from tokengap.analysis.labels import read_labels
    from tokengap.evaluation.scorefile import load_scores

    files: dict[str, dict[int, Path]] = {}
    for f in sorted((results / "scores").glob("*-s*.npz")):
        m = re.fullmatch(r"(.+)-s(\d+)", f.stem)
        if m:
            files.setdefault(m.group(1), {})[int(m.group(2))] = f
    if not files:
        return ""
    labels, _ = read_labels(results / "labels.parquet")
    masks = {k: v for k, v in filter_masks(labels).items() if k != "all"}
    doms = labels["domain"].to_numpy()
    masks.update({f"domain={d}": doms == d for d in sorted(set(doms))})
    masks = {k: m for k, m in masks.items() if int(m.sum()) >= SPREAD_MIN_TOKENS}
    lines = ["| architecture | seeds | eval loss per seed | spread | largest per-category seed difference |",
             "|---|---|---|---|---|"]
    for arch, seeds in files.items():
        losses = {s: load_scores(f).loss for s, f in sorted(seeds.items())}
        means = [float(x.mean()) for x in losses.values()]
        per_seed = ", ".join(f"s{s} {v:.4f}" for s, v in zip(losses, means))
        if len(losses) < 2:
            lines.append(f"| {arch} | 1 | {per_seed} | — | — (one seed) |")
            continue
        spread = {k: float(np.ptp([x[m].mean() for x in losses.values()])) for k, m in masks.items()}
        worst = max(spread, key=spread.get)
        lines.append(f"| {arch} | {len(losses)} | {per_seed} | {max(means) - min(means):.4f} | {worst} "
                     f"{spread[worst]:.4f} (n={int(masks[worst].sum()):,}) |")
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str, path: Path) -> str:
    a, b = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if a not in text or b not in text:
        raise AnalysisError(f"{path}: no {a} ... {b} block")
    head, rest = text.split(a, 1)
    _, tail = rest.split(b, 1)
    return f"{head}{a}\n{body}\n{b}{tail}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=existing_dir, default="results")
    p.add_argument("--update", type=existing_file, default=None, help="a markdown file whose claims:begin/end block is replaced")
    p.add_argument("--n-boot", type=positive_int, default=1000)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from tokengap.models.atomic import atomic_write_text

    results = Path(args.results)
    if not (results / "labels.parquet").is_file():
        raise AnalysisError(f"{results}/labels.parquet missing (python -m tokengap.analysis label ...)")
    if args.update and "<!-- claims:begin -->" not in Path(args.update).read_text():
        raise AnalysisError(f"{args.update}: no <!-- claims:begin --> ... <!-- claims:end --> block")
    rows, info = build(results, args.n_boot)
    atomic_write_text(results / "claims.csv", pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
    progress = progress_markdown(rows, info, write_progress(results, info["progress"], info["no_progress"]))
    md = to_markdown(rows, info)
    doc = pd.read_parquet(results / "labels.parquet", columns=["doc_index"])["doc_index"].to_numpy()
    clean = clean_tokens(results, doc)
    if clean is not None:
        keep, n_bad, n_docs = clean
        robust, _ = build(results, args.n_boot, keep=keep, text_only=True)
        md += "\n\n" + robustness_markdown(rows, robust, n_bad, n_docs, int(keep.sum()))
    atomic_write_text(results / "claims.md", md + "\n")
    runs = runs_table(results) if (results / "runs").is_dir() else ""
    spread = seed_spread_table(results)
    if runs and spread:
        runs += ("\n\nSeed spread (final score files; categories: the filter masks and the domains with at least "
                 f"{SPREAD_MIN_TOKENS:,} tokens):\n\n" + spread)
    if args.update:
        path = Path(args.update)
        text = replace_block(path.read_text(), "claims", md, path)
        if "<!-- runs:begin -->" in text:
            text = replace_block(text, "runs", runs, path)
        if "<!-- progress:begin -->" in text:
            text = replace_block(text, "progress", progress, path)
        atomic_write_text(path, text)
    print(md)
    print(runs)
    print(progress)
    return 0
