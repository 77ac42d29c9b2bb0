"""`python -m tokengap.analysis pipeline`: from two models to a report in one command.

    python -m tokengap.analysis pipeline --a runs/transformer-4x128-s0 --b runs/hybrid-4x128-s0 --out compare/mine
    python -m tokengap.analysis pipeline --a hf:EleutherAI/pythia-410m --b hf:state-spaces/mamba-370m-hf \\
        --eval build/corpus/small --context 2048 --out compare/pythia-mamba
    python -m tokengap.analysis pipeline --a zoo:transformer --b zoo:hybrid --eval build/corpus/tiny --out compare/tiny
    make compare                      # the last line: trains the tiny pair first if their runs are missing

A side (--a, --b) is a run directory (runs/NAME: its finished model, its context, its filtered loss curves), a
model directory (runs/NAME/model or a checkpoint), `hf:ID_OR_PATH` (a Hugging Face causal LM), or `zoo:MODEL`
(a zoo config: trained on the --eval corpus with `python -m tokengap.train` first if its run is missing, after the eval
set is labelled, so that its curves carry the filtered losses). Then, into --out and nowhere else:

  labels.parquet        the eval set's labels at the models' context (cached once per eval set in build/labels)
  scores/<name>-s0.npz  per-token losses of each side (reused when the same model was scored the same way)
  curves/<name>-s0.jsonl  the runs' metrics.jsonl, when there are runs
  compare/              gaps.csv, regression.csv, summary.json (python -m tokengap.analysis compare); progress.csv
                        when both sides are runs with annealed score files (tokengap/analysis/progress.py:
                        architecture, or a better model?), else summary.md says in one line which side has no trajectory
  figures/, report.html the figures and the report, the summary table at the top
  viewer.html           the token viewer (tokengap/analysis/viewer.py)
  summary.md            the short table: overall, domains, content/function, repeated/novel, delimiters

A is the baseline: gap = loss(A) − loss(B), positive favours B. Both sides are scored at one context: the one their
models were trained with (refused if the two differ, unless --context), and the labels are for that context.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tokengap.analysis.errors import (AnalysisError, add_source_arguments, check_output_dir, device_arg,
                                      json_fields, positive_int)

REPO = Path(__file__).resolve().parents[2]  # the checkout: runs/ of zoo sides, the cwd of their training
CONF = Path(__file__).resolve().parents[1] / "conf"  # tokengap/conf (tokengap.models.config.CONF_DIR)


@dataclass
class SideSpec:
    spec: str
    kind: str  # run | model | hf | zoo
    path: str  # the model directory (run, model), the hub id or folder (hf), the zoo model name (zoo)
    name: str
    run_dir: Optional[Path] = None
    context: Optional[int] = None
    corpus: Optional[str] = None


def _safe(name: str) -> str:
    """A side's name for file names: [A-Za-z0-9._-] only, without a run name's -s<seed> (files add their own)."""
    name = re.sub(r"-s\d+$", "", name)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _run_info(run_dir: Path) -> tuple[Optional[int], Optional[str], str]:
    """(training context, corpus, name) from a run directory's run.json."""
    info = json.loads((run_dir / "run.json").read_text())
    return int(info["config"]["train"]["seq_len"]), info.get("corpus"), info.get("name") or run_dir.name


def resolve_side(spec: str, eval_dir: Optional[str]) -> SideSpec:
    if spec.startswith("hf:"):
        ref = spec[3:]
        from tokengap.analysis.hf import resolve
        resolve(ref, flag="model")  # one line within seconds when the hub is out of reach
        return SideSpec(spec, "hf", ref, _safe(ref.rstrip("/").split("/")[-1]))
    if spec.startswith("zoo:"):
        model = spec[4:]
        if not (CONF / "model" / f"{model}.yaml").is_file():
            known = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
            raise AnalysisError(f"{spec}: no zoo model {model!r} (known: {', '.join(known)})")
        if not eval_dir:
            raise AnalysisError(f"{spec}: a zoo model is trained on a corpus: pass --eval build/corpus/<mix>")
        return SideSpec(spec, "zoo", model, model)
    p = Path(spec)
    if (p / "run.json").is_file():
        if not (p / "model" / "config.json").is_file():
            raise AnalysisError(f"{spec}: a run directory without a finished model (run it to the end, or pass one of "
                                f"its checkpoints, {p / 'checkpoints'}/step_...)")
        ctx, corpus, name = _run_info(p)
        return SideSpec(spec, "run", str(p / "model"), _safe(name), p, ctx, corpus)
    if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        info = json.loads((p / "config.json").read_text())
        run_dir = p.parent if (p.parent / "run.json").is_file() else (
            p.parent.parent if (p.parent.parent / "run.json").is_file() else None)
        ctx, corpus, name = _run_info(run_dir) if run_dir else (info.get("context_len"), None, info.get("run") or p.name)
        return SideSpec(spec, "model", str(p), _safe(name), run_dir, info.get("context_len") or ctx, corpus)
    if (p / "config.json").is_file():  # a local Hugging Face folder
        return SideSpec(spec, "hf", str(p), _safe(p.name))
    raise AnalysisError(f"{spec}: not a run directory, a model directory, hf:ID or zoo:MODEL"
                        + (" (no such path)" if not p.exists() else ""))


def _zoo_overrides(side: SideSpec, eval_dir: str, seed: int, train_args: list[str]) -> list[str]:
    mix = Path(eval_dir).name
    data = f"data={mix}" if (CONF / "data" / f"{mix}.yaml").is_file() else "data=tiny"
    return [f"model={side.path}", data, f"data.mix={mix}", f"data.root={Path(eval_dir).parent}", f"train.seed={seed}",
            *train_args]


def _zoo_plan(side: SideSpec, overrides: list[str]) -> tuple[Path, int]:
    """(run directory, training context) of a zoo side, from `python -m tokengap.train ... --dry-run`."""
    dry = subprocess.run([sys.executable, "-m", "tokengap.train", *overrides, "--dry-run"], capture_output=True,
                         text=True, cwd=REPO)
    if dry.returncode != 0:
        lines = dry.stderr.strip().splitlines()
        raise AnalysisError(f"{side.spec}: {lines[-1] if lines else 'python -m tokengap.train --dry-run failed'}")
    run_dir = Path(re.search(r"^run \S+ -> (\S+)$", dry.stdout, re.M).group(1))
    context = int(re.search(r"^\d+ steps x [\d,]+ tokens \(\d+ x (\d+)\)$", dry.stdout, re.M).group(1))
    return (run_dir if run_dir.is_absolute() else REPO / run_dir), context


def _zoo_run(side: SideSpec, overrides: list[str], run_dir: Path, filters: Path) -> SideSpec:
    """The zoo model's run: trained now (a `python -m tokengap.train` child, filtered evaluation on) if it has no
    model."""
    if not (run_dir / "model" / "config.json").is_file():
        print(f"training {side.path} (its run {run_dir} has no finished model yet) ...", flush=True)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "tokengap.train", *overrides, f"train.eval.filters={filters}"],
                           cwd=REPO)
        if r.returncode != 0:
            raise AnalysisError(f"{side.spec}: training failed (exit {r.returncode}); see the lines above")
        print(f"trained {side.path} in {time.perf_counter() - t0:.0f} s", flush=True)
    ctx, corpus, name = _run_info(run_dir)
    return SideSpec(side.spec, "run", str(run_dir / "model"), _safe(name), run_dir, ctx, corpus)


def _score(side: SideSpec, out: Path, eval_dir: str, context: int, args) -> dict:
    """The side's score file under out/scores/, reused when the same model was scored on the same eval set at the
    same context (the model's weights hash, or the hub id, recorded in the file)."""
    from tokengap.analysis.score import score_to_file, source_options
    from tokengap.evaluation.scorefile import ScoreFileError, load_scores
    from tokengap.evaluation.sources import is_corpus
    path = out / "scores" / f"{side.name}-s0.npz"
    weights = None
    if side.kind in ("run", "model"):
        weights = json.loads((Path(side.path) / "config.json").read_text()).get("weights_sha256")
    if path.is_file():
        try:
            m = load_scores(path).meta
            if m.get("context_len") == context and m.get("eval_dir") == str(eval_dir) and \
                    m.get("weights_sha256", "hf:" + str(m.get("model"))) == (weights or "hf:" + side.path):
                print(f"{side.name}: reusing {path}")
                return m
        except ScoreFileError:
            pass
    return score_to_file(path, eval_dir, side.path if side.kind in ("run", "model") else None,
                         side.path if side.kind == "hf" else None, context, args.batch_size, args.device,
                         args.dtype, None, side.name,
                         extra={"eval_dir": str(eval_dir), "weights_sha256": weights or "hf:" + side.path},
                         overwrite=args.overwrite, source=source_options(args),
                         tokenizer=str(_own_tokenizer_path(side)) if side.kind in ("run", "model")
                         and not is_corpus(eval_dir) else None)


def _own_tokenizer_path(side: SideSpec) -> Path:
    """One of our models' tokenizer: its model directory's tokenizer.json, else its run's corpus's."""
    p = Path(side.path) / "tokenizer.json"
    if not p.is_file() and side.corpus:
        p = Path(side.corpus) / "tokenizer.json"
    if not p.is_file():
        raise AnalysisError(f"{side.spec}: no tokenizer.json beside its model and no corpus in its run: it cannot "
                            "tokenize your own text")
    return p


def _own_tokenizer(side: SideSpec):
    from tokengap.evaluation.evalset import TextTokenizer
    return TextTokenizer.from_file(_own_tokenizer_path(side))


def summary_rows(gaps) -> list[tuple]:
    """(family, category, title) of the short table's rows: all tokens, content/function words, novel/repeated
    4-gram tokens, opening/closing delimiters per domain group, and every domain."""
    want = [("overall", "all", "all tokens"), ("word_class", "content", "content words"),
            ("word_class", "function", "function words"), ("repetition", "novel_4", "novel (no repeated 4-gram)"),
            ("repetition", "repeated_4", "repeated 4-gram")]
    dom = gaps[gaps["family"] == "delimiters_domain"]
    for g in dict.fromkeys(dom.get("group", [])):
        want += [("delimiters_domain", f"{g}: open", f"opening delimiters ({g})"),
                 ("delimiters_domain", f"{g}: close", f"closing delimiters ({g})")]
    want += [("domain", str(c), f"domain: {c}") for c in gaps[gaps["family"] == "domain"]["category"]]
    return want


def summary_table(gaps, a: str, b: str, progress=None, no_progress: str = "") -> str:
    """The short markdown table of a pair (`summary_rows`); with `progress` (`progress.table`, one row per title)
    two more columns: the gap the two runs' own training predicts, and what is left beyond a better model."""
    extra = progress is not None
    lines = [f"Gap = loss({a}) − loss({b}) in nats: positive favours {b}. 95% CI: document bootstrap within domains."
             + (" Predicted by training: the gap the two runs' own annealed checkpoints predict for their overall gap "
                "(`tokengap/analysis/progress.py`); beyond a better model: the gap minus that." if extra else ""), "",
             "| category | tokens | docs | gap | 95% CI |"
             + (" predicted by training | beyond a better model |" if extra else ""),
             "|---|---|---|---|---|" + "---|---|" * extra]
    pr = progress.set_index("category") if extra else None
    for fam, cat, title in summary_rows(gaps):
        rows = gaps[(gaps["family"] == fam) & (gaps["category"].astype(str) == cat)]
        for r in rows.head(1).itertuples():
            line = f"| {title} | {r.n_tokens:,} | {r.n_docs} | {r.gap:+.4f} | [{r.lo:+.4f}, {r.hi:+.4f}] |"
            if extra:
                q = pr.loc["all" if fam == "overall" else title]
                line += (f" {q.predicted:+.4f} [{q.predicted_lo:+.4f}, {q.predicted_hi:+.4f}] | {q.residual:+.4f} "
                         f"[{q.residual_lo:+.4f}, {q.residual_hi:+.4f}] {q.verdict} |")
            lines.append(line)
    if extra:
        from tokengap.analysis.progress import step_text
        pts = progress.attrs["points"]
        lines += ["", "Trajectories (overall eval loss): " + "; ".join(
            f"{x}: " + ", ".join(f"{step_text(s)} {v:.4f}" for s, v in p) for x, p in pts.items())
                  + (f". Notes: {progress['note'].iloc[0]}" if progress["note"].iloc[0] else "")]
    elif no_progress:
        lines += ["", f"Beyond a better model: not computed, {no_progress}."]
    return "\n".join(lines)


OUT_FILES = ("labels.parquet", "summary.md", "report.html", "viewer.html", "compare/summary.json", "compare/gaps.csv",
             "compare/regression.csv")


def progress_table(a: SideSpec, b: SideSpec, sa, sb, labels, lmeta: dict, gaps, n_boot: int, seed: int):
    """(the progress table of the summary's rows, "") when both sides are runs with annealed score files on this
    eval set, else (None, one line saying which side has no trajectory)."""
    from tokengap.analysis.categories.families import build_categories
    from tokengap.analysis.progress import estimate, run_trajectory, table
    from tokengap.analysis.stats import cluster_strata

    got = [run_trajectory(s.name, s.run_dir, side, lmeta, len(labels)) for s, side in ((a, sa), (b, sb))]
    if not all(t for t, _ in got):
        return None, "; ".join(why for t, why in got if not t)
    rows = summary_rows(gaps)
    cats = {(f, c.name): c.mask for f, c in build_categories(labels, sorted({f for f, _, _ in rows}))}
    masks = {("all" if f == "overall" else title): cats[(f, c)] for f, c, title in rows}
    fams = {"all": "all tokens", **{title: {"word_class": "words", "delimiters_domain": "delimiters"}.get(f, f)
                                    for f, _, title in rows if f != "overall"}}
    doc = labels["doc_index"].to_numpy()
    p = estimate(f"{a.name} − {b.name}", got[0][0], got[1][0], list(masks), n_boot, seed, list(masks.values()),
                 doc, cluster_strata(doc, labels["domain"].astype(str).to_numpy()))
    t = table(p, fams)
    t.attrs["points"] = p.points
    return t, ""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, help="model A, the baseline: runs/NAME, a model directory, hf:ID, zoo:MODEL")
    p.add_argument("--b", required=True, help="model B (e.g. the hybrid), same forms")
    add_source_arguments(p, required=False, default_note=" (default: the runs')")
    p.add_argument("--out", required=True, help="output directory (never the committed results/)")
    p.add_argument("--context", type=positive_int, default=None,
                   help="score both at this context (default: the one they were trained with)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--device", type=device_arg, default=None, help="default: cuda when available, else cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None)
    p.add_argument("--n-boot", type=positive_int, default=1000)
    p.add_argument("--viewer-docs", type=positive_int, default=60, help="documents embedded in viewer.html")
    p.add_argument("--seed", type=int, default=0, help="seed of zoo runs and of the bootstrap")
    p.add_argument("--train-args", default="", help="extra `python -m tokengap.train` overrides for zoo: sides")
    p.add_argument("--overwrite", action="store_true", help="replace the report of another pair in --out")


def run(args: argparse.Namespace) -> int:

    import torch

    from tokengap.analysis.labels import cache_paths, run_labels
    from tokengap.analysis.hf import tokenizer as hf_tokenizer
    from tokengap.evaluation.evalset import EvalSet, TextTokenizer

    from tokengap.models.console import setup_logging
    setup_logging()
    t_start = time.perf_counter()
    out = check_output_dir("--out", args.out, OUT_FILES, "a pipeline report",
                           lambda d: json_fields(d / "compare" / "summary.json", "a.spec", "b.spec"),
                           f"{args.a} vs {args.b}", args.overwrite)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    a, b = resolve_side(args.a, args.eval), resolve_side(args.b, args.eval)
    if a.spec == b.spec:
        raise AnalysisError(f"--a and --b are the same model ({a.spec}): nothing to compare")
    eval_dir = args.eval or a.corpus or b.corpus
    if not eval_dir:
        raise AnalysisError("--eval: needed (no run names its corpus)")
    from tokengap.evaluation.sources import is_corpus, load_evalset, read_docs
    from tokengap.analysis.score import source_options

    corpus = is_corpus(eval_dir)
    if not corpus:  # the user's own text: read (refused in one line) before any model; zoo sides train on a corpus
        read_docs(eval_dir, **source_options(args))
        for s in (a, b):
            if s.kind == "zoo":
                raise AnalysisError(f"{s.spec}: a zoo model is trained on a corpus: --eval {eval_dir} is your own text "
                                    "(score trained models on it: runs/NAME, a model directory or hf:ID)")
    # the tokenization both sides are scored and labelled under: the corpus's, or a model's own (a Hugging Face
    # model's; one of ours on the user's text: its model directory's tokenizer.json, else its corpus's)
    toks = [hf_tokenizer(s.path, s.spec) if s.kind == "hf" else None if corpus else _own_tokenizer(s) for s in (a, b)]
    tokenizer = next((t for t in toks if t is not None), None)
    if tokenizer is not None:
        corpus_tok = TextTokenizer.from_file(Path(eval_dir) / "tokenizer.json") if None in toks else None
        if len({(t or corpus_tok).content_sha256 for t in toks}) > 1:
            raise AnalysisError(f"{a.name} and {b.name} use different tokenizers: their per-token losses cannot be "
                                "aligned token by token (compare them word by word: python -m tokengap.analysis words)")
    ev = load_evalset(eval_dir, tokenizer, **source_options(args))
    zoo = {}  # side name -> (overrides, run directory)
    contexts = {s.name: s.context for s in (a, b) if s.context}
    for s in (a, b):
        if s.kind == "zoo":
            ov = _zoo_overrides(s, eval_dir, args.seed, args.train_args.split())
            run_dir, contexts[s.name] = _zoo_plan(s, ov)
            zoo[s.spec] = (ov, run_dir)
    if args.context is None and len(set(contexts.values())) > 1:
        raise AnalysisError(f"{a.name} was trained with context {contexts.get(a.name)}, {b.name} with "
                            f"{contexts.get(b.name)}: pass --context T to score both at one context")
    from tokengap.analysis.score import HF_CONTEXT
    context = args.context or next(iter(contexts.values()), None) or HF_CONTEXT
    # 1. labels: once per eval set and context (cache), then copied into out/
    labels_path, filters_path = cache_paths(ev, context)
    print(f"labels: {labels_path} (context {context})", flush=True)
    run_labels(ev, context, labels_path, filters_path, train_corpus=eval_dir if tokenizer is None and corpus else None)
    # 2. zoo sides: trained now if missing (after the labels, so that their curves have the filtered losses)
    a = _zoo_run(a, *zoo[a.spec], filters_path) if a.kind == "zoo" else a
    b = _zoo_run(b, *zoo[b.spec], filters_path) if b.kind == "zoo" else b
    if a.name == b.name:
        a.name, b.name = f"{a.name}-a", f"{b.name}-b"
    # 3. scores, curves, labels into out/
    (out / "scores").mkdir(parents=True, exist_ok=True)
    metas = [_score(s, out, eval_dir, context, args) for s in (a, b)]
    for s in (a, b):
        if s.run_dir is not None and (s.run_dir / "metrics.jsonl").is_file():
            (out / "curves").mkdir(exist_ok=True)
            shutil.copyfile(s.run_dir / "metrics.jsonl", out / "curves" / f"{s.name}-s0.jsonl")
    shutil.copyfile(labels_path, out / "labels.parquet")
    # 4. compare, figures, report, viewer, summary
    from tokengap.analysis.compare import GapConfig, gap_table, load_inputs, regression_table
    from tokengap.analysis.figures import make_all
    from tokengap.analysis.report import markdown_html, write_report
    from tokengap.analysis.viewer import viewer_data, write_viewer
    from tokengap.models.atomic import atomic_write_text
    sa, sb, labels, lmeta = load_inputs([out / "scores" / f"{a.name}-s0.npz"],
                                        [out / "scores" / f"{b.name}-s0.npz"], out / "labels.parquet", a.name, b.name)
    gaps = gap_table(sa, sb, labels, GapConfig(n_boot=args.n_boot, seed=args.seed))
    reg, r = regression_table(sa, sb, labels)
    prog, no_prog = progress_table(a, b, sa, sb, labels, lmeta, gaps, args.n_boot, args.seed)
    (out / "compare").mkdir(exist_ok=True)
    atomic_write_text(out / "compare" / "gaps.csv", gaps.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "compare" / "regression.csv", reg.to_csv(index=False, float_format="%.6g"))
    if prog is not None:
        atomic_write_text(out / "compare" / "progress.csv", prog.to_csv(index=False, float_format="%.6g"))
    summary = summary_table(gaps, a.name, b.name, prog, no_prog)
    atomic_write_text(out / "summary.md", summary + "\n")
    atomic_write_text(out / "compare" / "summary.json", json.dumps(
        {"a": {"spec": a.spec, "name": a.name, **{k: metas[0].get(k) for k in ("mean_loss", "context_len", "model")}},
         "b": {"spec": b.spec, "name": b.name, **{k: metas[1].get(k) for k in ("mean_loss", "context_len", "model")}},
         "eval": str(eval_dir), "eval_hash": ev.eval_hash, "n_tokens": ev.n_tokens, "n_boot": args.n_boot,
         "gap": "loss(A) - loss(B): positive favours B", "r2": r.r2}, indent=2, sort_keys=True) + "\n")
    write_viewer(out / "viewer.html", viewer_data(ev, sa.loss[0], sb.loss[0], labels, (a.name, b.name),
                                                  max_docs=args.viewer_docs, seed=args.seed))
    entries, info = make_all(out, out / "figures", a.name, args.n_boot, args.seed, probes=False,
                             archs=(a.name, b.name))
    write_report(entries, out / "report.html", {**info, "baseline": a.name},
                 title=f"tokengap: {b.name} against {a.name}, token by token", headline=markdown_html(summary),
                 headline_title="Summary", links=[("token viewer", "viewer.html"), ("gaps.csv", "compare/gaps.csv")])
    print(f"\n{summary}\n\nreport: {out / 'report.html'}   viewer: {out / 'viewer.html'}   tables: {out / 'compare'}"
          f"   ({time.perf_counter() - t_start:.0f} s)")
    return 0
