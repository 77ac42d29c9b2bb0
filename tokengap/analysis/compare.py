"""Compare two models token by token: gap = loss(A) - loss(B) per category, with CIs, seed spread, regression.

    python -m tokengap.analysis compare --a results/scores/transformer-s0.npz [--a ...-s1.npz] \\
        --b results/scores/hybrid-s0.npz [--b ...] --labels results/labels.parquet --out compare/hybrid

Default sign (paper.md): A = transformer, B = hybrid, so a positive gap favours the hybrid. With several seeds
per side, the gap per token is mean over A's seeds minus mean over B's seeds; its CI is a two-level bootstrap
(`tokengap.analysis.stats.two_level_gaps`: the seeds of each side and the documents, or source files, within domains),
and beside every gap the spread over matched seed pairs (seed i of A vs seed i of B): min, max and sd.

Writes <out>/gaps.csv (every category of every family), <out>/regression.csv, <out>/summary.json.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from tokengap.evaluation.scorefile import Scores, check_comparable, load_scores
from tokengap.models.atomic import atomic_write_text
from tokengap.analysis.errors import AnalysisError, check_output_dir, fraction, json_fields, positive_int
from tokengap.analysis.stats import cluster_strata, cluster_sums, ols_clustered, two_level_gaps


# ---- inputs ---------------------------------------------------------------------------------------------------
@dataclass
class Side:
    """All seeds of one model: loss (S, N) float32 and the score files' metadata."""
    name: str
    loss: np.ndarray
    metas: list
    paths: list = field(default_factory=list)

    @property
    def n_seeds(self) -> int:
        return int(self.loss.shape[0])


def load_side(paths: Sequence[Union[str, Path]], name: Optional[str] = None) -> Side:
    scores = [load_scores(p) for p in paths]
    for p, s in zip(paths[1:], scores[1:]):
        check_comparable(scores[0], s, (str(paths[0]), str(p)))
    label = name or scores[0].meta.get("name") or Path(paths[0]).stem.split("-s")[0]
    return Side(label, np.stack([s.loss for s in scores]), [s.meta for s in scores], [str(p) for p in paths])


def check_sides(a: Side, b: Side) -> None:
    """Refuse sides scored on different eval sets or tokenizers (names the hashes)."""
    sa = Scores(a.loss[0], np.zeros(0, bool), a.metas[0])
    sb = Scores(b.loss[0], np.zeros(0, bool), b.metas[0])
    check_comparable(sa, sb, (a.name, b.name))


def check_contexts(a: Side, b: Side) -> None:
    """Refuse sides scored with different contexts: a gap would mix the model with the window it saw."""
    ca = {m.get("context_len") for m in a.metas}
    cb = {m.get("context_len") for m in b.metas}
    if len(ca | cb) > 1 and None not in ca | cb:
        raise ValueError(f"{a.name} was scored with context {'/'.join(map(str, sorted(ca)))}, {b.name} with "
                         f"{'/'.join(map(str, sorted(cb)))}: score both at one context (score --context T)")


def check_labels(labels_meta: dict, side: Side, n_rows: int) -> None:
    """Refuse labels computed for another eval set, or windows of another context, than the scores."""
    from tokengap.evaluation.scorefile import same_eval_tokens
    ha, hb = labels_meta.get("eval_hash"), side.metas[0].get("eval_hash")
    if ha != hb and not same_eval_tokens(labels_meta, side.metas[0]):
        raise ValueError(f"labels and {side.name} differ in eval_hash: {str(ha)[:16]}… vs {str(hb)[:16]}…")
    if n_rows != side.loss.shape[1]:
        raise ValueError(f"labels have {n_rows} rows, {side.name} has {side.loss.shape[1]} tokens")
    lc, sc = labels_meta.get("context_len"), side.metas[0].get("context_len")
    if lc is not None and sc is not None and lc != sc:
        raise ValueError(f"the labels are for context {lc}, {side.name} was scored with context {sc} (repetition "
                         f"and position are per window): label again with --context {sc}")


# ---- gap tables -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GapConfig:
    n_boot: int = 1000
    alpha: float = 0.05
    seed: int = 0
    stratify: bool = True  # resample documents within domains (the eval set has fixed documents per domain)
    families: Optional[tuple] = None  # None = every registered family
    novel_n: int = 4
    copy_bins: Optional[tuple] = None  # None = families.COPY_BINS


def gap_table(a: Side, b: Side, labels, cfg: GapConfig = GapConfig(), clusters: Optional[np.ndarray] = None):
    """DataFrame, one row per category: family, category, its attrs, n_tokens, n_docs, gap, lo, hi, loss_a,
    loss_b, seed_pairs, seed_min, seed_max, seed_sd (NaN with one pair).

    lo, hi: two-level bootstrap (seeds of A and of B, and clusters within domains). clusters: (N,) the
    resampling unit of each token (default: its document; `tokengap.analysis.claims.token_clusters` gives source files,
    whose chunks are not independent); n_docs counts those units."""
    import pandas as pd

    from tokengap.analysis.categories.families import Columns, FamilyParams, build_categories

    P = min(a.n_seeds, b.n_seeds)
    pairs = (a.loss[:P].astype(np.float64) - b.loss[:P].astype(np.float64)).T  # (N, P)
    vals = np.column_stack([a.loss.mean(0), b.loss.mean(0), pairs])
    units = labels["doc_index"].to_numpy() if clusters is None else np.asarray(clusters)
    uniq, cid = np.unique(units, return_inverse=True)
    k = uniq.shape[0]
    strata = None
    if cfg.stratify and "domain" in labels.columns:
        strata = cluster_strata(cid, labels["domain"].astype(str).to_numpy())
    cols = Columns(labels)
    params = FamilyParams(novel_n=cfg.novel_n) if cfg.copy_bins is None else \
        FamilyParams(novel_n=cfg.novel_n, copy_bins=tuple(cfg.copy_bins))
    cats = build_categories(cols, cfg.families, params)
    rows = []
    for fam in dict.fromkeys(f for f, _ in cats):
        fc = [c for f, c in cats if f == fam]
        masks = [c.mask for c in fc]
        cm = two_level_gaps(a.loss, b.loss, cid, masks, strata, cfg.n_boot, cfg.alpha, cfg.seed)
        sums, counts = cluster_sums(vals, cid, masks, k)
        tot = counts.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums.sum(1) / tot  # (columns, C)
        for j, c in enumerate(fc):
            pm = means[2:, j]
            rows.append({"family": fam, "category": c.name, **c.attrs, "n_tokens": int(cm.n_tokens[j]),
                         "n_docs": int(cm.n_clusters[j]), "gap": cm.mean[j], "lo": cm.lo[j], "hi": cm.hi[j],
                         "loss_a": means[0, j], "loss_b": means[1, j], "seed_pairs": P,
                         "seed_min": float(pm.min()), "seed_max": float(pm.max()),
                         "seed_sd": float(pm.std(ddof=1)) if P > 1 else float("nan")})
    df = pd.DataFrame(rows)
    df.insert(0, "b", b.name)
    df.insert(0, "a", a.name)
    return df


# ---- regression ---------------------------------------------------------------------------------------------------
CODE_TERMS = (("py_lex", ("identifier", "keyword", "string", "comment", "number")),
              ("html_lex", ("text", "attr_value", "tag")),
              ("latex_lex", ("command", "math", "text")))


def design_matrix(labels, ns: Sequence[int] = (1, 2, 4, 8, 16), domain_fe: bool = True
                  ) -> tuple[np.ndarray, list]:
    """(N, K) float64 design and term names: intercept, category indicators (content, function, pronoun,
    proper noun, opening / closing delimiter, code and markup classes), log unigram frequency, repetition
    flags rep_n (nested: rep_8 implies rep_4, so each is the increment over the shorter n), log(1 + context
    position), and domain fixed effects (reference: the first domain in DOMAIN_ORDER that is present)."""
    from tokengap.analysis.categories.families import DOMAIN_ORDER, Columns

    c = Columns(labels)
    cols, names = [np.ones(c.n)], ["intercept"]

    def add(name, v):
        cols.append(np.asarray(v, dtype=np.float64))
        names.append(name)

    if "word_class" in c:
        add("content", c.eq("word_class", "content"))
        add("function", c.eq("word_class", "function"))
    for flag in ("pronoun", "proper_noun"):
        if flag in c:
            add(flag, c.flag(flag))
    if "delim_dir" in c:
        lead = c.flag("delim_lead")
        add("open_delim", lead & c.eq("delim_dir", "open"))
        add("close_delim", lead & c.eq("delim_dir", "close"))
    for col, kinds in CODE_TERMS:
        if col in c:
            for k in kinds:
                add(f"{col.split('_')[0]}_{k}", c.eq(col, k))
    if "log_freq" in c:
        add("log_freq", c.array("log_freq"))
    for n in ns:
        if f"rep_{n}" in c:
            add(f"rep_{n}", c.flag(f"rep_{n}"))
    add("log1p_ctx_pos", np.log1p(c.array("ctx_pos").astype(np.float64)))
    if domain_fe and "domain" in c:
        doms = list(c.groups("domain", DOMAIN_ORDER))
        for d in doms[1:]:
            add(f"domain[{d}]", c.eq("domain", d))
    return np.column_stack(cols), names


def regression(a: Side, b: Side, labels, alpha: float = 0.05):
    """OLS of the per-token gap on `design_matrix(labels)`, SEs clustered by document. Returns OLSResult."""
    gap = a.loss.astype(np.float64).mean(0) - b.loss.astype(np.float64).mean(0)
    X, names = design_matrix(labels)
    return ols_clustered(gap, X, names, labels["doc_index"].to_numpy(), alpha)


def regression_table(a: Side, b: Side, labels, alpha: float = 0.05):
    r = regression(a, b, labels, alpha)
    t = r.table()
    t.insert(0, "b", b.name)
    t.insert(0, "a", a.name)
    t["n"], t["n_docs"], t["r2"] = r.n, r.n_clusters, r.r2
    return t, r


# ---- printing -------------------------------------------------------------------------------------------------------
SUMMARY_FAMILIES = ("overall", "domain", "word_class", "repetition", "delimiters", "code", "reference")


def format_gaps(df, families: Sequence[str] = SUMMARY_FAMILIES, max_rows: int = 80) -> str:
    sel = df[df["family"].isin(families)]
    if "form" in sel.columns:
        sel = sel[sel["form"].isna() | (sel["form"] == "lead")]
    if "pieces" in sel.columns:
        sel = sel[sel["pieces"].isna() | (sel["pieces"] == "all")]
    lines = [f"{'family':12s} {'category':28s} {'tokens':>9s} {'docs':>5s} {'gap':>8s}  {'95% CI':>19s}  "
             f"{'seed range':>19s}"]
    for r in sel.head(max_rows).itertuples():
        spread = f"[{r.seed_min:+.4f}, {r.seed_max:+.4f}]" if r.seed_pairs > 1 else ""
        lines.append(f"{r.family:12s} {str(r.category)[:28]:28s} {r.n_tokens:9d} {r.n_docs:5d} {r.gap:+8.4f}  "
                     f"[{r.lo:+.4f}, {r.hi:+.4f}]  {spread:>19s}")
    return "\n".join(lines)


def format_regression(t) -> str:
    lines = [f"{'term':22s} {'coef':>9s} {'se':>8s} {'z':>7s}  {'95% CI':>19s}"]
    for r in t.itertuples():
        lines.append(f"{r.term:22s} {r.coef:+9.4f} {r.se:8.4f} {r.z:7.2f}  [{r.lo:+.4f}, {r.hi:+.4f}]")
    return "\n".join(lines)


# ---- CLI ------------------------------------------------------------------------------------------------------------
OUT_FILES = ("gaps.csv", "regression.csv", "summary.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", action="append", required=True, help="score file(s) of model A, one per seed "
                   "(default sign: A = transformer)")
    p.add_argument("--b", action="append", required=True, help="score file(s) of model B (e.g. the hybrid)")
    p.add_argument("--labels", default=None, help=f"labels of the scores' eval set (default: the committed {DEFAULT_LABELS}, "
                   "refused unless it was made for the same eval set)")
    p.add_argument("--out", required=True, help="directory for gaps.csv, regression.csv, summary.json")
    p.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples (documents as clusters)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--alpha", type=fraction, default=0.05)
    p.add_argument("--no-strata", action="store_true", help="resample documents without stratifying by domain")
    p.add_argument("--novel-n", type=positive_int, default=4, help="n of 'novel' (not repeated) in the tables")
    p.add_argument("--families", nargs="*", default=None, help="families to tabulate (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace the tables of another pair in --out")


def check_inputs(a_paths, b_paths, labels_path, families) -> None:
    """The one-line refusals that need no file contents: the same file on both sides, unknown families,
    missing labels."""
    from tokengap.analysis.categories.families import FAMILIES
    same = {Path(p).resolve() for p in a_paths} & {Path(p).resolve() for p in b_paths}
    if same:
        raise AnalysisError(f"--a and --b are the same file ({sorted(map(str, same))[0]}): nothing to compare")
    unknown = [f for f in families or () if f not in FAMILIES]
    if unknown:
        raise AnalysisError(f"--families: unknown {', '.join(unknown)} (known: {', '.join(FAMILIES)})")
    if not Path(labels_path).is_file():
        raise AnalysisError(f"--labels {labels_path}: no such file "
                            "(python -m tokengap.analysis label --eval ... --out ...)")


def load_inputs(a_paths, b_paths, labels_path, a_name=None, b_name=None):
    """(a, b, labels, labels meta), every refusal an AnalysisError of one line."""
    from tokengap.analysis.labels import read_labels
    try:
        a, b = load_side(a_paths, a_name), load_side(b_paths, b_name)
        check_sides(a, b)
        check_contexts(a, b)
        labels, lmeta = read_labels(labels_path)
        check_labels(lmeta, a, len(labels))
        check_labels(lmeta, b, len(labels))
    except (ValueError, OSError) as exc:
        raise AnalysisError(str(exc).splitlines()[0]) from None
    return a, b, labels, lmeta


DEFAULT_LABELS = "results/labels.parquet"


def run(args: argparse.Namespace) -> int:
    labels_path = args.labels or DEFAULT_LABELS
    try:
        check_inputs(args.a, args.b, labels_path, args.families)
        a, b, labels, lmeta = load_inputs(args.a, args.b, labels_path)
    except AnalysisError as exc:
        if args.labels:
            raise
        raise AnalysisError(f"no --labels, so the committed {DEFAULT_LABELS} was tried: {exc}; pass --labels of the "
                            "scores' eval set (python -m tokengap.analysis label --eval <corpus> --out ...)") from None
    check_output_dir("--out", args.out, OUT_FILES, "a compare table",
                     lambda out: json_fields(out / "summary.json", "a.name", "b.name"), f"{a.name} vs {b.name}",
                     args.overwrite)
    cfg = GapConfig(args.n_boot, args.alpha, args.seed, not args.no_strata,
                    tuple(args.families) if args.families else None, args.novel_n)
    out = Path(args.out)
    gaps = gap_table(a, b, labels, cfg)
    reg, r = regression_table(a, b, labels, args.alpha)
    out.mkdir(parents=True, exist_ok=True)  # everything computed: now the files, each written whole
    atomic_write_text(out / "gaps.csv", gaps.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "regression.csv", reg.to_csv(index=False, float_format="%.6g"))
    summary = {"a": {"name": a.name, "files": a.paths}, "b": {"name": b.name, "files": b.paths},
               "eval_hash": a.metas[0].get("eval_hash"), "n_tokens": int(a.loss.shape[1]),
               "gap": "loss(A) - loss(B): positive favours B", "n_boot": args.n_boot, "seed": args.seed,
               "stratified_by_domain": not args.no_strata, "regression_dropped": r.dropped, "r2": r.r2}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(f"gap = loss({a.name}) - loss({b.name}) over {a.loss.shape[1]:,} tokens; {a.n_seeds} vs {b.n_seeds} "
          f"seed(s); 95% CI from {args.n_boot} document resamples\n")
    print(format_gaps(gaps))
    print(f"\nOLS of the per-token gap, SEs clustered by document (n={r.n:,}, docs={r.n_clusters}, R2={r.r2:.4f})")
    print(format_regression(reg))
    if r.dropped:
        print(f"(dropped as constant or collinear: {', '.join(r.dropped)})")
    print(f"\n-> {out}/gaps.csv, regression.csv, summary.json")
    return 0
