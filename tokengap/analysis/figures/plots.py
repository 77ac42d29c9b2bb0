"""The study's figures (paper.md, "Figures to regenerate"), each from a gap table or from training curves.

Every figure function takes the tables it needs and an output directory, writes <name>.png, <name>.pdf and
<name>.csv (the numbers plotted), and returns the report entry {"name", "title", "png", "pdf", "csv",
"caption"}, or None when its inputs are missing. Output is deterministic: fixed bootstrap seeds upstream, no
dates in the files, fixed fonts and hash salt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

ARCH_COLORS = {"hybrid": "#1f6fb4", "recurrent": "#e07b00", "transformer": "#555555"}
FALLBACK_COLORS = ("#2a9d3a", "#b03060", "#7a4fb0")


def setup_matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "tokengap", "font.family": "DejaVu Sans",
                         "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
                         "axes.spines.right": False, "figure.dpi": 100, "savefig.dpi": 150})
    return plt


def color(name: str, i: int = 0) -> str:
    return ARCH_COLORS.get(name, FALLBACK_COLORS[i % len(FALLBACK_COLORS)])


def save(fig, out: Path, name: str, title: str, caption: str, table) -> dict:
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    png, pdf, csv = out / f"{name}.png", out / f"{name}.pdf", out / f"{name}.csv"
    fig.tight_layout()
    # tight: a legend placed outside the axes (legend_outside) is part of the picture, not cut off
    fig.savefig(png, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    fig.savefig(pdf, metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
                bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    table.to_csv(csv, index=False, float_format="%.6g")
    return {"name": name, "title": title, "png": str(png), "pdf": str(pdf), "csv": str(csv), "caption": caption}


def _sel(df, **eq):
    m = np.ones(len(df), dtype=bool)
    for k, v in eq.items():
        if k not in df.columns:
            return df.iloc[0:0]
        m &= (df[k] == v).to_numpy() if not isinstance(v, (list, tuple)) else df[k].isin(v).to_numpy()
    return df[m]


def legend_outside(ax) -> None:
    """The comparisons' legend right of the axes: inside, a forest plot has no corner free of rows or bars."""
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def forest(ax, rows, label_col: str, comparisons: Sequence[str], order: Optional[Sequence[str]] = None,
           counts: bool = True):
    """Points with 95% CI bars, one row per category, one colour per comparison (B model)."""
    labels = list(order) if order is not None else list(dict.fromkeys(rows[label_col]))
    k = len(comparisons)
    for i, b in enumerate(comparisons):
        r = rows[rows["b"] == b].set_index(label_col).reindex(labels)
        y = np.arange(len(labels)) + (i - (k - 1) / 2) * 0.22
        err = np.vstack([r["gap"] - r["lo"], r["hi"] - r["gap"]]).clip(min=0)
        ax.errorbar(r["gap"], y, xerr=np.nan_to_num(err), fmt="o", ms=3.5, lw=1, capsize=2, color=color(b, i),
                    label=f"{r['a'].dropna().iloc[0] if r['a'].notna().any() else 'A'} − {b}")
    ticks = labels
    if counts:
        first = rows[rows["b"] == comparisons[0]].set_index(label_col).reindex(labels)["n_tokens"]
        ticks = [f"{l}  (n={int(c):,})" if np.isfinite(c) else str(l) for l, c in zip(labels, first)]
    ax.set_yticks(np.arange(len(labels)), ticks)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.7)
    ax.set_xlabel("loss gap (nats): positive favours B")


def _caption(base: str, meta: dict) -> str:
    return (f"{base} Gap = loss({meta['a']}) − loss(B), token-weighted mean of the seed means; bars: 95% two-level "
            f"bootstrap interval (each model's seeds and the {meta.get('units', 'documents')} resampled"
            f"{' within domains' if meta.get('stratified') else ''}, {meta['n_boot']} replicates); {meta['seeds']}.")


# ---- the figures ------------------------------------------------------------------------------------------------
def fig_domain(gaps, meta, out: Path):
    rows = _sel(gaps, family=["overall", "domain"])
    if rows.empty:
        return None
    plt = setup_matplotlib()
    comps = list(dict.fromkeys(rows["b"]))
    order = list(dict.fromkeys(rows["category"]))
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(order) + 1.2))
    forest(ax, rows, "category", comps, order)
    legend_outside(ax)
    ax.set_title("Loss gap by domain")
    return save(fig, out, "gap_by_domain", "Gap by domain",
                _caption("Mean per-token loss gap over all eval tokens and per domain.", meta), rows)


def fig_content_function(gaps, meta, out: Path):
    rows = _sel(gaps, family="word_class")
    if rows.empty:
        return None
    plt = setup_matplotlib()
    comps = list(dict.fromkeys(rows["b"]))
    dom = _sel(gaps, family="word_class_domain")
    # narrow enough that the report (1100 px) shows it near full size: its fonts stay legible
    fig, axes = plt.subplots(1, 2 if not dom.empty else 1, figsize=(9.5 if not dom.empty else 6, 4.6), squeeze=False)
    order = [c for c in rows["category"].drop_duplicates() if not str(c).startswith("other")]
    forest(axes[0, 0], rows, "category", comps, order)
    axes[0, 0].set_title("Word classes (all pieces, first piece, novel)")
    table = rows
    if not dom.empty:
        prose = dom[dom["domain"].isin(["books", "encyclopedic", "technical", "news"])]
        forest(axes[0, 1], prose, "category", comps)
        axes[0, 1].set_title("Content vs function by prose domain")
        import pandas as pd
        table = pd.concat([rows, dom], ignore_index=True)
    legend_outside(axes[0, -1])
    fig.tight_layout()
    return save(fig, out, "content_function", "Content vs function words",
                _caption("Content words (NOUN, PROPN, VERB, ADJ, ADV) vs function words (DET, ADP, PRON, AUX, "
                         "CCONJ, SCONJ, PART) in POS-tagged prose; 'all pieces': every model token of the word; "
                         "'first piece': only the word-initial token; 'novel': not a repeated 4-gram.", meta),
                table)


def fig_ptb(gaps, meta, out: Path, min_tokens: int = 100):
    rows = _sel(gaps, family="ptb", pieces="all")
    if rows.empty:
        return None
    plt = setup_matplotlib()
    comps = list(dict.fromkeys(rows["b"]))
    first = rows[rows["b"] == comps[0]]
    if (first["n_tokens"] >= min_tokens).sum() < 3:  # a small eval set: show what there is
        min_tokens = 10
    main = first[first["n_tokens"] >= min_tokens].sort_values("gap", ascending=False)
    order = list(main["category"])
    if not order:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 0.26 * len(order) + 1.2))
    forest(ax, rows[rows["category"].isin(order)], "category", comps, order)
    legend_outside(ax)
    ax.set_title("Loss gap per Penn Treebank tag (sorted)")
    return save(fig, out, "gap_by_ptb", "Gap per PTB tag",
                _caption(f"Per fine PTB tag (spaCy tagger on prose; a token takes the tag of the word holding its "
                         f"first non-space character), tags with at least {min_tokens} tokens, sorted by the "
                         f"first comparison's gap; the CSV also has first-piece rows.", meta),
                _sel(gaps, family="ptb"))


def fig_code(gaps, meta, out: Path):
    rows = _sel(gaps, family="code")
    if rows.empty:
        return None
    rows = rows[rows["lex"] != "whitespace"] if "lex" in rows.columns else rows
    plt = setup_matplotlib()
    comps = list(dict.fromkeys(rows["b"]))
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * rows["category"].nunique() + 1.2))
    forest(ax, rows, "category", comps)
    legend_outside(ax)
    ax.set_title("Code and markup lexical categories")
    return save(fig, out, "code_markup", "Code and markup categories",
                _caption("Python lexical classes from the tokenize module; HTML tag syntax / attribute values / "
                         "text nodes; LaTeX commands / math / text. A token takes the class of its first "
                         "non-space character.", meta), _sel(gaps, family="code"))


def fig_repetition(gaps, meta, out: Path):
    rows = _sel(gaps, family="repetition")
    if rows.empty:
        return None
    plt = setup_matplotlib()
    comps = list(dict.fromkeys(rows["b"]))
    dist = _sel(gaps, family="copy_distance")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    ax = axes[0]
    for i, b in enumerate(comps):
        for kind, ls, mk in (("repeated", "-", "o"), ("novel", "--", "s")):
            r = _sel(rows, b=b, kind=kind).sort_values("n")
            ax.errorbar(r["n"], r["gap"], yerr=np.vstack([r["gap"] - r["lo"], r["hi"] - r["gap"]]).clip(min=0),
                        ls=ls, marker=mk, ms=4, capsize=2, color=color(b, i), label=f"{kind} ({b})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(rows["n"].unique()), [str(int(n)) for n in sorted(rows["n"].unique())])
    ax.axhline(0, color="black", lw=0.7)
    ax.set_xlabel("n (token completes an n-gram seen earlier in its window)")
    ax.set_ylabel("loss gap (nats)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("Repeated vs novel tokens by n")
    ax = axes[1]
    if not dist.empty:
        forest(ax, dist, "category", comps)
        ax.set_title(f"Repeated {int(dist['n'].iloc[0])}-gram tokens by copy distance")
    else:
        ax.axis("off")
    fig.tight_layout()
    import pandas as pd
    return save(fig, out, "repetition", "Repeated vs novel tokens",
                _caption("Left: tokens that complete an n-gram already seen earlier in the same scoring window "
                         "(first occurrences not counted) vs the rest. Right: repeated tokens by distance to the "
                         "previous occurrence.", meta), pd.concat([rows, dist], ignore_index=True))


def fig_delimiters(gaps, meta, out: Path):
    rows = _sel(gaps, family="delimiters", form="lead")
    if rows.empty:
        return None
    plt = setup_matplotlib()
    comps = list(dict.fromkeys(rows["b"]))
    dom = _sel(gaps, family="delimiters_domain", type="all")
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.3 * rows["category"].nunique() + 1.6))
    forest(axes[0], rows, "category", comps)
    axes[0].set_title("Opening vs closing delimiters by type")
    if not dom.empty:
        forest(axes[1], dom, "category", comps)
        axes[1].set_title("Opening vs closing by domain group")
    else:
        axes[1].axis("off")
    legend_outside(axes[1] if not dom.empty else axes[0])
    fig.tight_layout()
    import pandas as pd
    return save(fig, out, "delimiters", "Opening vs closing delimiters",
                _caption("Tokens that are, or start with, a delimiter (merged pieces such as '});' included here; "
                         "the CSV splits them into pure and merged, and lists tokens holding a delimiter after "
                         "other characters, such as '\"><' in HTML, as 'inside'). Types: () [] {} <> HTML tags, "
                         "LaTeX \\begin/\\end, math $.", meta),
                pd.concat([_sel(gaps, family="delimiters"), _sel(gaps, family="delimiters_domain")],
                          ignore_index=True))


def fig_regression(reg, meta, out: Path):
    if reg is None or reg.empty:
        return None
    plt = setup_matplotlib()
    rows = reg[reg["term"] != "intercept"].copy()
    rows["category"], rows["gap"], rows["n_tokens"] = rows["term"], rows["coef"], np.nan
    comps = list(dict.fromkeys(rows["b"]))
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * rows["term"].nunique() + 1.4))
    forest(ax, rows, "category", comps, counts=False)
    ax.set_xlabel("OLS coefficient on the per-token gap (nats)")
    legend_outside(ax)
    r2 = ", ".join(f"{b}: R²={g['r2'].iloc[0]:.4f}, n={int(g['n'].iloc[0]):,}" for b, g in reg.groupby("b", sort=False))
    ax.set_title("Regression of the gap on categories and controls")
    return save(fig, out, "regression", "Regression with controls",
                f"OLS of the per-token gap loss({meta['a']}) − loss(B) on category indicators, log unigram "
                f"frequency, repetition flags (rep_n, nested), log(1 + context position) and domain fixed effects; "
                f"95% CIs from standard errors clustered by document ({r2}).", reg)


CURVE_FILTERS = (("eval/all", "all tokens"), ("eval/filter/content_novel", "content words, not repeated"),
                 ("eval/filter/repeated_4", "repeated tokens (4-gram)"), ("eval/filter/close_delim", "closing delimiters"))


def _tokens(x, _pos=None) -> str:
    """Tick label of a token count: 200k, 1.5M, 20M, 1B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            v = x / div
            return f"{v:.0f}{unit}" if v >= 10 or v == int(v) else f"{v:.1f}{unit}"
    return f"{x:.0f}"


def fig_curves(curves, out: Path, baseline: str = "transformer"):
    """curves: DataFrame with arch, seed, step, tokens, annealed and metric columns."""
    if curves is None or curves.empty:
        return None
    import pandas as pd

    plt = setup_matplotlib()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    keys = [(k, t) for k, t in CURVE_FILTERS if k in curves.columns and curves[k].notna().any()]
    if not keys:
        return None
    first = [baseline, "transformer", "hybrid", "recurrent"]
    archs = list(dict.fromkeys(a for a in first if a in set(curves["arch"]))) + \
        sorted(set(curves["arch"]) - set(first))
    seeds = int(curves.groupby("arch")["seed"].nunique().max())
    # two series per architecture: stable-phase evaluations (thin line) and WSD-annealed ones (markers)
    phases = {"stable": curves[~curves["annealed"] & (curves["tokens"] > 0)], "annealed": curves[curves["annealed"]]}
    style = {"stable": dict(lw=0.9, alpha=0.55), "annealed": dict(marker="o", ms=4, lw=1.6)}
    fig, axes = plt.subplots(2, len(keys), figsize=(3.2 * len(keys), 5.6), squeeze=False, sharex=True)
    rows = []
    for phase, data in phases.items():
        if data.empty:
            continue
        agg = data.groupby(["arch", "tokens"])[[k for k, _ in keys]].agg(["mean", "min", "max"])
        have = set(agg.index.get_level_values(0))
        for j, (k, title) in enumerate(keys):
            ax, axg = axes[0, j], axes[1, j]
            for i, arch in enumerate(archs):
                if arch not in have:
                    continue
                g = agg.loc[arch]
                x = g.index.to_numpy(dtype=np.float64)
                label = arch if phase == "annealed" else None
                ax.plot(x, g[(k, "mean")], color=color(arch, i), label=label, **style[phase])
                ax.fill_between(x, g[(k, "min")], g[(k, "max")], color=color(arch, i), alpha=0.15, lw=0)
                for t, mval, lo, hi in zip(x, g[(k, "mean")], g[(k, "min")], g[(k, "max")]):
                    rows.append({"metric": k, "phase": phase, "arch": arch, "tokens": t, "loss": mval,
                                 "seed_min": lo, "seed_max": hi})
                if baseline in have and arch != baseline:
                    base = agg.loc[baseline][(k, "mean")]
                    common = g.index.intersection(base.index)
                    axg.plot(common.to_numpy(dtype=np.float64), base.loc[common] - g.loc[common, (k, "mean")],
                             color=color(arch, i), label=f"{baseline} − {arch}" if label else None, **style[phase])
            ax.set_title(title, fontsize=9)
            axg.axhline(0, color="black", lw=0.7)
            for a_ in (ax, axg):  # 1-2-5 ticks per decade, labelled as token counts
                a_.set_xscale("log")
                a_.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                a_.xaxis.set_major_formatter(FuncFormatter(_tokens))
                a_.xaxis.set_minor_formatter(NullFormatter())
                a_.tick_params(axis="x", labelsize=7)
            axg.set_xlabel("training tokens")
            if j == 0 and phase == "annealed":
                ax.set_ylabel("eval loss (nats)")
                axg.set_ylabel(f"loss({baseline}) − loss(model)")
                ax.legend(fontsize=7, frameon=False)
                axg.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return save(fig, out, "curves", "Filtered loss curves during training",
                "Eval loss under the training loop's filter masks: thin lines at stable-phase (constant learning rate) "
                "evaluations, markers at WSD-annealed checkpoints (a short decay branched off the stable run, and the "
                "final decay), which is how the study evaluates; "
                + ("mean over seeds (band: min–max over seeds). " if seeds > 1 else "one seed per model (no band). ")
                + "Bottom: "
                f"loss({baseline}) − loss(model) at the same token counts: positive = the model beats the {baseline}.",
                pd.DataFrame(rows))


# ---- from results/claims.csv (python -m tokengap.analysis claims) ----------------------------------------------------
def _claim_series(ax, series: list, labels: list):
    """series: (name, colour, DataFrame with what/measured/lo/hi) drawn as points with interval bars."""
    k = len(series)
    for i, (name, col, d) in enumerate(series):
        d = d.set_index("what").reindex(labels)
        y = np.arange(len(labels)) + (i - (k - 1) / 2) * 0.25
        err = np.vstack([d["measured"] - d["lo"], d["hi"] - d["measured"]]).clip(min=0)
        ax.errorbar(d["measured"], y, xerr=np.nan_to_num(err), fmt="o", ms=3.5, lw=1, capsize=2, color=col,
                    label=name)
    ax.set_yticks(np.arange(len(labels)), [w.replace("gap on ", "") for w in labels])
    ax.invert_yaxis()


def fig_matched_loss(claims, out: Path):
    """Category gaps (transformer − hybrid) at equal tokens and at matched overall loss, one panel per pair."""
    if claims is None or "view" not in claims.columns:
        return None
    plt = setup_matplotlib()
    gaps = claims[(claims["kind"] == "nats") & claims["what"].str.startswith("gap on") & (claims["claim"] <= 4)
                  & claims["view"].isin(["equal tokens", "matched loss"])]
    pairs = [p for p in dict.fromkeys(gaps["pair"]) if (gaps[gaps["pair"] == p]["view"] == "matched loss").any()]
    if not pairs:
        return None
    fig, axes = plt.subplots(1, len(pairs), figsize=(7.2 * len(pairs), 5.0), squeeze=False)
    rows = []
    for ax, p in zip(axes[0], pairs):
        g = gaps[gaps["pair"] == p]
        ml = g[g["view"] == "matched loss"]
        labels = list(dict.fromkeys(ml["what"]))
        eq = g[(g["view"] == "equal tokens") & g["what"].isin(labels)]
        _claim_series(ax, [("equal tokens (final checkpoints)", color("transformer"), eq),
                           ("matched overall loss", color("hybrid"), ml)], labels)
        ax.axvline(0, color="black", lw=0.7)
        ax.set_title(p, fontsize=9)
        ax.set_xlabel("loss(transformer) − loss(hybrid), nats\n(positive favours the hybrid)")
        ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        rows.append(g[g["what"].isin(labels)])
    import pandas as pd

    src = "; ".join(sorted(set(gaps[gaps["view"] == "matched loss"]["source"].dropna())))
    return save(fig, out, "matched_loss", "Category gaps at equal tokens and at matched overall loss",
                "Gap per category at the final checkpoints (equal training tokens) and at the annealed points of "
                "the two models whose overall eval losses are closest (results/claims.md lists them): what is left "
                "at matched loss is the architecture's bias rather than its sample-efficiency lead. Bars: 95% "
                f"intervals (matched loss from {src}); content / function at matched loss use the training-time "
                "filters (UD classes) when there are no per-token files at the annealed points.",
                pd.concat(rows, ignore_index=True)[["pair", "view", "what", "measured", "lo", "hi", "source"]])


def fig_relative_gap(claims, out: Path):
    """Each category's gap over the overall gap (scale-free), at equal tokens, one series per pair."""
    if claims is None or "relative" not in claims.columns:
        return None
    rel = claims[(claims["view"] == "equal tokens") & claims["relative"].notna()]
    if rel.empty:
        return None
    plt = setup_matplotlib()
    d = rel.rename(columns={"measured": "gap"}).assign(measured=rel["relative"], lo=rel["rel_lo"], hi=rel["rel_hi"])
    labels = list(dict.fromkeys(d["what"]))
    fig, ax = plt.subplots(figsize=(7.2, 0.3 * len(labels) + 1.8))
    pairs = list(dict.fromkeys(d["pair"]))
    _claim_series(ax, [(p, FALLBACK_COLORS[i % 3] if i else color("hybrid"), d[d["pair"] == p])
                       for i, p in enumerate(pairs)], labels)
    ax.axvline(0, color="black", lw=0.7)
    ax.axvline(1, color="grey", lw=0.7, ls="--")
    ax.set_xlabel("relative gap: category gap ÷ overall gap\n(1 = as on all tokens, 0 = no edge)")
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(pairs))
    return save(fig, out, "relative_gap", "Relative gaps: each category's gap over the overall gap",
                "Category gap ÷ overall gap (transformer − hybrid, final checkpoints), the scale-free form of the "
                "study's contrasts: above 1 the hybrid's edge is larger than on average, near 0 it vanishes. Bars: "
                "95% intervals of the ratio from the same two-level bootstrap replicates (seeds and source files).",
                d[["pair", "what", "gap", "measured", "lo", "hi"]].rename(columns={"measured": "relative"}))


# ---- from results/progress.csv (python -m tokengap.analysis claims; tokengap/analysis/progress.py) -------------------
FAMILY_COLORS = {"words": "#1f6fb4", "code / markup": "#2a9d3a", "repetition": "#e07b00", "delimiters": "#b03060",
                 "domain": "#7a4fb0"}


def fig_progress(prog, out: Path) -> list:
    """One figure per pair: each category's observed gap against the gap the two models' own training predicts
    for their overall gap (one panel per comparison). On the identity line = what a better model shows."""
    if prog is None or prog.empty:
        return []
    plt = setup_matplotlib()
    entries = []
    for pair in dict.fromkeys(prog["pair"]):
        d = prog[(prog["pair"] == pair) & (prog["category"] != "all") & ~prog["category"].str.startswith("ptb=")]
        comps = list(dict.fromkeys(d["b"]))
        fig, axes = plt.subplots(1, len(comps), figsize=(6.4 * len(comps), 6.2), squeeze=False)
        for ax, b in zip(axes[0], comps):
            g = d[d["b"] == b]
            a = g["a"].iloc[0]
            sig = (g["residual_lo"] > 0) | (g["residual_hi"] < 0)
            # the two trajectories' own predictions: a grey bar between them at the observed gap
            both = g[["pred_a", "pred_b"]]
            ax.vlines(g["observed"], both.min(axis=1), both.max(axis=1), color="grey", lw=2.5, alpha=0.35)
            for fam in dict.fromkeys(g["family"]):
                for filled in (True, False):
                    r = g[(g["family"] == fam) & (sig == filled)]
                    if r.empty:
                        continue
                    col = FAMILY_COLORS.get(fam, "#555555")
                    ax.errorbar(r["observed"], r["predicted"],
                                xerr=np.vstack([r["observed"] - r["observed_lo"], r["observed_hi"] - r["observed"]]),
                                yerr=np.vstack([r["predicted"] - r["predicted_lo"],
                                                r["predicted_hi"] - r["predicted"]]).clip(min=0),
                                fmt="o", ms=4.5, lw=0.8, capsize=1.5, color=col, mfc=col if filled else "white",
                                label=fam if filled or not (sig & (g["family"] == fam)).any() else None)
            for r in g.itertuples():
                ax.annotate(r.category, (r.observed, r.predicted), fontsize=5.5, xytext=(3, 2),
                            textcoords="offset points", color="#333333")
            vals = g[["observed_lo", "observed_hi", "predicted_lo", "predicted_hi"]].to_numpy(np.float64)
            lo, hi = np.nanmin(vals), np.nanmax(vals)
            pad = 0.05 * (hi - lo)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", lw=0.7, ls="--", label="identity")
            ax.axhline(0, color="grey", lw=0.4)
            ax.axvline(0, color="grey", lw=0.4)
            ax.set_xlabel(f"observed gap: loss({a}) − loss({b}), nats")
            ax.set_ylabel("gap predicted by the models' own training, nats")
            ax.set_title(f"{a} − {b}\nfrom the {g['source'].iloc[0]}", fontsize=9)
            ax.legend(fontsize=7, frameon=False, loc="upper left")
        slug = pair.lower().replace(" ", "_")
        entries.append(save(
            fig, out, f"progress_{slug}", f"Architecture or a better model? ({pair})",
            "Each category's observed gap at the final checkpoints (x) against the gap that the two models' own "
            "training trajectories predict for an improvement equal to their overall gap (y: interpolated linearly in "
            "overall loss between annealed points, the mean of both trajectories; the grey bar spans the two "
            "trajectories' own predictions). On the dashed identity line a category moves as a better model's "
            "would; off it is the architecture's signature (filled: the residual's 95% interval excludes 0). Bars: "
            "95% intervals both ways (two-level bootstrap with per-token files; seeds only from logged filtered "
            "losses). PTB tags are in the CSV and results/progress.md.",
            prog[prog["pair"] == pair]))
    return entries
