"""Every ordinary mistake is one line, exit status 2, before the long part (issue 28, classes 3, 4 and 5), through
the real entry points (`python -m tokengap.analysis` and `python -m tokengap.train` as main(argv)): a table of bad
inputs, each row the command, the words its one line must hold, and the files that must stay unchanged (by hash). Ctrl-C
is one line and exit status 130; a Hugging Face name out of reach is one line within seconds from every entry point."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tokengap.analysis.__main__ import main as analysis
from tests.test_nothing_lost import corpus, hashes, made, refused  # noqa: F401  (fixtures)
from tests.test_train import overrides
from tokengap.train import checkpoint as ckpt
from tokengap.train.loop import main as train


def rows(corpus: Path, made: dict, t: Path) -> list[tuple]:
    text = t / "notes.txt"
    text.write_text("not an archive\n")
    notok = t / "notok"
    (notok / "docs").mkdir(parents=True)
    (notok / "docs" / "eval.jsonl").write_bytes((corpus / "docs" / "eval.jsonl").read_bytes())
    m, ev, a, b = str(made["model"]), str(corpus), str(made["score"]), str(made["other"])
    cut = t / "cut" / "model"  # a model whose model.safetensors was cut short (with and without its checksum)
    shutil.copytree(made["model"], cut)
    (cut / "model.safetensors").write_bytes((made["model"] / "model.safetensors").read_bytes()[:5000])
    bare = t / "bare" / "model"
    shutil.copytree(cut, bare)
    info = json.loads((bare / "config.json").read_text())
    info.pop("weights_sha256", None)
    (bare / "config.json").write_text(json.dumps(info))
    changed = t / "changed" / corpus.name  # a corpus whose train.bin no longer matches its manifest
    shutil.copytree(corpus, changed)
    (changed / "manifest.json").write_text(json.dumps({**json.loads((corpus / "manifest.json").read_text()), "files": {
        "train.bin": {"sha256": ckpt.sha256_file(corpus / "train.bin")}}}))
    (changed / "train.bin").write_bytes((corpus / "train.bin").read_bytes()[:3000])
    score = ["score", "--model", m, "--eval", ev, "--out", str(t / "s.npz")]
    run = lambda *x: overrides(corpus, t / "run", *x)  # noqa: E731
    return [
        # class 3: a traceback before
        ("eval corpus without tokenizer.json", analysis,
         ["score", "--model", m, "--eval", str(notok), "--out", str(t / "s.npz"), "--device", "cpu"],
         f"{notok}/tokenizer.json: no such tokenizer file", notok),
        ("--device cuda without CUDA", analysis, [*score, "--device", "cuda"], "no CUDA device on this machine", t),
        ("--device banana", analysis, [*score, "--device", "banana"], "expected cpu, cuda or cuda:N", t),
        ("--out under a file", analysis, ["score", "--model", m, "--eval", ev, "--out", str(text / "s.npz"),
                                          "--device", "cpu"], "is a file, not a folder", text),
        ("--eval missing", analysis, [*score, "--eval", str(t / "nope"), "--device", "cpu"], "no such file or folder", t),
        ("probes compare given score files", analysis, ["probes", "compare", "--a", a, "--b", b],
         "not probe results", made["score"]),
        ("probes generate: an unknown probe", analysis,
         ["probes", "generate", "--preset", "tiny", "--probes", "banana", "--out", str(t / "pg")],
         "unknown probe(s) banana", t),
        ("probes planted-compare given a text file", analysis, ["probes", "planted-compare", str(text)],
         "not planted-repeat results", text),
        ("claims --update a missing file", analysis, ["claims", "--update", str(t / "missing.md")],
         "missing.md: no such file", t),
        ("words: a missing eval path", analysis,
         ["words", "--a", a, "--b", b, "--eval", str(t / "nope"), "--out", str(t / "w")], "no such folder", t),
        ("words: a missing tokenizer", analysis,
         ["words", "--a", a, "--b", b, "--eval", ev, "--tokenizer-a", str(t / "no.json"), "--out", str(t / "w")],
         "no.json: no such tokenizer file", t),
        ("score: a truncated model.safetensors (checksummed)", analysis,
         ["score", "--model", str(cut), "--eval", ev, "--out", str(t / "s.npz"), "--device", "cpu"],
         "does not match config.json", cut),
        ("score: a truncated model.safetensors (no checksum)", analysis,
         ["score", "--model", str(bare), "--eval", ev, "--out", str(t / "s.npz"), "--device", "cpu"],
         "model.safetensors is unreadable", bare),
        ("train: train.bin does not match the manifest", train, overrides(changed, t / "run"),
         "train.bin does not match the sha256", changed),
        ("train: run_dir=. (the clone)", train, [x if not x.startswith("run_dir=") else "run_dir=." for x in run()],
         "not a tokengap run directory", t),
        ("train: a text file as filters file", train, run(f"train.eval.filters={text}"),
         "not a filters file", text),
        ("train: seed out of range", train, run("train.seed=-1"), "train.seed: must be in [0, 2**32)", t),
        ("train --dry-run: seed out of range", train, [*run("train.seed=99999999999"), "--dry-run"],
         "train.seed", t),
        # class 4: meaningless values accepted silently before
        ("train: min_lr_ratio above 1", train, run("train.schedule.min_lr_ratio=2"),
         "train.schedule.min_lr_ratio", t),
        ("train: model.ratio with model.pattern", train, run("model.ratio=3:1"), "give one of the two", t),
        ("compare without --labels: the committed labels are of another eval set", analysis,
         ["compare", "--a", a, "--b", b, "--out", str(t / "c")], "no --labels, so the committed", t),
        ("compare --alpha 2", analysis, ["compare", "--a", a, "--b", b, "--labels", str(made["labels"]),
                                         "--out", str(t / "c"), "--alpha", "2"], "strictly between 0 and 1", t),
        ("probes generate --docs-per-level 0", analysis,
         ["probes", "generate", "--preset", "tiny", "--docs-per-level", "0", "--out", str(t / "pg")],
         "must be positive", t),
        ("label --spacy-procs 0", analysis,
         ["label", "--eval", ev, "--out", str(t / "l.parquet"), "--spacy-procs", "0"], "must be positive", t),
        ("label --train-corpus missing", analysis,
         ["label", "--eval", ev, "--out", str(t / "l.parquet"), "--train-corpus", str(t / "nope")],
         "--train-corpus", t),
    ]


def test_every_ordinary_mistake_is_one_line_and_changes_nothing(corpus, made, tmp_path, capsys):  # noqa: F811
    for name, entry, argv, says, *watched in rows(corpus, made, tmp_path):
        t0 = time.perf_counter()
        err = refused(capsys, entry, argv, says, *watched)
        assert "Traceback" not in err and time.perf_counter() - t0 < 30, name
    assert not (tmp_path / "run").exists() and not (tmp_path / "s.npz").exists()


def test_ctrl_c_while_scoring_is_one_line_and_status_130(corpus, made, tmp_path, capsys, monkeypatch):  # noqa: F811
    from tokengap.analysis import score as score_module

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(score_module, "score", interrupted)
    out = tmp_path / "s.npz"
    capsys.readouterr()
    assert analysis(["score", "--model", str(made["model"]), "--eval", str(corpus), "--out", str(out),
                     "--device", "cpu"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "interrupted" in err and not out.exists()


@pytest.mark.parametrize("argv", [
    ["score", "--hf", "EleutherAI/pythia-70m", "--eval", "{ev}", "--out", "{t}/h.npz", "--device", "cpu"],
    ["pipeline", "--a", "hf:EleutherAI/pythia-70m", "--b", "{run}", "--eval", "{ev}", "--out", "{t}/p",
     "--device", "cpu"],
    ["words", "--a", "{a}", "--b", "{b}", "--eval", "{ev}", "--tokenizer-a", "EleutherAI/pythia-70m", "--out",
     "{t}/w"],
], ids=["score --hf", "pipeline hf:", "words --tokenizer-a"])
@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "unreachable"])
def test_a_hub_model_out_of_reach_is_one_line_within_seconds(corpus, made, tmp_path, capsys, monkeypatch,  # noqa: F811
                                                             argv, offline):
    """Offline (HF_HUB_OFFLINE=1), or the hub unreachable (this machine has no network; elsewhere the endpoint is
    pointed at a closed local port): one line naming the model and how to provide it, no retries."""
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        import huggingface_hub.constants as c
        monkeypatch.setattr(c, "ENDPOINT", "http://127.0.0.1:9")
    argv = [x.format(ev=corpus, t=tmp_path, run=made["run"], a=made["score"], b=made["other"]) for x in argv]
    t0 = time.perf_counter()
    err = refused(capsys, analysis, argv, "EleutherAI/pythia-70m", tmp_path)
    assert time.perf_counter() - t0 < 10 and "local folder" in err and "cache" in err


def test_a_context_above_the_trained_one_and_a_vocab_size_the_tokenizer_overrules_are_said(
        corpus, made, tmp_path, caplog):  # noqa: F811
    assert analysis(["score", "--model", str(made["model"]), "--eval", str(corpus), "--out", str(tmp_path / "s.npz"),
                     "--device", "cpu", "--context", "4096"]) == 0
    assert "--context 4096 is 128 x the context it was trained with (32)" in caplog.text
    assert train(overrides(corpus, tmp_path / "run", "train.max_tokens=512", "data.vocab_size=1000")) == 0
    assert "data.vocab_size=1000 is not the vocabulary" in caplog.text and "has 300 tokens" in caplog.text
