"""The researcher's workflow: the pipeline from two runs to a report and a token viewer, end to end on a tiny
synthetic corpus (CPU, tiny shapes), and the analysis commands' answers to bad input: one line, exit status 2,
nothing written or changed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tokengap.analysis.__main__ import main as analysis
from tokengap.evaluation.evalset import EvalSet
from tokengap.evaluation.scorefile import load_scores, save_scores
from tests.test_train import make_corpus, overrides
from tokengap.train.config import load_run_config
from tokengap.train.loop import Trainer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("wf_corpus"), n_train=60, n_eval=8)


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory) -> dict:
    """Two finished tiny runs (a transformer and a hybrid) on the synthetic corpus."""
    root = tmp_path_factory.mktemp("wf_runs")
    out = {}
    for name, pattern in (("transformer", "[attention,attention]"), ("hybrid", "[mamba2,attention]")):
        run = root / name
        cfg = load_run_config(overrides(corpus, run, f"model.pattern={pattern}", f"name={name}"))
        Trainer(cfg).run()
        out[name] = run
    return out


def snapshot(*dirs: Path) -> dict:
    """{file: (size, mtime_ns)} under dirs: what a refused command must leave as it was."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for d in dirs if d.exists()
            for p in sorted(Path(d).rglob("*")) if p.is_file()}


def one_line_exit_2(capsys, argv, *watched: Path) -> str:
    before = snapshot(*watched)
    try:
        rc = analysis(argv)
    except SystemExit as exc:  # argparse's refusals exit from inside the parser
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, (argv, rc, err)
    assert err.startswith("error: ") and err.count("\n") == 0, err
    assert snapshot(*watched) == before, "a refused command wrote or changed files"
    return err


# ---- the pipeline ---------------------------------------------------------------------------------------------
def test_pipeline_from_two_runs_to_report_and_viewer(runs, corpus, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = analysis(["pipeline", "--a", str(runs["transformer"]), "--b", str(runs["hybrid"]), "--out", str(out),
                   "--n-boot", "50", "--device", "cpu", "--viewer-docs", "5"])
    assert rc == 0
    for f in ("report.html", "viewer.html", "summary.md", "labels.parquet", "compare/gaps.csv",
              "compare/regression.csv", "compare/summary.json", "scores/transformer-s0.npz", "scores/hybrid-s0.npz",
              "curves/transformer-s0.jsonl", "figures/gap_by_domain.png", "figures/curves.png"):
        assert (out / f).is_file(), f
    a, b = load_scores(out / "scores/transformer-s0.npz"), load_scores(out / "scores/hybrid-s0.npz")
    assert a.meta["context_len"] == b.meta["context_len"] == 32  # the context the runs were trained with
    summary = (out / "summary.md").read_text()
    gap = float(a.loss.astype(np.float64).mean() - b.loss.astype(np.float64).mean())
    assert f"| all tokens | {a.loss.shape[0]:,} |" in summary and f"{gap:+.4f}" in summary
    report = (out / "report.html").read_text()
    assert report.index("Summary") < report.index("<h2 id='gap_by_domain'>1. Gap by domain")  # headline first
    assert "1. 1." not in report and "viewer.html" in report
    # a second run reuses the score files (same model, eval set and context)
    mtime = (out / "scores/hybrid-s0.npz").stat().st_mtime_ns
    assert analysis(["pipeline", "--a", str(runs["transformer"]), "--b", str(runs["hybrid"]), "--out", str(out),
                     "--n-boot", "50", "--device", "cpu"]) == 0
    assert (out / "scores/hybrid-s0.npz").stat().st_mtime_ns == mtime and "reusing" in capsys.readouterr().out


def test_pipeline_beyond_a_better_model_needs_both_trajectories(runs, tmp_path):
    """Runs without an annealed point before their final one: the summary says so in one line and has no such
    column. With annealed score files in both run directories (written here as the training loop writes them:
    the final losses raised, as at an earlier point), it gains the progress-predicted gap and the residual."""
    from tokengap.analysis.progress import TOKENS

    copies = {name: tmp_path / name for name in ("transformer", "hybrid")}
    for name, d in copies.items():
        shutil.copytree(runs[name], d)
    out = tmp_path / "cmp"
    argv = ["pipeline", "--a", str(copies["transformer"]), "--b", str(copies["hybrid"]), "--out", str(out),
            "--n-boot", "50", "--device", "cpu", "--viewer-docs", "3"]
    assert analysis(argv) == 0
    summary = (out / "summary.md").read_text()
    assert "Beyond a better model: not computed, transformer has no trajectory" in summary
    assert "beyond a better model |" not in summary and not (out / "compare" / "progress.csv").exists()
    for name, d in copies.items():
        final = load_scores(out / "scores" / f"{name}-s0.npz")
        step = int(final.meta["step"])
        for k, up in ((step // 3, 0.6), (2 * step // 3, 0.2)):
            save_scores(d / "scores" / f"annealed-step{k:07d}.npz", final.loss + np.float32(up), final.correct,
                        {**final.meta, "step": k, "annealed": True})
    assert analysis(argv) == 0
    summary = (out / "summary.md").read_text()
    assert "| predicted by training | beyond a better model |" in summary and "Trajectories (overall" in summary
    prog = (out / "compare" / "progress.csv").read_text()
    assert TOKENS in prog and "content words" in prog


def test_pipeline_trains_a_missing_zoo_run_after_labelling(corpus, tmp_path, runs, capsys, monkeypatch):
    """zoo:MODEL trains the model first (a `python -m tokengap.train` child, filtered evaluation on), then compares."""
    monkeypatch.chdir(tmp_path)  # the zoo run lands in ./runs of the working directory... of the repository
    out = tmp_path / "zoo_cmp"
    train_args = ("train.seq_len=32 train.batch_size=4 train.max_tokens=1024 train.eval.interval=4 "
                  "train.checkpoint.interval=0 train.threads=1 train.tensorboard=false model.n_layers=2 "
                  "model.d_model=64 model.n_heads=2 model.mamba.d_state=8 model.mamba.headdim=16 "
                  "model.mamba.chunk_size=16 train.eval.anneal_at=[] train.eval.max_docs_per_domain=null "
                  f"model.pattern=[mamba2,attention] name=zoo-hybrid run_dir={tmp_path / 'zoo_run'}")
    rc = analysis(["pipeline", "--a", str(runs["transformer"]), "--b", "zoo:hybrid", "--eval", str(corpus),
                   "--out", str(out), "--n-boot", "20", "--device", "cpu", "--train-args", train_args])
    assert rc == 0 and (tmp_path / "zoo_run" / "model" / "config.json").is_file()
    curves = [json.loads(x) for x in (out / "curves" / "zoo-hybrid-s0.jsonl").read_text().splitlines()
              if x.strip() and '"eval"' in x]
    assert curves and any(k.startswith("eval/filter/") for k in curves[-1])  # labelled before training


def test_pipeline_refusals(runs, corpus, tmp_path, capsys):
    repo_results = Path(__file__).resolve().parents[1] / "results"
    err = one_line_exit_2(capsys, ["pipeline", "--a", str(runs["hybrid"]), "--b", str(runs["hybrid"]),
                                   "--out", str(tmp_path / "x")], tmp_path)
    assert "same model" in err
    err = one_line_exit_2(capsys, ["pipeline", "--a", str(runs["transformer"]), "--b", str(runs["hybrid"]),
                                   "--out", str(repo_results / "mine")], repo_results)
    assert "committed results/" in err
    err = one_line_exit_2(capsys, ["pipeline", "--a", str(tmp_path / "nope"), "--b", str(runs["hybrid"]),
                                   "--out", str(tmp_path / "x")], tmp_path)
    assert "no such path" in err
    err = one_line_exit_2(capsys, ["pipeline", "--a", "zoo:lstm", "--b", str(runs["hybrid"]), "--eval", str(corpus),
                                   "--out", str(tmp_path / "x")], tmp_path)
    assert "no zoo model 'lstm'" in err


# ---- the viewer -----------------------------------------------------------------------------------------------
def test_viewer_pieces_colours_and_categories(corpus):
    import pandas as pd

    from tokengap.analysis.viewer import categories, pieces, token_color, viewer_data
    ev = EvalSet.from_corpus(corpus)
    text = ev.docs[0]["text"]
    a, b = int(ev.doc_starts[0]), int(ev.doc_starts[1])
    assert "".join(pieces(text, ev.offsets[a:b, 0])) == text  # every character shown once, in order
    # colour follows the gap: white at 0, bluer as B wins, redder as A wins, saturated beyond the scale
    assert token_color(0.0, 1.0) == "rgb(255,255,255)"
    assert token_color(0.5, 1.0) == "rgb(165,200,255)" and token_color(-0.5, 1.0) == "rgb(255,165,165)"
    assert token_color(3.0, 1.0) == token_color(1.0, 1.0) == "rgb(75,145,255)"
    rng = np.random.default_rng(0)
    la = rng.random(ev.n_tokens).astype(np.float32) + 1
    lb = la - np.where(np.arange(ev.n_tokens) % 2 == 0, 0.5, -0.5).astype(np.float32)  # B better on even tokens
    labels = pd.DataFrame({"doc_index": ev.doc_index, "word_class": np.where(np.arange(ev.n_tokens) % 3 == 0,
                                                                             "content", "function"),
                           "rep_4": np.arange(ev.n_tokens) % 5 == 0, "copy_dist": np.arange(ev.n_tokens) % 7})
    data = viewer_data(ev, la, lb, labels, ("A", "B"), max_docs=3)
    assert len(data["docs"]) == 3 and {k for k, _ in data["categories"]} >= {"word_class=content", "rep_4"}
    d = data["docs"][0]
    gaps = np.array(d["la"]) - np.array(d["lb"])
    assert np.allclose(gaps[::2], 0.5, atol=2e-3) and np.allclose(gaps[1::2], -0.5, atol=2e-3)
    content = [i for i in range(d["n"]) if labels["word_class"].iloc[int(ev.doc_starts[ev.docs.index(
        next(x for x in ev.docs if x["id"] == d["id"]))]) + i] == "content"]
    assert d["cats"]["word_class=content"] == content
    cats = {k: m for k, _, m in categories(labels)}
    assert cats["novel_4"].sum() == (~labels["rep_4"]).sum()


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium (apt-get install chromium): the viewer's DOM is "
                                                 "checked in a real browser only where there is one")
def test_viewer_in_headless_chromium(runs, tmp_path):
    """Load the viewer from file:// in headless Chromium and read the DOM after its script ran: the tokens are
    coloured by their gaps, and choosing a category highlights only its tokens (the page's own code, driven by a
    test hook in the URL fragment)."""
    import subprocess

    from tokengap.analysis.viewer import token_color
    out = tmp_path / "cmp"
    assert analysis(["pipeline", "--a", str(runs["transformer"]), "--b", str(runs["hybrid"]), "--out", str(out),
                     "--n-boot", "20", "--device", "cpu", "--viewer-docs", "3"]) == 0
    page = out / "viewer.html"

    def dom(fragment: str) -> str:
        r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
                            "--dump-dom", f"file://{page}#{fragment}"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    import re
    html = dom("")
    spans = re.findall(r'<span class="t[^"]*" data-i="(\d+)" data-gap="(-?[\d.]+)" style="background-color: '
                       r'(rgb\(\d+, \d+, \d+\))', html)
    assert len(spans) > 20
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page.read_text(),
                                re.S).group(1).replace("<\\/", "</"))
    for _, g, colour in spans[:50]:
        assert colour.replace(" ", "") == token_color(float(g), data["scale"])
    d0 = data["docs"][0]
    cat = next(k for k, _ in data["categories"] if 0 < len(d0["cats"].get(k, [])) < d0["n"])
    html = dom(f"cat={cat}")
    dimmed = set(re.findall(r'<span class="t dim" data-i="(\d+)"', html))
    lit = set(re.findall(r'<span class="t hl" data-i="(\d+)"', html))
    want = {str(i) for i in data["docs"][0]["cats"][cat]}
    assert lit == want and dimmed and not (lit & dimmed), (sorted(lit - want)[:5], sorted(want - lit)[:5], cat)


# ---- one-line errors of the analysis commands -------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored(runs, corpus, tmp_path_factory):
    d = tmp_path_factory.mktemp("scored")
    assert analysis(["pipeline", "--a", str(runs["transformer"]), "--b", str(runs["hybrid"]), "--out", str(d),
                     "--n-boot", "20", "--device", "cpu"]) == 0
    return d


def test_compare_refuses_bad_score_files_in_one_line(scored, tmp_path, capsys):
    a, b, labels = scored / "scores/transformer-s0.npz", scored / "scores/hybrid-s0.npz", scored / "labels.parquet"
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(b.read_bytes()[: b.stat().st_size // 2])
    flipped = tmp_path / "flipped.npz"
    data = bytearray(b.read_bytes())
    data[len(data) // 3] ^= 0xFF
    flipped.write_bytes(bytes(data))
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    text = tmp_path / "text.npz"
    text.write_text("not a score file\n")
    out = tmp_path / "out"
    for bad, why in ((tmp_path / "missing.npz", "no such score file"), (truncated, "not a readable score file"),
                     (flipped, "not a readable score file"), (other, "not a score file"),
                     (text, "not a readable score file")):
        err = one_line_exit_2(capsys, ["compare", "--a", str(a), "--b", str(bad), "--labels", str(labels), "--out",
                                       str(out)], tmp_path, scored)
        assert why in err and str(bad) in err
    assert not out.exists()
    assert "same file" in one_line_exit_2(capsys, ["compare", "--a", str(a), "--b", str(a), "--labels", str(labels),
                                                   "--out", str(out)], tmp_path)
    assert "unknown nonsense" in one_line_exit_2(capsys, ["compare", "--a", str(a), "--b", str(b), "--labels",
                                                          str(labels), "--out", str(out), "--families", "nonsense"],
                                                 tmp_path)
    assert "--n-boot" in one_line_exit_2(capsys, ["compare", "--a", str(a), "--b", str(b), "--out", str(out),
                                                  "--n-boot", "0"], tmp_path)
    # scored at different contexts: refused, naming both
    s = load_scores(b)
    other_ctx = tmp_path / "ctx.npz"
    save_scores(other_ctx, s.loss, s.correct, {**s.meta, "context_len": 64})
    err = one_line_exit_2(capsys, ["compare", "--a", str(a), "--b", str(other_ctx), "--labels", str(labels), "--out",
                                   str(out)], tmp_path)
    assert "context 32" in err and "64" in err


def test_score_and_label_refuse_bad_input_in_one_line(runs, corpus, scored, tmp_path, capsys):
    out = tmp_path / "s.npz"
    err = one_line_exit_2(capsys, ["score", "--model", str(runs["hybrid"]), "--eval", str(corpus), "--out", str(out),
                                   "--device", "cpu"], tmp_path)
    assert f"did you mean {runs['hybrid'] / 'model'}?" in err
    assert "--context" in one_line_exit_2(capsys, ["score", "--model", str(runs["hybrid"] / "model"), "--eval",
                                                   str(corpus), "--out", str(out), "--context", "0"], tmp_path)
    assert "--batch-size" in one_line_exit_2(capsys, ["score", "--model", str(runs["hybrid"] / "model"), "--eval",
                                                      str(corpus), "--out", str(out), "--batch-size", "0"], tmp_path)
    empty = tmp_path / "empty"
    (empty / "docs").mkdir(parents=True)
    (empty / "docs" / "eval.jsonl").write_text("")
    shutil.copyfile(corpus / "tokenizer.json", empty / "tokenizer.json")
    assert "no tokens" in one_line_exit_2(capsys, ["score", "--model", str(runs["hybrid"] / "model"), "--eval",
                                                   str(empty), "--out", str(out), "--device", "cpu"], tmp_path)
    assert "no tokens" in one_line_exit_2(capsys, ["label", "--eval", str(empty), "--out", str(tmp_path / "l.parquet")],
                                          tmp_path)
    assert "no such folder" in one_line_exit_2(capsys, ["figures", "--results", str(tmp_path / "nothing")], tmp_path)
    # labels of another eval set (or context) are never overwritten without --overwrite
    labels = tmp_path / "labels.parquet"
    shutil.copyfile(scored / "labels.parquet", labels)
    err = one_line_exit_2(capsys, ["label", "--eval", str(corpus), "--context", "64", "--out", str(labels),
                                   "--filters", ""], tmp_path)
    assert "--overwrite" in err and "context 32" in err


def test_label_without_out_writes_the_cache_not_results(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    assert analysis(["label", "--eval", str(corpus), "--context", "32"]) == 0
    ev = EvalSet.from_corpus(corpus)
    assert (tmp_path / "build" / "labels" / f"{ev.eval_hash[:16]}-T32.parquet").is_file()
    assert (tmp_path / "build" / "labels" / f"{ev.eval_hash[:16]}-T32.filters.npz").is_file()
    assert not any((tmp_path / "results").iterdir())


def test_a_tokenizer_resaved_by_transformers_is_the_same_tokenizer(corpus, tmp_path):
    """Same ids from our tokenizer.json and from its copy re-saved through transformers: score files of the two
    compare (the file hashes differ, the content hashes match); a different tokenizer is still refused."""
    from transformers import PreTrainedTokenizerFast

    from tokengap.evaluation.evalset import TextTokenizer
    from tokengap.evaluation.scorefile import Scores, check_comparable
    fast = PreTrainedTokenizerFast(tokenizer_file=str(corpus / "tokenizer.json"), bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")
    fast.save_pretrained(tmp_path / "hf")
    ours, theirs = TextTokenizer.from_file(corpus / "tokenizer.json"), TextTokenizer.from_hf(str(tmp_path / "hf"))
    ea, eb = EvalSet.from_corpus(corpus, ours, cache=False), EvalSet.from_corpus(corpus, theirs, cache=False)
    assert np.array_equal(ea.tokens, eb.tokens) and ea.eval_hash != eb.eval_hash
    meta = lambda e: {"eval_hash": e.eval_hash, "tokenizer_sha256": e.tokenizer_sha256,  # noqa: E731
                      "tokenizer_content_sha256": e.tokenizer_content_sha256, "eval_tokens_sha256": e.eval_tokens_sha256}
    z = np.zeros(ea.n_tokens, np.float32)
    check_comparable(Scores(z, z > 0, meta(ea)), Scores(z, z > 0, meta(eb)))
    other = {**meta(eb), "tokenizer_content_sha256": "0" * 64}
    with pytest.raises(ValueError, match="tokenizer_sha256"):
        check_comparable(Scores(z, z > 0, meta(ea)), Scores(z, z > 0, other))
