"""One figure per probe: accuracy and loss of the target's first token vs difficulty, one line per architecture.

    from tokengap.analysis.probes.figures import make_figures
    entries = make_figures(Path("results"), Path("figures"))   # reads results/probes/<arch>-s<seed>.npz

Seeds are averaged (line) and their range drawn as a band. Output is deterministic: no dates in the PDF or
PNG metadata, fixed colours and order, so a rerun on the same results reproduces the files byte for byte.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd

from tokengap.analysis.figures.plots import ARCH_COLORS as COLORS  # one palette for every figure of the report
from tokengap.analysis.probes.probeset import PROBES
from tokengap.analysis.probes.scoring import ProbeResult, load_results

ARCHS = ("transformer", "hybrid", "recurrent")
EXTRA_COLORS = ("#2a9d3a", "#b03060", "#7a4fb0", "#8c564b")
FILE = re.compile(r"^(?P<arch>.+)-s(?P<seed>\d+)\.npz$")


def collect(results_dir: Path) -> dict[str, list[ProbeResult]]:
    """arch -> results (sorted by seed) under results_dir/probes, keeping only the most common probe set."""
    runs: dict[str, list[tuple[int, ProbeResult]]] = {}
    for path in sorted((Path(results_dir) / "probes").glob("*.npz")):
        m = FILE.match(path.name)
        if m:
            runs.setdefault(m["arch"], []).append((int(m["seed"]), load_results(path)))
    hashes = Counter(r.meta.get("probe_set_hash") for rs in runs.values() for _, r in rs)
    if len(hashes) > 1:
        keep = hashes.most_common(1)[0][0]
        print(f"probe figures: results from {len(hashes)} probe sets; using {str(keep)[:12]}… "
              f"({hashes[keep]} files), skipping the rest")
        runs = {a: [(s, r) for s, r in rs if r.meta.get("probe_set_hash") == keep] for a, rs in runs.items()}
    order = [a for a in ARCHS if a in runs] + sorted(a for a in runs if a not in ARCHS)
    return {a: [r for _, r in sorted(runs[a], key=lambda x: x[0])] for a in order if runs[a]}


def summary(runs: dict[str, list[ProbeResult]]) -> pd.DataFrame:
    """Per arch, probe, kind, level: seed mean / min / max of accuracy and loss, chance, targets."""
    rows = []
    for arch, results in runs.items():
        ref = results[0]
        keys = pd.DataFrame({"probe": ref.probe, "kind": ref.kind, "level": ref.level})
        per_seed = [keys.assign(acc=r.correct.astype(float), loss=r.loss.astype(float), chance=ref.chance)
                    .groupby(["probe", "kind", "level"], sort=False).mean() for r in results]
        stack = pd.concat(per_seed, keys=range(len(per_seed)), names=["seed"])
        g = stack.groupby(level=["probe", "kind", "level"], sort=False)
        s = pd.DataFrame({"arch": arch, "n_seeds": len(results),
                          "n_targets": keys.groupby(["probe", "kind", "level"], sort=False).size(),
                          "chance": g["chance"].mean(),
                          "acc_mean": g["acc"].mean(), "acc_min": g["acc"].min(), "acc_max": g["acc"].max(),
                          "loss_mean": g["loss"].mean(), "loss_min": g["loss"].min(), "loss_max": g["loss"].max()})
        rows.append(s.reset_index())
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _title(probe: str) -> str:
    return PROBES[probe].title if probe in PROBES else probe


def _plot(df: pd.DataFrame, probe: str, axis: str, png: Path, pdf: Path) -> None:
    from matplotlib.figure import Figure

    kinds = list(dict.fromkeys(df["kind"]))
    fig = Figure(figsize=(4.2 * len(kinds), 6.0), layout="constrained")
    axes = fig.subplots(2, len(kinds), squeeze=False)
    extra = iter(EXTRA_COLORS)
    colors = {a: COLORS.get(a) or next(extra, "#000000") for a in dict.fromkeys(df["arch"])}
    for c, kind in enumerate(kinds):
        d = df[df["kind"] == kind]
        levels = sorted(d["level"].unique())
        x = {lv: i for i, lv in enumerate(levels)}
        for r, (stat, label) in enumerate((("acc", "accuracy (first token is arg-max)"), ("loss", "loss (nats)"))):
            ax = axes[r][c]
            for arch, da in d.groupby("arch", sort=False):
                da = da.sort_values("level")
                xs = [x[v] for v in da["level"]]
                n = int(da["n_seeds"].iloc[0])
                ax.plot(xs, da[f"{stat}_mean"], marker="o", color=colors[arch],
                        label=f"{arch} ({n} seed{'s' * (n > 1)})")
                if n > 1:
                    ax.fill_between(xs, da[f"{stat}_min"], da[f"{stat}_max"], color=colors[arch], alpha=0.2, lw=0)
            if stat == "acc":
                ch = d.groupby("level")["chance"].mean().reindex(levels)
                ax.plot(range(len(levels)), ch.values, ls="--", color="0.5", label="chance")
                ax.set_ylim(-0.02, 1.02)
                ax.set_title(f"{_title(probe)}: {kind}")
            ax.set_xticks(range(len(levels)), [str(v) for v in levels])
            ax.set_xlabel(axis)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0][c].legend(fontsize=8)
    fig.savefig(png, dpi=120, metadata={"Software": None})
    fig.savefig(pdf, metadata={"CreationDate": None, "Producer": None, "Creator": None})


def make_figures(results_dir: Path, out_dir: Path) -> list[dict]:
    """Write probe_<name>.{png,pdf,csv} under out_dir; return one entry per figure for the HTML report."""
    runs = collect(Path(results_dir))
    if not runs:
        print(f"probe figures: no results under {Path(results_dir) / 'probes'} (<arch>-s<seed>.npz); skipped")
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = summary(runs)
    axes = next(iter(runs.values()))[0].meta.get("axes", {})
    entries = []
    for probe in dict.fromkeys(table["probe"]):
        df = table[table["probe"] == probe]
        stem = out_dir / f"probe_{probe}"
        png, pdf, csv = stem.with_suffix(".png"), stem.with_suffix(".pdf"), stem.with_suffix(".csv")
        axis = axes.get(probe, "level")
        _plot(df, probe, axis, png, pdf)
        df.to_csv(csv, index=False, float_format="%.6g")
        seeds = ", ".join(f"{a}: {len(r)}" for a, r in runs.items())
        entries.append({
            "name": f"probe_{probe}", "title": f"Synthetic probe: {_title(probe).lower()}",
            "png": str(png), "pdf": str(pdf), "csv": str(csv),
            "caption": (f"{_title(probe)} vs {axis}. Top: share of targets whose first token is the "
                        f"model's arg-max; bottom: mean loss of that token. Lines are seed means, bands the range "
                        f"over seeds ({seeds}); dashed: chance, 1/|candidates|. Targets that span several tokens "
                        f"are scored on their first token."),
        })
    return entries
