"""Where attention earns its keep: category gaps along the attention-ratio sweep, and the copy-distance cliff.

    python -m tokengap.analysis sweep [--results results] [--update RESULTS.md] [--n-boot 1000]

The sweep (issue 20): 8-layer Gated DeltaNet models at size=small with 0, 1, 2, 4 or 8 of their layers attention,
and at 2 of 8 the attention layers first, last or spread (`SWEEP`; configs tokengap/conf/model/sweep_gdn_*.yaml and the
zoo's recurrent_gdn, hybrid_gdn, transformer). For every point with score files under results/scores/ the gap
against the pure-attention model, gap = loss(transformer) − loss(point), positive favours the point, per category of
the families in `SWEEP_FAMILIES`, with the two-level bootstrap of tokengap/analysis/compare.py (seeds of both sides and
source files within domains). Writes results/sweep/sweep.csv, one figure per family (results/figures/sweep_*.png)
and a summary: the smallest attention fraction that closes most of the gap on repeated tokens, and whether the
content-word gain saturates.

The copy-distance cliff needs no new runs: the gap on repeated tokens (tokens completing a 4-gram seen earlier in
the window) binned by how far back the copy is (`CLIFF_BINS`), for every architecture with score files, from
the per-token losses already scored. Writes results/sweep/cliff.csv and results/figures/copy_cliff.png.
With --update, the text between `<!-- sweep:begin -->` and `<!-- sweep:end -->` in the file is replaced.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokengap.analysis.errors import AnalysisError, check_figure_outputs, existing_file, positive_int

BASELINE = "transformer"
CLIFF_BINS = ((1, 32), (33, 128), (129, 512), (513, 2048))  # copy distance in tokens, inclusive
CLOSED = 0.25  # "closes most of the gap": what is left is at most a quarter of the pure recurrent model's


@dataclass(frozen=True)
class Point:
    config: str  # tokengap/conf/model/<config>.yaml
    attention: int  # attention layers of 8
    position: str  # where they are: "spread", "first", "last", "alternating", or "" (0 or 8 of 8)


SWEEP = (Point("recurrent_gdn", 0, ""), Point("sweep_gdn_a1", 1, "last"), Point("hybrid_gdn", 2, "spread"),
         Point("sweep_gdn_a2_first", 2, "first"), Point("sweep_gdn_a2_last", 2, "last"),
         Point("sweep_gdn_a4", 4, "alternating"), Point(BASELINE, 8, ""))

# the categories each sweep figure draws (family -> category names of tokengap/analysis/categories/families.py)
SWEEP_FAMILIES = {
    "word_class": ("content", "function", "content (novel)"),
    "repetition": ("repeated_2", "repeated_4", "repeated_8", "repeated_16", "novel_4"),
    "copy_distance": tuple(f"dist {lo}-{hi}" for lo, hi in CLIFF_BINS),
    "delimiters_domain": ("prose: open", "prose: close", "code: open", "code: close", "markup: open",
                          "markup: close"),
    "code": ("python: identifier", "python: string", "python: comment", "html: text", "html: attr_value",
             "latex: command"),
    "domain": ("books", "encyclopedic", "technical", "news", "python", "c", "html", "latex"),
}


def cliff_params():
    from tokengap.analysis.categories.families import FamilyParams

    return FamilyParams(copy_bins=tuple(lo for lo, _ in CLIFF_BINS) + (CLIFF_BINS[-1][1] + 1,))


def distance_bins(copy_dist: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """[(label, (N,) bool)] for CLIFF_BINS; copy_dist 0 (not repeated) is in none."""
    d = np.asarray(copy_dist)
    return [(f"dist {lo}-{hi}", (d >= lo) & (d <= hi)) for lo, hi in CLIFF_BINS]


def _inputs(results: Path):
    from tokengap.analysis.claims import token_clusters
    from tokengap.analysis.compare import check_labels, load_side
    from tokengap.analysis.figures import find_runs
    from tokengap.analysis.labels import read_labels

    if not (results / "labels.parquet").is_file():
        raise AnalysisError(f"{results}/labels.parquet missing (python -m tokengap.analysis label ...)")
    labels, lmeta = read_labels(results / "labels.parquet")
    sides = {}
    for arch, paths in find_runs(results / "scores", "npz").items():
        side = load_side(paths, arch)
        try:
            check_labels(lmeta, side, len(labels))
        except ValueError as exc:
            raise AnalysisError(f"{paths[0]}: {exc}")
        sides[arch] = side
    if BASELINE not in sides:
        raise AnalysisError(f"{results}/scores: no {BASELINE} score files (the baseline of the sweep and the cliff)")
    clusters, _ = token_clusters(results, labels["doc_index"].to_numpy())
    return labels, sides, clusters


def sweep_table(labels, sides: dict, clusters: np.ndarray, n_boot: int = 1000):
    """One row per sweep point present (other than the baseline) and category of SWEEP_FAMILIES."""
    import pandas as pd

    from tokengap.analysis.compare import GapConfig, gap_table

    rows = []
    cfg = GapConfig(n_boot=n_boot, families=tuple(SWEEP_FAMILIES), copy_bins=cliff_params().copy_bins)
    for p in SWEEP:
        if p.config == BASELINE or p.config not in sides:
            continue
        g = gap_table(sides[BASELINE], sides[p.config], labels, cfg, clusters=clusters)
        g = g[[c in SWEEP_FAMILIES[f] for f, c in zip(g["family"], g["category"])]]
        rows.append(g.assign(config=p.config, attention=p.attention, position=p.position,
                             seeds_b=sides[p.config].n_seeds))
    if not rows:
        return None
    df = pd.concat(rows, ignore_index=True)
    return df[["config", "attention", "position", "seeds_b", "family", "category", "n_tokens", "gap", "lo", "hi"]]


def summarize(df) -> list[str]:
    """Two findings from the sweep table (spread / single positions), each stated only when its points ran."""
    out = []
    line = df[df["position"].isin(["", "spread", "last", "alternating"])
              & ~((df["attention"] == 2) & (df["position"] != "spread"))]

    def gap(cat, att):
        r = line[(line["category"] == cat) & (line["attention"] == att)]
        return r.iloc[0] if len(r) else None
    for cat in ("repeated_4", "repeated_8"):
        g0 = gap(cat, 0)
        if g0 is None:
            out.append(f"{cat}: the pure recurrent model (0 of 8) did not run; no gap to close.")
            continue
        closed = [a for a in (1, 2, 4) if (r := gap(cat, a)) is not None and abs(r.gap) <= CLOSED * abs(g0.gap)]
        ran = [a for a in (1, 2, 4) if gap(cat, a) is not None]
        out.append(f"{cat}: pure recurrent {g0.gap:+.3f} [{g0.lo:+.3f}, {g0.hi:+.3f}]; smallest attention share "
                   f"leaving at most {CLOSED:.0%} of it: " + (f"{min(closed)} of 8" if closed else
                                                                f"none of {ran} of 8 (those that ran)"))
    c2, c4 = gap("content", 2), gap("content", 4)
    if c2 is not None and c4 is not None:
        sat = c2.lo <= c4.gap <= c2.hi
        out.append(f"content words: 2 of 8 {c2.gap:+.3f} [{c2.lo:+.3f}, {c2.hi:+.3f}], 4 of 8 {c4.gap:+.3f}: "
                   + ("saturated (4 of 8 inside 2 of 8's interval)" if sat else "not saturated"))
    return out


def cliff_table(labels, sides: dict, clusters: np.ndarray, n_boot: int = 1000):
    """Gap (transformer − arch) on repeated tokens per copy-distance bin, for every architecture but the baseline."""
    import pandas as pd

    from tokengap.analysis.stats import cluster_strata, two_level_gaps

    bins = distance_bins(labels["copy_dist"].to_numpy())
    strata = cluster_strata(clusters, labels["domain"].astype(str).to_numpy())
    rows = []
    for arch, side in sides.items():
        if arch == BASELINE:
            continue
        cm = two_level_gaps(sides[BASELINE].loss, side.loss, clusters, [m for _, m in bins], strata, n_boot)
        for i, (name, m) in enumerate(bins):
            rows.append({"arch": arch, "bin": name, "lo_dist": CLIFF_BINS[i][0], "hi_dist": CLIFF_BINS[i][1],
                         "n_tokens": int(m.sum()), "gap": cm.mean[i], "lo": cm.lo[i], "hi": cm.hi[i],
                         "seeds": side.n_seeds})
    return pd.DataFrame(rows)


def fig_sweep(df, family: str, out: Path):
    from tokengap.analysis.figures.plots import save, setup_matplotlib

    plt = setup_matplotlib()
    d = df[df["family"] == family]
    if d.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cats = [c for c in SWEEP_FAMILIES[family] if c in set(d["category"])]
    cmap = plt.get_cmap("tab10")
    for i, cat in enumerate(cats):
        c = d[d["category"] == cat]
        main = c[~((c["attention"] == 2) & (c["position"] != "spread"))].sort_values("attention")
        x = np.append(main["attention"].to_numpy(float), 8.0)  # the baseline: gap 0 by definition
        y = np.append(main["gap"].to_numpy(), 0.0)
        err = np.vstack([np.append(main["gap"] - main["lo"], 0), np.append(main["hi"] - main["gap"], 0)]).clip(0)
        ax.errorbar(x, y, yerr=err, marker="o", ms=3.5, lw=1.2, capsize=2, color=cmap(i % 10), label=cat)
        for j, pos in enumerate(("first", "last")):
            q = c[(c["attention"] == 2) & (c["position"] == pos)]
            if len(q):
                ax.errorbar([2 + (j * 2 - 1) * 0.15], q["gap"], yerr=[q["gap"] - q["lo"], q["hi"] - q["gap"]],
                            marker="v" if pos == "first" else "^", mfc="none", ms=5, lw=0.8, capsize=2,
                            color=cmap(i % 10))
    ax.axhline(0, color="black", lw=0.7)
    ax.set_xticks([0, 1, 2, 4, 8])
    ax.set_xlabel("attention layers of 8 (rest: Gated DeltaNet); at 2: ▽ first two, △ last two, ● spread")
    ax.set_ylabel("loss(transformer) − loss(model), nats")
    ax.legend(fontsize=7, frameon=False)
    seeds = ", ".join(f"{k} {v}" for k, v in d.groupby("config")["seeds_b"].first().items())
    return save(fig, out, f"sweep_{family}", f"Attention-ratio sweep: {family.replace('_', ' ')}",
                f"Gap against the pure-attention transformer as the share of attention layers grows (positive: the "
                f"model beats the transformer; 0 at 8 of 8 by definition). Bars: 95% two-level bootstrap intervals "
                f"(seeds and source files). Seeds: {seeds}.", d)


def fig_cliff(cliff, out: Path):
    from tokengap.analysis.figures.plots import color, save, setup_matplotlib

    if cliff is None or cliff.empty:
        return None
    plt = setup_matplotlib()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    labels = [f"{lo}–{hi}" for lo, hi in CLIFF_BINS]
    for i, (arch, c) in enumerate(cliff.groupby("arch", sort=False)):
        x = np.arange(len(c)) + (i - 1) * 0.08
        ax.errorbar(x, c["gap"], yerr=[c["gap"] - c["lo"], c["hi"] - c["gap"]], marker="o", ms=4, lw=1.2,
                    capsize=2, color=color(arch, i), label=f"transformer − {arch}")
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.axhline(0, color="black", lw=0.7)
    ax.set_xlabel("copy distance (tokens back to the earlier occurrence of the 4-gram)")
    ax.set_ylabel("gap on repeated tokens, nats")
    ax.legend(fontsize=7, frameon=False)
    return save(fig, out, "copy_cliff", "The copy-distance cliff",
                "Gap on tokens that complete a 4-gram seen earlier in the window, by how far back it was "
                "(negative: the transformer is better). Bars: 95% two-level bootstrap intervals.", cliff)


def to_markdown(cliff, sweep, notes: list[str]) -> str:
    lines = ["Copy-distance cliff: gap = loss(transformer) − loss(model) on repeated tokens (completing a 4-gram "
             "seen earlier in the window) by copy distance; 95% two-level bootstrap intervals "
             "(`python -m tokengap.analysis sweep`, `results/figures/copy_cliff.png`).", "",
             "| model | " + " | ".join(f"{lo}–{hi} tokens" for lo, hi in CLIFF_BINS) + " |",
             "|---|" + "---|" * len(CLIFF_BINS)]
    for arch, c in cliff.groupby("arch", sort=False):
        lines.append(f"| {arch} | " + " | ".join(f"{r.gap:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}] (n={r.n_tokens:,})"
                                                  if r.n_tokens else "— (no tokens)" for r in c.itertuples()) + " |")
    lines.append("")
    ran = [] if sweep is None else sorted(set(sweep["config"]))
    missing = [p.config for p in SWEEP if p.config not in ran and p.config != BASELINE]
    if sweep is None:
        lines.append("Attention-ratio sweep: no sweep point has score files yet (not run: " + ", ".join(missing) + ").")
    else:
        lines.append("Attention-ratio sweep (`results/figures/sweep_*.png`, `results/sweep/sweep.csv`): ran "
                     + ", ".join(ran) + ("; not run: " + ", ".join(missing) if missing else "") + ".")
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results")
    p.add_argument("--out", default=None, help="figure directory (default: <results>/figures)")
    p.add_argument("--overwrite", action="store_true", help="write over files of the same names outside --results")
    p.add_argument("--update", type=existing_file, default=None, help="a markdown file whose sweep:begin/end block is replaced")
    p.add_argument("--n-boot", type=positive_int, default=1000)


def run(args: argparse.Namespace) -> int:
    from tokengap.analysis.claims import replace_block
    from tokengap.models.atomic import atomic_write_text

    results = Path(args.results)
    if args.update and "<!-- sweep:begin -->" not in Path(args.update).read_text():
        raise AnalysisError(f"{args.update}: no <!-- sweep:begin --> ... <!-- sweep:end --> block")
    labels, sides, clusters = _inputs(results)
    out = Path(args.out) if args.out else results / "figures"
    check_figure_outputs(results, out, overwrite=args.overwrite)
    (results / "sweep").mkdir(parents=True, exist_ok=True)
    cliff = cliff_table(labels, sides, clusters, args.n_boot)
    atomic_write_text(results / "sweep" / "cliff.csv", cliff.to_csv(index=False, float_format="%.6g"))
    fig_cliff(cliff, out)
    sweep = sweep_table(labels, sides, clusters, args.n_boot)
    notes: list[str] = []
    if sweep is not None:
        atomic_write_text(results / "sweep" / "sweep.csv", sweep.to_csv(index=False, float_format="%.6g"))
        for fam in SWEEP_FAMILIES:
            fig_sweep(sweep, fam, out)
        notes = summarize(sweep)
    md = to_markdown(cliff, sweep, notes)
    if args.update:
        path = Path(args.update)
        atomic_write_text(path, replace_block(path.read_text(), "sweep", md, path))
    print(md)
    return 0
