"""Every figure of the study and the HTML report, from the files under results/ (CPU, no training).

    python -m tokengap.analysis figures [--results results] [--out results/figures] [--report results/report.html]

Reads results/labels.parquet, results/scores/<arch>-s<seed>.npz (arch: transformer, hybrid, recurrent) and
results/curves/<arch>-s<seed>.jsonl; compares every architecture against the baseline (transformer: gap =
loss(transformer) − loss(model), positive favours the model); adds the synthetic-probe figures of
tokengap/analysis/probes/figures.py when that module is present, the matched-loss and relative-gap figures from
results/claims.csv and the architecture-or-progress figures from results/progress.csv when `python -m tokengap.analysis
claims` has written them. A figure whose inputs are missing is skipped with a note, never an error.
"""
from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

SCORE_NAME = re.compile(r"^(?P<arch>.+)-s(?P<seed>\d+)\.(?P<ext>npz|jsonl)$")


def find_runs(folder: Path, ext: str) -> dict[str, list[Path]]:
    """{arch: [paths sorted by seed]} for files named <arch>-s<seed>.<ext>."""
    runs: dict[str, list[tuple[int, Path]]] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            m = SCORE_NAME.match(p.name)
            if m and m.group("ext") == ext:
                runs.setdefault(m.group("arch"), []).append((int(m.group("seed")), p))
    return {a: [p for _, p in sorted(v)] for a, v in sorted(runs.items())}


def read_curves(folder: Path):
    """DataFrame of every eval line of every curve file (arch, seed, step, tokens, annealed, metrics)."""
    import pandas as pd

    rows = []
    for arch, paths in find_runs(folder, "jsonl").items():
        for p in paths:
            seed = int(SCORE_NAME.match(p.name).group("seed"))
            for line in p.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if r.get("kind") == "eval":
                    rows.append({"arch": arch, "seed": seed, **r, "annealed": bool(r.get("annealed", False))})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    if "tokens" not in df.columns or df["tokens"].isna().all():
        df["tokens"] = df["step"]
    return df


def note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def make_all(results: Path, out: Path, baseline: str = "transformer", n_boot: int = 1000, seed: int = 0,
             probes: bool = True, archs: Optional[Sequence[str]] = None) -> tuple[list[dict], dict]:
    """Compute the tables and draw every figure. Returns (report entries, provenance for the report).
    archs: only these architectures' score files and curves (default: every one under results/)."""
    from tokengap.analysis.figures import plots

    entries: list[dict] = []
    info: dict = {"results": str(results)}
    scores = find_runs(results / "scores", "npz")
    if archs is not None:
        scores = {k: v for k, v in scores.items() if k in archs}
    labels_path = results / "labels.parquet"
    gaps = reg = None
    if baseline not in scores:
        note(f"no {baseline} score files under {results / 'scores'}: gap figures skipped")
    elif len(scores) < 2:
        note(f"only {baseline} score files under {results / 'scores'}: nothing to compare, gap figures skipped")
    elif not labels_path.is_file():
        note(f"{labels_path} missing (python -m tokengap.analysis label ...): gap figures skipped")
    else:
        import pandas as pd

        from tokengap.analysis.compare import (GapConfig, check_labels, check_sides, gap_table, load_side,
                                               regression_table)
        from tokengap.analysis.labels import read_labels

        labels, lmeta = read_labels(labels_path)
        from tokengap.analysis.claims import token_clusters

        a = load_side(scores[baseline], baseline)
        units, info["units"] = token_clusters(results, labels["doc_index"].to_numpy())
        tables, regs = [], []
        for arch, paths in scores.items():
            if arch == baseline:
                continue
            b = load_side(paths, arch)
            try:
                check_sides(a, b)
                check_labels(lmeta, b, len(labels))
            except ValueError as exc:
                note(f"{arch} skipped: {exc}")
                continue
            tables.append(gap_table(a, b, labels, GapConfig(n_boot=n_boot, seed=seed), clusters=units))
            regs.append(regression_table(a, b, labels)[0])
            info[arch] = {"seeds": b.n_seeds, "files": [p.name for p in paths],
                          "steps": sorted({str(m.get("step")) for m in b.metas})}
        if tables:
            gaps, reg = pd.concat(tables, ignore_index=True), pd.concat(regs, ignore_index=True)
            info[baseline] = {"seeds": a.n_seeds, "files": [p.name for p in scores[baseline]],
                              "steps": sorted({str(m.get("step")) for m in a.metas})}
            info["eval_hash"] = a.metas[0].get("eval_hash")
            info["n_tokens"] = int(a.loss.shape[1])
            info["synthetic"] = any(m.get("synthetic") for m in a.metas)
    meta = {"a": baseline, "n_boot": n_boot, "stratified": True, "units": info.get("units", "documents"),
            "seeds": ", ".join(f"{k}: {v['seeds']} seed(s)" for k, v in info.items()
                               if isinstance(v, dict) and "seeds" in v) or "no seeds"}
    if gaps is not None:
        for fn in (plots.fig_domain, plots.fig_content_function, plots.fig_ptb, plots.fig_code,
                   plots.fig_repetition, plots.fig_delimiters):
            e = fn(gaps, meta, out)
            entries.append(e) if e else note(f"{fn.__name__}: no rows for this figure, skipped")
        e = plots.fig_regression(reg, meta, out)
        entries.append(e) if e else note("regression figure skipped")
    # 8. synthetic probes, from the probes module when it exists
    module = None
    if probes:
        try:
            module = importlib.import_module("tokengap.analysis.probes.figures")
        except ModuleNotFoundError as exc:
            note(f"probe figures skipped ({exc})")
    if module is not None:
        try:
            entries += list(module.make_figures(results, out))
        except Exception as exc:  # the probes' own figures must not take the others down
            note(f"probe figures failed: {type(exc).__name__}: {exc}")
    # the claims' own figures, from results/claims.csv (`python -m tokengap.analysis claims`, which `make figures`
    # runs first)
    claims_csv = results / "claims.csv"
    if claims_csv.is_file() and archs is None:
        import pandas as pd

        claims = pd.read_csv(claims_csv)
        for fn in (plots.fig_matched_loss, plots.fig_relative_gap):
            e = fn(claims, out)
            entries.append(e) if e else note(f"{fn.__name__}: no rows in {claims_csv}, skipped")
    # tokengap/analysis/progress.py, written by `python -m tokengap.analysis claims`
    progress_csv = results / "progress.csv"
    if progress_csv.is_file() and archs is None:
        import pandas as pd

        entries += plots.fig_progress(pd.read_csv(progress_csv), out)
    curves = read_curves(results / "curves")
    if curves is not None and archs is not None:
        curves = curves[curves["arch"].isin(archs)]
    e = plots.fig_curves(curves, out, baseline) if curves is not None else None
    entries.append(e) if e else note(f"no training curves under {results / 'curves'}: curve figure skipped")
    return entries, info


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default="results", help="results directory (labels, scores/, curves/)")
    p.add_argument("--out", default=None, help="figure directory (default: <results>/figures)")
    p.add_argument("--report", default=None, help="HTML report (default: <results>/report.html)")
    p.add_argument("--overwrite", action="store_true", help="write over files of the same names outside --results")
    p.add_argument("--baseline", default="transformer", help="architecture every other one is compared against")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def run(args: argparse.Namespace) -> int:
    from tokengap.analysis.report import markdown_html, write_report

    from tokengap.analysis.errors import AnalysisError, check_figure_outputs
    t0 = time.perf_counter()
    results = Path(args.results)
    if not results.is_dir():
        raise AnalysisError(f"--results {results}: no such folder")
    if not any((results / sub).is_dir() for sub in ("scores", "curves", "probes")):
        raise AnalysisError(f"--results {results}: no scores/, curves/ or probes/ in it (nothing to draw)")
    out = Path(args.out) if args.out else results / "figures"
    report = Path(args.report) if args.report else results / "report.html"
    check_figure_outputs(results, out, report, args.overwrite)
    entries, info = make_all(results, out, args.baseline, args.n_boot, args.seed)
    claims = results / "claims.md"  # the headline: the claims table (`analysis claims`), when there is one
    headline = markdown_html(claims.read_text()) if claims.is_file() else ""
    write_report(entries, report, {**info, "baseline": args.baseline}, headline=headline,
                 headline_title="The study's claims, measured")
    print(f"{len(entries)} figure(s) -> {out}; report -> {report} ({time.perf_counter() - t0:.1f} s)")
    return 0
