"""The study's six headline claims (paper.md), measured on the committed results, one row per claim.

    python -m analysis claims [--results results] [--update RESULTS.md]

Reads results/scores/<arch>-s<seed>.npz, results/labels.parquet, results/filters.npz, results/curves/*.jsonl and
results/probes/<arch>-s<seed>.npz; writes results/claims.csv and results/claims.md, and with --update replaces the
text between `<!-- claims:begin -->` and `<!-- claims:end -->` (and the per-run table between
`<!-- runs:begin/end -->`) in RESULTS.md, so every number there comes from this command. With
results/probes/shortcuts.npz (`python -m analysis probes shortcuts`, docs/probes.md) claim 5 gets one more row per
probe that has shortcut-settled targets: the same gap without them.

Gap = loss(transformer) - loss(B): positive favours B. Per-token losses are averaged over each architecture's
seeds; CIs resample documents within domains (1000 replicates, shared by all rows, so differences between two
categories have CIs too). "Seed noise" is the same quantity computed between two transformer seeds (s0 minus s1):
a gap no larger than it is not established by these runs.
Verdict rules (stated in each row): agree = the 95% CI lies on the study's side; disagree = it lies on the other
side (or misses the study's stated magnitude); inconclusive = the CI includes the boundary.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Optional

import numpy as np

from analysis.errors import AnalysisError

from analysis.compare import load_side
from analysis.stats import bootstrap_weights, category_means, cluster_strata

ARCHS = ("transformer", "hybrid", "recurrent")
PROSE, CODE, MARKUP = ("books", "encyclopedic", "technical", "news"), ("python", "c"), ("html", "latex")


def seed_files(results: Path, sub: str, arch: str, ext: str = "npz") -> list[Path]:
    return sorted(results.glob(f"{sub}/{arch}-s*.{ext}"), key=lambda p: int(re.search(r"-s(\d+)", p.stem).group(1)))


def fmt(m: float, lo: Optional[float] = None, hi: Optional[float] = None) -> str:
    return f"{m:+.3f}" if lo is None else f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def within_noise(v: str, measured: float, noise: Optional[float]) -> str:
    """A gap no larger than the difference between two seeds of one architecture is not established."""
    if noise is not None and abs(noise) >= abs(measured) and v != "inconclusive":
        return f"inconclusive (within seed noise; CI alone: {v})"
    return v


def verdict(lo: float, hi: float, sign: int) -> str:
    """sign +1: the study says > 0; -1: < 0."""
    if sign * lo > 0:
        return "agrees"
    if sign * hi < 0:
        return "disagrees"
    return "inconclusive"


class Measure:
    """Means of per-token values under masks with the shared document bootstrap."""

    def __init__(self, labels, n_boot: int = 1000, seed: int = 0):
        doc = labels["doc_index"].to_numpy()
        self.uniq, self.cid = np.unique(doc, return_inverse=True)
        strata = cluster_strata(doc, labels["domain"].astype(str).to_numpy())
        self.w = bootstrap_weights(self.uniq.shape[0], n_boot, seed, strata)
        self.n_boot = n_boot

    def means(self, values: np.ndarray, masks: list):
        return category_means(values, self.cid, masks, self.n_boot, weights=self.w)


SHORTCUTS = "shortcuts.npz"  # under results/probes/: per-target shortcut flags (analysis/probes/shortcuts.py)
PROBE_CLAIMS = (("pronoun", "pronoun", "hybrid wins (> 0)", +1), ("entity", "box", "hybrid wins (> 0)", +1),
                ("brackets", "delim", "transformer wins (< 0)", -1), ("recall", "value", "(not in the study)", 0))


def probe_rows(df, noise, excluded: bool = False) -> list[dict]:
    """Claim 5 rows from `analysis.probes.compare.compare` tables (A = transformer, B = hybrid) over all levels.
    excluded: the tables were computed without the shortcut-settled targets (compare(..., exclude=...)); only
    probes with a target left out get a row, labelled as such."""
    out = []
    for probe, kind, study, sign in PROBE_CLAIMS:
        sel = df[(df.probe == probe) & (df.kind == kind) & (df.level.astype(str) == "all")]
        if excluded and (sel.empty or int(sel.iloc[0].n_excluded) == 0):
            continue
        r = sel.iloc[0]
        nz = None
        if noise is not None:
            nr = noise[(noise.probe == probe) & (noise.kind == kind) & (noise.level.astype(str) == "all")].iloc[0]
            nz = float(nr.gap)
        acc = f"accuracy T {r.acc_a:.3f} / H {r.acc_b:.3f} (chance {r.chance:.3f})"
        v = within_noise(verdict(r.gap_lo, r.gap_hi, sign), float(r.gap), nz) if sign else "—"
        if sign and max(r.acc_a, r.acc_b) < r.chance + 0.03:
            acc += "; neither model's arg-max beats chance"
        what = f"probe {probe}: loss gap (all levels)"
        if excluded:
            n_all = int(r.n_targets) + int(r.n_excluded)
            what += ", excluding shortcut-settled targets"
            acc = (f"{int(r.n_excluded):,} of {n_all:,} targets left out (a shortcut settles them, "
                   f"results/probes/{SHORTCUTS}); " + acc + f"; shortcut accuracy on the rest {r.shortcut_chance:.3f}")
            if r.chance < r.shortcut_chance and max(r.acc_a, r.acc_b) < r.shortcut_chance:
                acc += " (neither model's arg-max reaches it)"
        out.append({"claim": 5, "what": what, "vs": "hybrid", "study": study, "measured": float(r.gap),
                    "lo": float(r.gap_lo), "hi": float(r.gap_hi), "tokens": int(r.n_targets), "seed_noise": nz,
                    "verdict": v, "note": acc})
    return out


def build(results: Path, n_boot: int = 1000, keep: Optional[np.ndarray] = None,
          text_only: bool = False) -> tuple[list[dict], dict]:
    """The claim rows. keep: (N,) bool, restrict the natural-text rows (claims 1-4) to these tokens;
    text_only: leave out the probe and training-curve rows (claims 5, 6)."""
    import pandas as pd

    from analysis.probes.compare import compare as probe_compare
    from analysis.probes.scoring import load_results

    labels = pd.read_parquet(results / "labels.parquet")
    with np.load(results / "filters.npz") as z:
        F = {k: z[k] for k in z.files if k != "eval_hash"}
    sides = {a: load_side(f) for a in ARCHS if (f := seed_files(results, "scores", a))}
    if "transformer" not in sides:
        raise AnalysisError(f"{results}/scores: no transformer score files")
    T = sides["transformer"]
    meas = Measure(labels, n_boot)
    dom = labels["domain"].astype(str).to_numpy()
    group = {g: np.isin(dom, ds) for g, ds in (("prose", PROSE), ("code", CODE), ("markup", MARKUP))}
    dtype, ddir = (labels[c].astype(str).to_numpy() for c in ("delim_type", "delim_dir"))
    lead = labels["delim_lead"].to_numpy()
    ptb = labels["ptb"].astype(str).to_numpy()
    seed_noise = (T.loss[0] - T.loss[1]).astype(np.float64) if T.n_seeds > 1 else None

    def gap_of(b: str) -> np.ndarray:
        return T.loss.mean(0).astype(np.float64) - sides[b].loss.mean(0).astype(np.float64)
    info = {"seeds": {a: s.n_seeds for a, s in sides.items()}, "n_tokens": int(T.loss.shape[1])}
    keep = np.ones(T.loss.shape[1], bool) if keep is None else keep
    rows: list[dict] = []

    def row(claim, what, study, b, masks, sign, rule, contrast=False, note=""):
        """One row: the gap (or the difference of two masks' gaps when contrast) for A=transformer vs B=b."""
        masks = [x & keep for x in masks]
        cm = meas.means(gap_of(b), masks)
        r = cm.contrast(0, 1) if contrast else None
        m, lo, hi = (r.mean, r.lo, r.hi) if contrast else (cm.mean[0], cm.lo[0], cm.hi[0])
        noise = None
        if seed_noise is not None:
            nm = meas.means(seed_noise, masks)
            noise = nm.mean[0] - nm.mean[1] if contrast else nm.mean[0]
        v = verdict(lo, hi, sign) if rule is None else rule(m, lo, hi)
        rows.append({"claim": claim, "what": what, "vs": b, "study": study, "measured": m, "lo": lo, "hi": hi,
                     "tokens": int(sum(int(x.sum()) for x in masks)), "seed_noise": noise,
                     "verdict": within_noise(v, m, noise), "note": note})

    for b in [x for x in ("hybrid",) if x in sides]:  # claims 1-5 compare the hybrid with the transformer
        # 1. content vs function words
        row(1, "gap on content words (NN*, VB*, JJ*, RB*; all pieces)", "≈ +0.04", b, [F["content"]], +1, None)
        row(1, "gap on function words", "≈ +0.02", b, [F["function"]], +1, None)
        ratio = float(gap_of(b)[F["content"]].mean() / gap_of(b)[F["function"]].mean())
        row(1, "content − function", "> 0 (≈ +0.02)", b, [F["content"], F["function"]], +1, None, contrast=True,
            note=f"ratio content / function {ratio:.2f} (study ≈ 2)")
        overall = float(gap_of(b)[keep].mean())
        row(1, "gap on existential there (EX)", "among the largest", b, [ptb == "EX"], +1,
            lambda m, lo, hi: "agrees" if lo > overall else "disagrees" if hi < overall else "inconclusive",
            note=f"agrees if the CI lies above the gap on all tokens ({overall:+.3f})")
        # 2. code / markup categories
        for name, label in (("py_identifier", "Python identifiers"), ("py_string", "Python strings"),
                            ("py_comment", "Python comments"), ("html_text", "HTML text nodes"),
                            ("html_attr_value", "HTML attribute values"), ("latex_command", "LaTeX commands")):
            row(2, f"gap on {label}", "> 0 (hybrid helps)", b, [F[name]], +1, None)
        # 3. repeated n-grams: the advantage nearly vanishes
        for n in (4, 8):
            novel = float(gap_of(b)[~F[f"repeated_{n}"] & keep].mean())
            row(3, f"gap on repeated {n}-grams", "≈ 0, not clearly negative", b, [F[f"repeated_{n}"]], +1,
                    lambda m, lo, hi, novel=novel: "agrees" if lo < 0.25 * novel and hi > 0 else "disagrees",
                note=f"agrees if the CI reaches below a quarter of the gap on novel tokens ({0.25 * novel:+.3f}) "
                     "and is not wholly negative")
            row(3, f"gap on novel tokens (no repeated {n}-gram)", "(the reference)", b, [~F[f"repeated_{n}"]], +1, None)
        # 4. opening vs closing delimiters
        row(4, "opening − closing delimiters (all domains)", "> 0", b, [F["open_delim"], F["close_delim"]], +1, None,
            contrast=True)
        for g, gm in group.items():
            row(4, f"opening − closing delimiters ({g})", "> 0", b,
                [F["open_delim"] & gm, F["close_delim"] & gm], +1, None, contrast=True)
        brace_close = (dtype == "brace") & (ddir == "close") & lead
        row(4, "gap on closing braces", "≈ 0 (transformer matches)", b, [brace_close], +1,
            lambda m, lo, hi: "agrees" if lo <= 0 <= hi else "disagrees", note="agrees if the CI includes 0")

    if text_only:
        rows.sort(key=lambda r: r["claim"])
        return rows, info
    # 1 (cont.): which PTB tags have the largest gap (hybrid)
    if "hybrid" in sides:
        tags = [t for t in np.unique(ptb) if t and (ptb == t).sum() >= 1000]
        cm = meas.means(gap_of("hybrid"), [ptb == t for t in tags])
        order = np.argsort(-cm.mean)
        rank = {tags[i]: r + 1 for r, i in enumerate(order)}
        top = ", ".join(f"{tags[i]} {cm.mean[i]:+.3f}" for i in order[:6])
        want = [t for t in ("RB", "JJ", "EX") if t in rank]
        rows.append({"claim": 1, "what": f"largest gaps by PTB tag (of {len(tags)} tags with ≥1000 tokens)",
                     "vs": "hybrid", "study": "RB, JJ, EX largest", "measured": float("nan"), "lo": float("nan"),
                     "hi": float("nan"), "tokens": int(sum((ptb == t).sum() for t in tags)), "seed_noise": None,
                     "verdict": "agrees" if all(rank[t] <= max(3, len(tags) // 4) for t in want) else "disagrees",
                     "note": f"top: {top}; ranks: " + ", ".join(f"{t} {rank[t]}" for t in want) +
                             " (agrees if each is in the top quarter)"})

    # 5. synthetic probes
    pr = {a: [load_results(p) for p in seed_files(results, "probes", a)] for a in ARCHS}
    if pr["transformer"] and pr["hybrid"]:
        df = probe_compare(pr["transformer"], pr["hybrid"], n_boot=n_boot)
        noise = probe_compare(pr["transformer"][:1], pr["transformer"][1:2], n_boot=50) \
            if len(pr["transformer"]) > 1 else None
        rows += probe_rows(df, noise)
        # the same, without the targets a shortcut settles (results/probes/shortcuts.npz, `probes shortcuts`)
        sc_path = results / "probes" / SHORTCUTS
        if sc_path.is_file():
            from analysis.probes.shortcuts import check_matches, load_shortcuts

            sc = load_shortcuts(sc_path)
            try:
                check_matches(sc, pr["transformer"] + pr["hybrid"])
            except ValueError as exc:
                raise AnalysisError(f"{exc}")
            ex = sc.shortcut_settles
            df = probe_compare(pr["transformer"], pr["hybrid"], n_boot=n_boot, exclude=ex,
                               shortcut_chance=sc.shortcut_chance)
            noise = probe_compare(pr["transformer"][:1], pr["transformer"][1:2], n_boot=50, exclude=ex) \
                if len(pr["transformer"]) > 1 else None
            rows += probe_rows(df, noise, excluded=True)

    # 6. filtered losses during training (curves): first annealed point and final
    curves = {}
    for a in ARCHS:
        recs = [json.loads(x) for p in seed_files(results, "curves", a, "jsonl") for x in p.read_text().splitlines()]
        ann = [r for r in recs if r.get("kind") == "eval" and r.get("annealed")]
        if ann:
            curves[a] = pd.DataFrame(ann).groupby("tokens").mean(numeric_only=True)
    if len(curves) == 3:
        early, final = min(curves["transformer"].index), max(curves["transformer"].index)
        for when, t in (("first annealed point", early), ("final", final)):
            L = {a: curves[a].loc[t] for a in ARCHS}
            cn, rp, al = "eval/filter/content_novel", "eval/filter/repeated_4", "eval/all"
            order_cn = " < ".join(sorted(ARCHS, key=lambda a: L[a][cn]))
            order_rp = " < ".join(sorted(ARCHS, key=lambda a: L[a][rp]))
            rows.append({"claim": 6, "what": f"content words, not repeated: loss order ({when}, {t / 1e6:.0f}M tokens)",
                         "vs": "all", "study": "hybrid < recurrent < transformer", "measured": float("nan"),
                         "lo": float("nan"), "hi": float("nan"), "tokens": None, "seed_noise": None,
                         "verdict": "agrees" if order_cn == "hybrid < recurrent < transformer" else "disagrees",
                         "note": f"{order_cn}: " + ", ".join(f"{a} {L[a][cn]:.3f}" for a in ARCHS)})
            rows.append({"claim": 6, "what": f"repeated tokens (4-gram): loss order ({when})", "vs": "all",
                         "study": "recurrent worst", "measured": float("nan"), "lo": float("nan"), "hi": float("nan"),
                         "tokens": None, "seed_noise": None,
                         "verdict": "agrees" if order_rp.endswith("recurrent") else "disagrees",
                         "note": f"{order_rp}: " + ", ".join(f"{a} {L[a][rp]:.3f}" for a in ARCHS)})
            for b in ("hybrid", "recurrent"):
                g = {k: L["transformer"][k] - L[b][k] for k in (al, cn, rp)}
                hidden = abs(g[al]) < 0.5 * max(abs(g[cn]), abs(g[rp])) and g[cn] * g[rp] < 0
                rows.append({"claim": 6, "what": f"overall vs filtered gaps, transformer − {b} ({when})", "vs": b,
                             "study": "differences invisible in overall loss", "measured": float(g[al]),
                             "lo": float("nan"), "hi": float("nan"), "tokens": None, "seed_noise": None,
                             "verdict": "agrees" if hidden else "disagrees",
                             "note": f"overall {g[al]:+.3f}, content-novel {g[cn]:+.3f}, repeated {g[rp]:+.3f} (agrees "
                                     "if the filtered gaps have opposite signs and the overall gap is under half the larger)"})
    rows.sort(key=lambda r: r["claim"])  # stable: rows keep their order within a claim
    return rows, info


def to_markdown(rows: list[dict], info: dict) -> str:
    seeds = ", ".join(f"{a} {n}" for a, n in info["seeds"].items())
    lines = [f"Seeds per architecture: {seeds}. {info['n_tokens']:,} eval tokens. Gap = loss(transformer) − "
             "loss(B) in nats, positive favours B; 95% CI from 1000 document resamples within domains; seed noise = "
             "the same quantity between transformer seeds 0 and 1.", "",
             "| # | claim / measurement | B | study | measured (95% CI) | seed noise | verdict | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = "" if r["measured"] != r["measured"] else fmt(r["measured"], *(() if r["lo"] != r["lo"] else (r["lo"], r["hi"])))
        noise = "" if r["seed_noise"] is None else f"{r['seed_noise']:+.3f}"
        lines.append(f"| {r['claim']} | {r['what']} | {r['vs']} | {r['study']} | {m} | {noise} | {r['verdict']} | {r['note']} |")
    return "\n".join(lines)


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
    by_key = {(r["claim"], r["what"], r["vs"]): r for r in clean}
    lines = [f"Without the {n_bad} of {n_docs} eval documents that have ≥50% of their word 13-grams in the training "
             f"split or another chunk of the same file in it ({n_tokens:,} tokens left; `scripts/eval_overlap.py`):",
             "", "| # | measurement | all eval documents | without overlapping documents | verdict |", "|---|---|---|---|---|"]
    for r in full:
        c = by_key.get((r["claim"], r["what"], r["vs"]))
        if c is None or r["measured"] != r["measured"]:
            continue
        lines.append(f"| {r['claim']} | {r['what']} | {fmt(r['measured'], r['lo'], r['hi'])} | "
                     f"{fmt(c['measured'], c['lo'], c['hi'])} | {c['verdict']} |")
    return "\n".join(lines)


def runs_table(results: Path) -> str:
    """One row per training run: size, tokens, wall time and throughput (results/runs/*), final losses."""
    from evaluation.scorefile import load_scores

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


def replace_block(text: str, name: str, body: str, path: Path) -> str:
    a, b = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if a not in text or b not in text:
        raise AnalysisError(f"{path}: no {a} ... {b} block")
    head, rest = text.split(a, 1)
    _, tail = rest.split(b, 1)
    return f"{head}{a}\n{body}\n{b}{tail}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results")
    p.add_argument("--update", default=None, help="a markdown file whose claims:begin/end block is replaced")
    p.add_argument("--n-boot", type=int, default=1000)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    results = Path(args.results)
    if not (results / "labels.parquet").is_file():
        raise AnalysisError(f"{results}/labels.parquet missing (python -m analysis label ...)")
    rows, info = build(results, args.n_boot)
    pd.DataFrame(rows).to_csv(results / "claims.csv", index=False, float_format="%.6g")
    md = to_markdown(rows, info)
    doc = pd.read_parquet(results / "labels.parquet", columns=["doc_index"])["doc_index"].to_numpy()
    clean = clean_tokens(results, doc)
    if clean is not None:
        keep, n_bad, n_docs = clean
        robust, _ = build(results, args.n_boot, keep=keep, text_only=True)
        md += "\n\n" + robustness_markdown(rows, robust, n_bad, n_docs, int(keep.sum()))
    (results / "claims.md").write_text(md + "\n")
    runs = runs_table(results) if (results / "runs").is_dir() else ""
    if args.update:
        path = Path(args.update)
        text = replace_block(path.read_text(), "claims", md, path)
        if "<!-- runs:begin -->" in text:
            text = replace_block(text, "runs", runs, path)
        path.write_text(text)
    print(md)
    print(runs)
    return 0
