"""Nothing lost, nothing silently wrong (issue 28, classes 1 and 2), through the real entry points (`python -m
tokengap.train`, `python -m tokengap.analysis`, `python -m tokengap.train.data` as main(argv)): a table of commands
pointed at what is not theirs (a folder of the user's files, a clone, the committed results/, a file of another kind or
model, a run another process trains), each refused in one line with exit status 2 and every watched file unchanged by
hash; a table of damage that leaves the checkpoints intact (a torn or garbage metrics.jsonl line, a checkpoint's
meta.json unreadable or missing), each resumed onto the uninterrupted loss curve; and the start-up checks of the run
directory."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tokengap.analysis.__main__ import main as analysis
from tokengap.models.ours import LOCK, MARKER, RESULTS, hold_lock, kind_of, make_ours
from tests.test_train import make_corpus, overrides, train_losses
from tokengap.train import checkpoint as ckpt
from tokengap.train.config import load_run_config
from tokengap.train.data.__main__ import main as data
from tokengap.train.loop import Trainer
from tokengap.train.loop import main as train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("lost_corpus"))


@pytest.fixture(scope="module")
def made(corpus, tmp_path_factory) -> dict:
    """A finished tiny run, two score files of it under two names, the eval set's labels, a corpus archive."""
    d = tmp_path_factory.mktemp("made")
    run = d / "run"
    Trainer(load_run_config(overrides(corpus, run, "name=tiny"))).run()
    model = run / "model"
    for name in ("tiny", "other"):
        assert analysis(["score", "--model", str(model), "--eval", str(corpus), "--out", str(d / f"{name}.npz"),
                         "--name", name, "--device", "cpu"]) == 0
    assert analysis(["label", "--eval", str(corpus), "--context", "32", "--out", str(d / "labels.parquet")]) == 0
    cmp = d / "cmp"
    assert analysis(["compare", "--a", str(d / "tiny.npz"), "--b", str(d / "other.npz"), "--labels",
                     str(d / "labels.parquet"), "--out", str(cmp), "--n-boot", "20"]) == 0
    # `pack` checks the files against the manifest's hashes and `unpack` reads its seed: a built corpus's have them
    (corpus / "manifest.json").write_text(json.dumps({**json.loads((corpus / "manifest.json").read_text()), "files": {
        rel: {"sha256": ckpt.sha256_file(corpus / rel)} for rel in
        ("tokenizer.json", "docs/train.jsonl", "docs/eval.jsonl", "train.bin", "train.json", "train_docs.npy")},
        "config": {"seed": 0}}))
    assert data(["pack", "--root", str(corpus.parent), "--mix", corpus.name, "--out", str(d / "corpus.tar.xz")]) == 0
    return {"run": run, "model": model, "score": d / "tiny.npz", "other": d / "other.npz",
            "labels": d / "labels.parquet", "cmp": cmp, "archive": d / "corpus.tar.xz"}


def user_files(folder: Path) -> Path:
    """A folder of someone's files (a clone: .git included)."""
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / "notes.md").write_text("my notes\n")
    (folder / "data.csv").write_text("a,b\n1,2\n")
    return folder


def hashes(*paths: Path) -> dict:
    """{path: sha256} of every file under `paths`, and the names beside each (a `<folder>.old-*` would show)."""
    out = {}
    for p in paths:
        if p.parent.is_dir():
            out[f"{p.parent} listing"] = sorted(x.name for x in p.parent.iterdir())
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []
        out.update({str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files})
    return out


def refused(capsys, entry, argv, says: str, *watched: Path) -> str:
    """Run `entry(argv)`: exit status 2, one line naming `says`, every watched file unchanged."""
    before = hashes(*watched)
    capsys.readouterr()
    try:
        rc = entry(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, (argv, rc, err)
    assert err.startswith("error: ") and err.count("\n") == 0 and says in err, err
    assert hashes(*watched) == before, "a refused command moved, wrote or changed files"
    return err


# ---- class 1: never move, delete or overwrite what is not ours -------------------------------------------------
def class1_rows(corpus: Path, made: dict, t: Path) -> list[tuple]:
    """(id, entry point, argv, what the one line says, paths that must stay as they are)."""
    mine = user_files(t / "mine")
    text = t / "notes.txt"
    text.write_text("not a score file\n")
    (t / "gaps_dir").mkdir()
    (t / "gaps_dir" / "gaps.csv").write_text("my,own,table\n")
    root = t / "root"
    user_files(root / corpus.name)  # where `unpack` and `subset` would put a corpus
    user_files(root / "tiny")  # where `build --mix tiny` would
    user_files(root / "sub")
    locked = make_ours(t / "locked", "run")  # a run of ours that another training holds (the test's lock)
    m, ev = str(made["model"]), str(corpus)
    run = lambda d, *x: overrides(corpus, d, *x)  # noqa: E731
    return [
        ("train: a folder of the user's files", train, run(mine), "not a tokengap run directory", mine),
        ("train: the same with train.new_run=true", train, run(mine, "train.new_run=true"),
         "not a tokengap run directory", mine),
        ("train: a file as run_dir", train, run(text), "not a folder", text),
        ("train: inside the committed results/", train, run(RESULTS / "runs" / "mine"), "committed results/", RESULTS),
        ("train: a run another process trains", train, run(locked), "another training (pid", locked),
        ("data subset: --out-mix a folder of the user's files", data,
         ["subset", "--root", str(corpus.parent), "--mix", corpus.name, "--tokens", "100", "--out-mix",
          str(root / "sub")], "not a tokengap corpus", root / "sub"),
        ("data unpack: the archive's mix is a folder of the user's files", data,
         ["unpack", str(made["archive"]), "--root", str(root), "--workers", "1"], "not a tokengap corpus",
         root / corpus.name),
        ("data build: <root>/<mix> is a folder of the user's files", data,
         ["build", "--mix", "tiny", "--root", str(root), "--cache", str(t / "cache")], "not a tokengap corpus",
         root / "tiny"),
        ("data prepare-hf: --out a folder of the user's files", data,
         ["prepare-hf", "json", "--data-files", str(text), "--out", str(mine)], "not a tokengap corpus", mine),
        ("data pack: --out a file of another kind", data,
         ["pack", "--root", str(corpus.parent), "--mix", corpus.name, "--out", str(text)], "not a corpus archive",
         text),
        ("score: --out in the committed results/", analysis,
         ["score", "--model", m, "--eval", ev, "--out", str(RESULTS / "scores" / "tiny-s0.npz"), "--device", "cpu"],
         "committed results/", RESULTS),
        ("score: --out a file of another kind", analysis,
         ["score", "--model", m, "--eval", ev, "--out", str(text), "--device", "cpu"], "is not a score file", text),
        ("score: --out the score file of another model", analysis,
         ["score", "--model", m, "--eval", ev, "--out", str(made["other"]), "--device", "cpu"],
         "holds a score file of other, not of tiny", made["other"]),
        ("score: --out a directory", analysis,
         ["score", "--model", m, "--eval", ev, "--out", str(mine), "--device", "cpu"], "a directory", mine),
        ("compare: --out in the committed results/", analysis,
         ["compare", "--a", str(made["score"]), "--b", str(made["other"]), "--labels", str(made["labels"]),
          "--out", str(RESULTS / "runs" / "hybrid-s0")], "committed results/", RESULTS),
        ("compare: --out holding a user's gaps.csv", analysis,
         ["compare", "--a", str(made["score"]), "--b", str(made["other"]), "--labels", str(made["labels"]),
          "--out", str(t / "gaps_dir")], "is not a compare table", t / "gaps_dir"),
        ("compare: --out holding the tables of another pair", analysis,
         ["compare", "--a", str(made["other"]), "--b", str(made["score"]), "--labels", str(made["labels"]),
          "--out", str(made["cmp"])], "holds a compare table of tiny vs other, not of other vs tiny", made["cmp"]),
        ("words: --out in the committed results/", analysis,
         ["words", "--a", str(made["score"]), "--b", str(made["other"]), "--eval", ev, "--out",
          str(RESULTS / "words")], "committed results/", RESULTS),
        ("label: --out in the committed results/", analysis,
         ["label", "--eval", ev, "--context", "32", "--out", str(RESULTS / "labels.parquet")], "committed results/",
         RESULTS),
        ("label: --out a file of another kind", analysis,
         ["label", "--eval", ev, "--context", "32", "--out", str(text), "--filters", ""], "is not labels", text),
        ("probes generate: --out in the committed results/", analysis,
         ["probes", "generate", "--preset", "tiny", "--out", str(RESULTS / "probes")], "committed results/",
         RESULTS),
        ("probes score: --out in the committed results/", analysis,
         ["probes", "score", "--model", m, "--tokenizer", str(corpus / "tokenizer.json"), "--probes",
          str(t / "probes"), "--out", str(RESULTS / "probes" / "tiny-s0.npz")], "committed results/", RESULTS),
        ("probes shortcuts: --out in the committed results/", analysis,
         ["probes", "shortcuts", "--probes", str(t / "probes"), "--out", str(RESULTS / "probes" / "shortcuts.npz")],
         "committed results/", RESULTS),
        ("probes planted-score: --out an eval score file (another kind)", analysis,
         ["probes", "planted-score", "--model", m, "--planted", str(t / "planted.npz"), "--out", str(made["score"])],
         "is not planted-repeat results", made["score"]),
    ]


def test_what_is_not_ours_is_refused_in_one_line_and_left_as_it_was(corpus, made, tmp_path, capsys):
    rows = class1_rows(corpus, made, tmp_path)
    holder = hold_lock(tmp_path / "locked")
    try:
        for name, entry, argv, says, *watched in rows:
            err = refused(capsys, entry, argv, says, *watched)
            assert "Traceback" not in err, name
    finally:
        holder.close()
    assert not list(tmp_path.glob("*.old-*")) and not list((tmp_path / "root").glob("*.old*"))


def test_ours_is_still_written_where_it_is_ours(corpus, made, tmp_path, capsys):
    """The controls of the table: an empty folder becomes a run (the marker its first file); a score file is
    rewritten by the model it holds, another kind only with --overwrite; compare rewrites its own tables."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(overrides(corpus, empty, "train.max_tokens=512")) == 0
    assert kind_of(empty) == "run" and (empty / MARKER).is_file() and (empty / LOCK).is_file()
    own = tmp_path / "tiny.npz"
    shutil.copyfile(made["score"], own)
    args = ["score", "--model", str(made["model"]), "--eval", str(corpus), "--device", "cpu"]
    assert analysis([*args, "--name", "tiny", "--out", str(own)]) == 0
    text = tmp_path / "notes.txt"
    text.write_text("replace me\n")
    assert analysis([*args, "--out", str(text), "--overwrite"]) == 0 and text.read_bytes()[:2] == b"PK"
    assert analysis(["compare", "--a", str(made["score"]), "--b", str(made["other"]), "--labels",
                     str(made["labels"]), "--out", str(made["cmp"]), "--n-boot", "20"]) == 0


def test_a_second_training_is_refused_while_the_first_runs_and_a_killed_ones_lock_is_not_stale(corpus, tmp_path,
                                                                                             capsys):
    """Two processes, one run directory: the second is refused naming the first's pid while the first runs; after
    a kill -9 of the first (its lock file still there), the same command resumes: the kernel dropped the lock."""
    run = tmp_path / "run"
    args = overrides(corpus, run, "train.max_tokens=51200", "train.checkpoint.interval=10", "train.eval.interval=0")
    proc = subprocess.Popen([sys.executable, "-m", "tokengap.train", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not ckpt.list_checkpoints(run / "checkpoints"):
            time.sleep(0.02)
        assert proc.poll() is None, "the first training should still be running"
        err = refused(capsys, train, args, f"another training (pid {proc.pid})", run / "run.json")
        assert str(run) in err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (run / LOCK).read_text().strip() == str(proc.pid)
    assert train(args) == 0 and "resuming at step" in capsys.readouterr().out
    assert [s for s, _ in train_losses(run)] == list(range(1, 401))


# ---- class 2: resume past damage that leaves the checkpoints intact ---------------------------------------------
def tear_last_line(run: Path) -> None:
    text = (run / "metrics.jsonl").read_bytes()
    (run / "metrics.jsonl").write_bytes(text[:-25])


def garbage_line(run: Path) -> None:
    lines = (run / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (run / "metrics.jsonl").write_bytes(b"".join(lines[:3] + [b"\x00\xff garbage {\n", b"[1, 2]\n"] + lines[3:]))


def bad_meta(run: Path) -> None:
    (run / "checkpoints" / "step_000000010" / "meta.json").write_text('{"step": 10, "sha2')


def no_meta(run: Path) -> None:
    (run / "checkpoints" / "step_000000010" / "meta.json").unlink()


@pytest.fixture(scope="module")
def clean(corpus, tmp_path_factory) -> list:
    run = tmp_path_factory.mktemp("clean") / "run"
    assert train(overrides(corpus, run)) == 0
    return train_losses(run)


def cut_at_step_12(corpus: Path, run: Path, monkeypatch) -> None:
    """A run killed during step 13: checkpoints at 5 and 10, metrics.jsonl up to step 12."""
    real = Trainer.train_step

    def crash(self, step, lr):
        if step == 12:
            raise KeyboardInterrupt("simulated kill")
        return real(self, step, lr)
    monkeypatch.setattr(Trainer, "train_step", crash)
    assert train(overrides(corpus, run)) == 130  # Ctrl-C: one line, exit status 130
    monkeypatch.setattr(Trainer, "train_step", real)
    assert [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")] == [5, 10]


@pytest.mark.parametrize("damage,resumes_at,says", [
    (tear_last_line, 10, "dropped 1 damaged line"),
    (garbage_line, 10, "dropped 2 damaged line"),
    (bad_meta, 5, "skipped {run}/checkpoints/step_000000010/meta.json: unreadable (JSONDecodeError"),
    (no_meta, 5, "skipped {run}/checkpoints/step_000000010: no meta.json"),
], ids=["torn last line", "garbage lines", "meta.json invalid", "meta.json missing"])
def test_resume_past_damage_reproduces_the_uninterrupted_run(corpus, clean, tmp_path, capsys, caplog, monkeypatch,
                                                           damage, resumes_at, says):
    run = tmp_path / "run"
    cut_at_step_12(corpus, run, monkeypatch)
    damage(run)
    capsys.readouterr()
    assert train(overrides(corpus, run)) == 0
    out, err = capsys.readouterr()
    assert says.format(run=run) in caplog.text and f"resuming at step {resumes_at}" in out, caplog.text
    assert "Traceback" not in err
    assert train_losses(run) == clean  # bit-exact, the damaged tail gone and no line twice
    assert not list((run / "checkpoints").glob(".tmp-*"))


def test_no_checkpoint_that_verifies_is_refused_and_the_run_left_as_it_was(corpus, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    cut_at_step_12(corpus, run, monkeypatch)
    bad_meta(run)
    (run / "checkpoints" / "step_000000005" / "meta.json").unlink()
    err = refused(capsys, train, overrides(corpus, run), "no checkpoint under", run)
    assert "step_000000010/meta.json: unreadable" in err and "step_000000005: no meta.json" in err


def test_start_up_checks_the_run_directory_before_training(corpus, tmp_path, capsys, monkeypatch):
    """A disk without room for one checkpoint, or a run_dir under a file, fails in one line before the run
    directory exists; the estimate is 12 bytes a parameter (weights and AdamW's two moments)."""
    import tokengap.train.loop as loop

    run = tmp_path / "run"
    real = shutil.disk_usage
    monkeypatch.setattr(loop.shutil, "disk_usage", lambda p: real(p)._replace(free=1 << 20))
    err = refused(capsys, train, overrides(corpus, run), "MiB free on its file system", tmp_path)
    assert "needs about 2 MiB" in err and not run.exists()  # 155,816 parameters x 12 bytes
    monkeypatch.setattr(loop.shutil, "disk_usage", real)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    refused(capsys, train, overrides(corpus, blocker / "run"), "is not a writable folder", blocker)


def test_a_failed_checkpoint_write_leaves_no_temp_directory(corpus, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real = ckpt.torch.save

    def full_disk(obj, path, *a, **k):
        if obj.get("step") == 10:
            Path(path).write_bytes(b"partial")
            raise OSError(28, "No space left on device")
        return real(obj, path, *a, **k)
    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        Trainer(load_run_config(overrides(corpus, run))).run()
    root = run / "checkpoints"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [5] and not list(root.glob(".tmp-*"))
    assert ckpt.verify(root / "step_000000005")["step"] == 5


def test_figures_and_sweep_write_outside_results_only_into_a_figure_folder_of_ours(synthetic_results, tmp_path):
    """figures and sweep write files of fixed names: outside their --results folder only into a new, empty or
    earlier figure folder of ours, and over a report of ours; a user's folder or page is refused in one line and
    left as it was, unless --overwrite."""
    res = synthetic_results(seeds=(0, 1), n_docs_per_domain=6, units=6)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "gap_by_domain.png").write_bytes(b"my own picture")
    page = tmp_path / "page.html"
    page.write_text("<html>my page</html>")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (user / "gap_by_domain.png", page)}
    quick = ["--n-boot", "20"]
    for argv in (["figures", "--results", str(res), "--out", str(user), *quick],
                 ["figures", "--results", str(res), "--out", str(tmp_path / "new"), "--report", str(page), *quick],
                 ["sweep", "--results", str(res), "--out", str(user), *quick]):
        assert analysis(argv) == 2, argv
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before} == before
    fresh = tmp_path / "figs"
    argv = ["figures", "--results", str(res), "--out", str(fresh), "--report", str(tmp_path / "r.html"), *quick]
    assert analysis(argv) == 0 and kind_of(fresh) == "figures" and (fresh / "gap_by_domain.png").is_file()
    assert analysis(argv) == 0  # its own folder and report again
    assert analysis(["figures", "--results", str(res), "--out", str(user), "--overwrite", *quick]) == 0
