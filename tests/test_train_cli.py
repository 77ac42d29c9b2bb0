"""`python -m tokengap.train` as a user meets it: one-line errors (exit 2, no run directory made) for bad values, run
names that differ when the model differs, finished runs left alone, stale logs moved aside, --help and --dry-run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokengap.models.ours import make_ours
from tests.test_train import make_corpus, overrides
from tokengap.train.config import load_run_config
from tokengap.train.loop import Trainer, main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("cli_corpus"))


@pytest.mark.parametrize("extra,key,says", [
    (["train.optim.lr=-0.001"], "train.optim.lr", "must be positive"),
    (["train.batch_size=0"], "train.batch_size", "must be positive"),
    (["train.eval.filters=/nonexistent/filters.npz"], "train.eval.filters", "no such file"),
    (["model.pattern=[swa,attention]", "model.window=64"], "model.window", "longer than the context"),
    (["train.checkpoint.keep_last=-1"], "train.checkpoint.keep_last", ">= 0"),
    (["train.threads=0"], "train.threads", "must be positive"),
    (["model.vocab_size=5000"], "model.vocab_size", "leave it 0"),
    (["model.kernels=triton"], "model.kernels", "CUDA"),
    (["train.compile=maybe"], "train.compile", "Invalid value 'maybe'"),
])
def test_bad_values_fail_in_one_line_before_the_run_directory(corpus, tmp_path, capsys, extra, key, says):
    run = tmp_path / "run"
    rc = main(overrides(corpus, run, *extra))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and key in err and says in err, err
    assert not run.exists()


def test_default_run_names_differ_when_the_model_differs():
    base = load_run_config(["model=hybrid"])
    assert base.name == "hybrid-4x128-s0" and base.run_dir == "runs/hybrid-4x128-s0"
    assert load_run_config(["model=hybrid", "preset=small"]).name == "hybrid-8x512-s0"
    changed = load_run_config(["model=hybrid", "model.pattern=[mamba2,mamba2,attention]", "model.n_layers=6"])
    assert changed.name.startswith("hybrid-6x128-") and changed.name.endswith("-s0")
    window = load_run_config(["model=hybrid", "model.d_ff=64"])
    assert window.name != base.name and window.name.startswith("hybrid-4x128-")
    assert load_run_config(["model=hybrid", "model.mlp_ratio=2.75"]).name == base.name  # the config file's value
    assert load_run_config(["model=hybrid", "name=mine"]).run_dir == "runs/mine"
    assert load_run_config(["model=hybrid", "train.seed=3"]).name == "hybrid-4x128-s3"


def test_a_finished_run_is_left_alone(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(overrides(corpus, run)) == 0
    summary, metrics = (run / "summary.json").read_text(), (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(overrides(corpus, run)) == 0
    assert "finished at step" in capsys.readouterr().out
    assert (run / "summary.json").read_text() == summary and (run / "metrics.jsonl").read_text() == metrics


def test_stale_logs_of_a_run_without_checkpoints_are_moved_aside(corpus, tmp_path, capsys):
    run = make_ours(tmp_path / "run", "run")  # a run of ours, killed before its first checkpoint
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 9.9}\n')
    assert main(overrides(corpus, run, "train.checkpoint.interval=0")) == 0
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "train"]
    assert steps == sorted(set(steps)) and 9.9 not in [json.loads(x).get("loss") for x in
                                                       (run / "metrics.jsonl").read_text().splitlines()]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and "9.9" in (aside[0] / "metrics.jsonl").read_text()
    assert "moved them to" in capsys.readouterr().out


def test_help_and_dry_run(corpus, tmp_path, capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "config groups" in out and "model: " in out and "hybrid_gdn" in out and "train.optim.lr = 0.003" in out
    run = tmp_path / "dry"
    assert main(overrides(corpus, run, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "layers: 0:mamba2, 1:attention" in out and "non-embedding parameters" in out and not run.exists()


def test_redirected_logs_have_no_carriage_returns_and_print_each_evaluation(corpus, tmp_path, capfd):
    """With stderr not a terminal (a log file, CI), no progress bars; every evaluation is one console line."""
    cfg = load_run_config(overrides(corpus, tmp_path / "r", "train.progress=true", "train.eval.interval=4"))
    t = Trainer(cfg)
    assert t.progress is False  # pytest's captured stderr is not a tty
    t.run()
    out, err = capfd.readouterr()
    assert "\r" not in out + err
    assert out.count(" eval: all ") >= 2
