"""python -m tokengap.analysis probes {generate,score,shortcuts,compare,figures,planted-*} (docs/probes.md, planted.py).

    python -m tokengap.analysis probes generate --out build/probes [--seed 0] [--preset small|tiny]
    python -m tokengap.analysis probes shortcuts --probes build/probes --out probes/shortcuts.npz
    python -m tokengap.analysis probes score --model runs/hybrid/checkpoints/final \\
        --tokenizer build/corpus/small/tokenizer.json --probes build/probes --out probes/hybrid-s0.npz
    python -m tokengap.analysis probes score --hf allenai/Olmo-3-1025-7B --probes build/probes --out probes/olmo3-s0.npz
    python -m tokengap.analysis probes compare --a results/probes/transformer-s*.npz --b results/probes/hybrid-s*.npz \
        [--shortcuts results/probes/shortcuts.npz]
    python -m tokengap.analysis probes figures --results results --out figures
    python -m tokengap.analysis probes planted-generate --corpus build/corpus/small --out build/planted
    python -m tokengap.analysis probes planted-score --model runs/hybrid/model --planted build/planted/planted.npz \
        --out probes/planted/hybrid-s0.npz
    python -m tokengap.analysis probes planted-compare results/probes/planted/*.npz

generate and score need only numpy, pandas, tokenizers and torch (no spaCy, Hydra or statsmodels).
"""
from __future__ import annotations

from tokengap.analysis.errors import (AnalysisError, check_output, check_output_dir, csv_header, device_arg, npz_meta,
                                      positive_int)
from tokengap.analysis.probes.planted import GAPS as PLANTED_GAPS

import argparse
import json
import sys
import time
from pathlib import Path


def probe_names(text: str) -> list[str]:
    """A comma-separated subset of the probes."""
    from tokengap.analysis.probes.probeset import PROBES
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROBES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown probe(s) {', '.join(unknown) or repr(text)} (known: {', '.join(PROBES)})")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="probes_command", required=True)

    g = sub.add_parser("generate", help="write the probe set (probes.jsonl, targets.jsonl, manifest.json)")
    g.add_argument("--out", required=True, help="directory to write")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--preset", choices=["small", "tiny"], default="small",
                   help="small: documents fit T=2048 tokens; tiny: fit T=256 (CPU models)")
    g.add_argument("--probes", type=probe_names, default=None, help="comma-separated subset (default: all)")
    g.add_argument("--docs-per-level", type=positive_int, default=None, help="override the preset's documents per level")
    g.add_argument("--overwrite", action="store_true", help="replace an --out of another kind")

    s = sub.add_parser("score", help="per-target loss / exact match of one model")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a tokengap model directory (config.json + model.safetensors)")
    src.add_argument("--hf", help="a Hugging Face causal LM name or path (its own tokenizer is used)")
    s.add_argument("--tokenizer", help="tokenizer.json of the model's corpus (required with --model)")
    s.add_argument("--probes", required=True, help="probe set directory (from `probes generate`)")
    s.add_argument("--out", required=True, help="result file (results/probes/<arch>-s<seed>.npz are copied from these)")
    s.add_argument("--name", default=None, help="label for the model (default: from the path)")
    s.add_argument("--context", type=positive_int, default=2048)
    s.add_argument("--batch-size", type=positive_int, default=8)
    s.add_argument("--device", type=device_arg, default=None, help="default: cuda when available, else cpu")
    s.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None, help="autocast (default bf16 on CUDA)")
    s.add_argument("--kernels", choices=["auto", "reference", "triton"], default=None)
    s.add_argument("--overwrite", action="store_true", help="replace an --out of another model or kind")

    sc = sub.add_parser("shortcuts", help="per target: what the shortcuts of the probe set leave (docs/probes.md)")
    sc.add_argument("--probes", required=True, help="probe set directory (from `probes generate`)")
    sc.add_argument("--out", required=True, help="file to write (results/probes/shortcuts.npz is copied from one)")
    sc.add_argument("--overwrite", action="store_true", help="replace an --out of another kind")

    c = sub.add_parser("compare", help="gap = A - B per probe and level, bootstrap CI over documents")
    c.add_argument("--a", nargs="+", required=True, help="result files of A (one per seed)")
    c.add_argument("--b", nargs="+", required=True, help="result files of B (one per seed)")
    c.add_argument("--out", default=None, help="also write the full table as CSV")
    c.add_argument("--n-boot", type=positive_int, default=1000)
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    c.add_argument("--shortcuts", default=None,
                   help="shortcuts file (from `probes shortcuts`, same probe set): leave out the targets a shortcut "
                        "settles")
    c.add_argument("--overwrite", action="store_true", help="replace an --out of another kind")

    pg = sub.add_parser("planted-generate", help="planted-repeat probe: random spans planted twice (planted.py)")
    pg.add_argument("--corpus", required=True, help="built corpus whose train.bin gives the unigram distribution")
    pg.add_argument("--out", required=True, help="directory for planted.npz")
    pg.add_argument("--window", type=positive_int, default=2048)
    pg.add_argument("--span", type=positive_int, default=32)
    pg.add_argument("--gaps", default=",".join(map(str, PLANTED_GAPS)), help="comma-separated gaps in tokens")
    pg.add_argument("--per-gap", type=positive_int, default=32)
    pg.add_argument("--seed", type=int, default=0)
    pg.add_argument("--overwrite", action="store_true", help="replace an --out of another kind")

    ps = sub.add_parser("planted-score", help="per-token losses of one model on the planted-repeat probe")
    src = ps.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a tokengap model directory")
    src.add_argument("--hf", help="a Hugging Face causal LM (must share the corpus tokenizer)")
    ps.add_argument("--planted", required=True, help="planted.npz from planted-generate")
    ps.add_argument("--out", required=True,
                    help="result file (results/probes/planted/<arch>-s<seed>.npz are copied from these)")
    ps.add_argument("--name", default=None)
    ps.add_argument("--batch-size", type=positive_int, default=8)
    ps.add_argument("--device", type=device_arg, default=None)
    ps.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None)
    ps.add_argument("--kernels", choices=["auto", "reference", "triton"], default=None)
    ps.add_argument("--overwrite", action="store_true", help="replace an --out of another model or kind")

    pc = sub.add_parser("planted-compare", help="retrieval gain (first − second copy) by gap for each result file")
    pc.add_argument("results", nargs="+", help="files from planted-score")
    pc.add_argument("--out", default=None, help="also write the table as CSV")
    pc.add_argument("--overwrite", action="store_true", help="replace an --out of another kind")

    f = sub.add_parser("figures", help="one figure per probe from results/probes/<arch>-s<seed>.npz")
    f.add_argument("--results", default="results", help="directory holding probes/")
    f.add_argument("--out", default="figures")


def _generate(args) -> int:
    import pandas as pd

    from tokengap.analysis.probes.probeset import DOCS, MANIFEST, TARGETS, generate_probe_set

    check_output_dir("--out", args.out, (DOCS, TARGETS, MANIFEST), "a probe set",
                     lambda d: "" if is_probe_manifest(d / MANIFEST) else None, overwrite=args.overwrite)
    t0 = time.perf_counter()
    m = generate_probe_set(args.out, seed=args.seed, preset=args.preset, probes=args.probes,
                           docs_per_level=args.docs_per_level)
    secs = time.perf_counter() - t0
    out = Path(args.out)
    sizes = ", ".join(f"{n} {(out / n).stat().st_size / 1e6:.1f} MB" for n in (DOCS, TARGETS))
    print(f"{m['n_docs']} documents, {m['n_targets']} targets in {secs:.1f} s -> {out} ({sizes}); "
          f"probe set {m['probe_set_hash'][:16]}…")
    for name, p in m["probes"].items():
        print(f"  {name:9s} {p['axis']} = {list(p['config']['levels'])}, longest document "
              f"{p['max_doc_pretokens']} pre-tokens (budget {p['config']['max_pretokens']})")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print("answer balance and shortcut baselines (accuracy of each heuristic; NaN: not defined for the probe; "
              "shortcut_settled: share of targets a shortcut settles, shortcut: accuracy of guessing among what it "
              "leaves; docs/probes.md):")
        df = pd.DataFrame(m["baselines"])
        last = [c for c in ("shortcut_settled", "shortcut") if c in df]
        print(df[[c for c in df if c not in last] + last].to_string(index=False))
    return 0


def _score(args) -> int:
    import torch

    from tokengap.evaluation.evalset import TextTokenizer
    from tokengap.analysis.probes.probeset import ProbeSet
    from tokengap.analysis.probes.scoring import ARRAYS, save_results, score_probe_set
    from tokengap.analysis.score import check_score_out, default_dtype, load_for_scoring, model_name
    from tokengap.evaluation.scorefile import code_version

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = default_dtype(args.dtype, device)
    if args.model and not args.tokenizer:
        raise AnalysisError("--tokenizer <corpus>/tokenizer.json is needed with --model")
    check_score_out("--out", args.out, "probe results", ARRAYS + ("meta",), model_name(args.model, args.hf, args.name),
                    args.overwrite)
    probes = ProbeSet.load(args.probes)
    lm = load_for_scoring(args.model, args.hf, device, dtype, args.kernels, args.name)
    tok = lm.tokenizer or TextTokenizer.from_file(args.tokenizer)
    lm.check_tokenizer(tok.sha256, args.tokenizer or "its tokenizer")
    scorer, name, info = lm.scorer, lm.name, lm.info
    t0 = time.perf_counter()
    arrays, meta = score_probe_set(scorer, probes, tok, args.context, batch_size=args.batch_size, device=device,
                                   dtype=dtype, progress=sys.stderr.isatty())
    secs = time.perf_counter() - t0
    meta.update({"name": name, "model": args.model or args.hf, "arch": info.get("model", {}).get("name"),
                 "step": info.get("step"), "seed": info.get("seed"), "dtype": str(dtype).removeprefix("torch."),
                 "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                 "seconds": secs, "code_version": code_version()})
    save_results(args.out, arrays, meta)
    print(f"{name}: {meta['n_targets']} targets in {meta['n_docs']} documents ({meta['n_tokens']:,} tokens, "
          f"longest {meta['max_doc_tokens']}) in {secs:.1f} s on {meta['device']} -> {args.out}")
    print(f"  {100 * meta['multi_token_share']:.1f}% of answers span several tokens (scored on the first); "
          f"first-token agreement {meta['first_token_agreement']:.3f}")
    for probe in dict.fromkeys(arrays["probe"].tolist()):
        for kind in dict.fromkeys(arrays["kind"][arrays["probe"] == probe].tolist()):
            m = (arrays["probe"] == probe) & (arrays["kind"] == kind)
            print(f"  {probe:9s} {kind:8s} loss {arrays['loss'][m].mean():.3f}  "
                  f"accuracy {arrays['correct'][m].mean():.3f}  (chance {arrays['chance'][m].mean():.3f})")
    return 0


def _shortcuts(args) -> int:
    import pandas as pd

    from tokengap.analysis.probes.probeset import ProbeSet
    from tokengap.analysis.probes.shortcuts import ARRAYS, compute_shortcuts, save_shortcuts, shortcut_rows

    check_output("--out", args.out, "a shortcuts file", lambda p: None if npz_meta(p, ARRAYS) is None else "",
                 overwrite=args.overwrite)
    t0 = time.perf_counter()
    ps = ProbeSet.load(args.probes)
    arrays = compute_shortcuts(ps)
    rows = shortcut_rows(ps, arrays)
    save_shortcuts(args.out, arrays, ps.hash, {"probe_preset": ps.manifest["preset"],
                                               "probe_seed": ps.manifest["seed"], "rows": rows})
    print(f"{len(ps.targets)} targets, {int(arrays['shortcut_settles'].sum())} settled by a shortcut, in "
          f"{time.perf_counter() - t0:.1f} s -> {args.out} (probe set {ps.hash[:16]}…)")
    chance = {(r["probe"], r["kind"], r["level"]): r["chance"] for r in ps.manifest["baselines"]}
    df = pd.DataFrame(rows)
    df.insert(4, "chance", [chance.get((p, k, lv)) for p, k, lv in zip(df.probe, df.kind, df.level)])
    print(df.to_string(index=False))
    return 0


def _compare(args) -> int:
    from tokengap.analysis.probes.compare import compare, format_table
    from tokengap.analysis.probes.scoring import load_results

    a, b = [load_results(p) for p in args.a], [load_results(p) for p in args.b]
    exclude = chance = None
    if args.shortcuts:
        from tokengap.analysis.probes.shortcuts import check_matches, load_shortcuts

        sc = load_shortcuts(args.shortcuts)
        try:
            check_matches(sc, a + b)
        except ValueError as exc:
            raise AnalysisError(str(exc)) from None
        exclude, chance = sc.shortcut_settles, sc.shortcut_chance
    df = compare(a, b, n_boot=args.n_boot, seed=args.seed, exclude=exclude, shortcut_chance=chance)

    def label(rs):
        return rs[0].meta.get("arch") or Path(rs[0].meta["path"]).stem.rsplit("-s", 1)[0]

    na, nb = label(a), label(b)
    print(f"A = {na} ({len(a)} file{'s' * (len(a) > 1)}), B = {nb} ({len(b)}); gap = loss(A) - loss(B), "
          f"acc gain = acc(B) - acc(A): positive favours B")
    if exclude is not None:
        from tokengap.analysis.probes.compare import groups

        empty = [f"{p} {k} {lv}" for p, k, lv, m in groups(a[0]) if not (m & ~exclude).any()]
        print(f"left out {int(exclude.sum())} of {len(exclude)} targets that a shortcut settles ({args.shortcuts}); "
              f"'shortcut' = accuracy of guessing among what the shortcut leaves on the targets kept"
              + (f"; levels with no target left: {', '.join(empty)}" if empty else ""))
    print(format_table(df, na, nb))
    if args.out:
        from tokengap.models.atomic import atomic_write_text

        check_table_out(args.out, df, args.overwrite)
        atomic_write_text(args.out, df.to_csv(index=False, float_format="%.6g"))
        print(f"-> {args.out}")
    return 0


def _figures(args) -> int:
    from tokengap.analysis.probes.figures import make_figures

    for e in make_figures(Path(args.results), Path(args.out)):
        print(f"{e['name']}: {e['png']}")
    return 0


def _planted_generate(args) -> int:
    from tokengap.analysis.probes import planted

    corpus = Path(args.corpus)
    if not (corpus / "train.bin").is_file():
        raise AnalysisError(f"--corpus {corpus}: no train.bin (make data DATA=...)")
    check_output_dir("--out", args.out, ("planted.npz",), "a planted-repeat set",
                     lambda d: None if npz_meta(d / "planted.npz", ("tokens", "gap")) is None else "",
                     overwrite=args.overwrite)
    try:
        gaps = tuple(int(g) for g in args.gaps.split(","))
    except ValueError:
        raise AnalysisError(f"--gaps {args.gaps!r}: comma-separated integers expected") from None
    counts, info = planted.corpus_counts(corpus)
    cfg = planted.PlantedConfig(window=args.window, span=args.span, gaps=gaps, per_gap=args.per_gap, seed=args.seed)
    try:
        arrays = planted.generate(counts, cfg, exclude=(int(info.get("eot_id", 0)),))
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None
    meta = {**json.loads(str(arrays["meta"])), "corpus": str(corpus), "tokenizer_sha256": info.get("tokenizer_sha256")}
    arrays["meta"] = json.dumps(meta)
    path = planted.save(Path(args.out) / "planted.npz", arrays)
    print(f"{len(arrays['tokens'])} sequences of {args.window} tokens, span {args.span}, gaps {gaps} -> {path}")
    return 0


def _planted_score(args) -> int:
    import torch

    from tokengap.analysis.probes import planted
    from tokengap.analysis.score import check_score_out, default_dtype, load_for_scoring, model_name, trained_context
    from tokengap.evaluation.scorefile import code_version

    check_score_out("--out", args.out, "planted-repeat results", ("loss", "gap", "meta"),
                    model_name(args.model, args.hf, args.name), args.overwrite)
    arrays = planted.load(args.planted)
    meta = json.loads(str(arrays["meta"]))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = default_dtype(args.dtype, device)
    lm = load_for_scoring(args.model, args.hf, device, dtype, args.kernels, args.name)
    if meta.get("tokenizer_sha256"):
        lm.check_tokenizer(meta["tokenizer_sha256"], f"{args.planted}'s corpus tokenizer")
    ctx = trained_context(lm.info or {}, args.model)
    if ctx and ctx < meta["window"]:
        raise AnalysisError(f"{args.planted}: window {meta['window']} is longer than {lm.name}'s trained context "
                            f"{ctx} (planted-generate --window {ctx})")
    t0 = time.perf_counter()
    loss = planted.score_sequences(lm.scorer, arrays["tokens"], args.batch_size, device, dtype)
    out = {k: arrays[k] for k in ("first", "second", "gap", "span")}
    out.update(loss=loss, meta=json.dumps({**meta, "name": lm.name, "model": args.model or args.hf,
                                           "seconds": time.perf_counter() - t0, "code_version": code_version(),
                                           "device": str(device), "dtype": str(dtype)}))
    planted.save(args.out, out)
    print(planted.retrieval_gain(loss, arrays).to_string(index=False))
    return 0


def _planted_compare(args) -> int:
    import pandas as pd

    from tokengap.analysis.probes import planted

    tables = []
    for p in args.results:
        r = planted.load(p, ("loss", "gap", "span"), "planted-repeat results (from `planted-score`)")
        tables.append(planted.retrieval_gain(r["loss"], r).assign(model=Path(p).stem))
    df = pd.concat(tables, ignore_index=True)
    print(df.to_string(index=False, float_format="%.3f"))
    if args.out:
        from tokengap.models.atomic import atomic_write_text

        check_table_out(args.out, df, args.overwrite)
        atomic_write_text(args.out, df.to_csv(index=False, float_format="%.6g"))
    return 0


def check_table_out(out, df, overwrite: bool) -> None:
    """check_output for a CSV table: an existing file is one of these tables when its header is this one's."""
    header = ",".join(map(str, df.columns))
    check_output("--out", out, "this table", lambda p: "" if csv_header(p) == header else None, overwrite=overwrite)


def is_probe_manifest(path: Path) -> bool:
    """Whether `path` is a probe set's manifest.json (it names the probe set's hash)."""
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and "probe_set_hash" in m


def run(args: argparse.Namespace) -> int:
    return {"generate": _generate, "score": _score, "shortcuts": _shortcuts, "compare": _compare,
            "planted-generate": _planted_generate, "planted-score": _planted_score,
            "planted-compare": _planted_compare, "figures": _figures}[args.probes_command](args)
