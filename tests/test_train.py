"""Training loop: schedule shape, exact resume (also after SIGKILL), atomic checkpoints, filtered eval losses
against a hand computation, anneal branches, refusals, NaN stop, and DDP(2, gloo) == one process."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tokengap.evaluation.evalset import EvalSet
from tokengap.models.config import ConfigError
from tokengap.train import checkpoint as ckpt
from tokengap.train.config import load_run_config
from tokengap.train.loop import NonFiniteLoss, Trainer
from tokengap.train.schedule import anneal_lr, lr_at

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the cat dog sat on a mat and ran to big red blue house tree river (x) [y] {z} def return if else "
         "she he it was were is are said".split())


# ---- a synthetic corpus in the built-corpus format (docs/formats.md) ------------------------------------
def make_corpus(root: Path, n_train: int = 60, n_eval: int = 12, vocab: int = 300) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = np.random.default_rng(0)
    text = lambda n: " ".join(rng.choice(WORDS, size=n))  # noqa: E731
    domains = ["books", "python"]
    train_docs = [{"id": f"t{i}", "domain": domains[i % 2], "source": "synthetic", "text": text(120)} for i in range(n_train)]
    eval_docs = [{"id": f"e{i}", "domain": domains[i % 2], "source": "synthetic", "text": text(40 + 15 * i)}
                 for i in range(n_eval)]
    d = root / "synthetic"
    (d / "docs").mkdir(parents=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([x["text"] for x in train_docs], trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(d / "tokenizer.json"))
    ids, starts = [], []
    for x in train_docs:
        starts.append(len(ids))
        ids += [0] + tok.encode(x["text"]).ids
    np.array(ids, dtype=np.uint16).tofile(d / "train.bin")
    np.save(d / "train_docs.npy", np.array(starts + [len(ids)], dtype=np.int64))
    import hashlib
    sha = hashlib.sha256((d / "tokenizer.json").read_bytes()).hexdigest()
    (d / "train.json").write_text(json.dumps({"dtype": "uint16", "n_tokens": len(ids), "n_docs": n_train,
                                              "vocab_size": tok.get_vocab_size(), "eot_id": 0, "tokenizer_sha256": sha}))
    for name, docs in (("train", train_docs), ("eval", eval_docs)):
        (d / "docs" / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in docs))
    (d / "manifest.json").write_text(json.dumps({"mix": "synthetic", "tokenizer_sha256": sha}))
    return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def overrides(corpus: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["model=hybrid", f"data.root={corpus.parent}", f"data.mix={corpus.name}", f"run_dir={run_dir}",
            "train.seq_len=32", "train.batch_size=4", "train.max_tokens=3072", "train.log_interval=1",
            "train.eval.interval=8", "train.checkpoint.interval=5", "train.progress=false", "train.tensorboard=false",
            "train.threads=1", "model.n_layers=2", "model.pattern=[mamba2,attention]", "model.d_model=64",
            "model.n_heads=2", "model.mamba.d_state=8", "model.mamba.headdim=16", "model.mamba.chunk_size=16",
            "train.eval.max_docs_per_domain=null", "train.eval.anneal_at=[]", *extra]


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in lines if r["kind"] == "train"]


# ---- schedule ----------------------------------------------------------------------------------------------
def test_wsd_and_cosine_schedule_shape():
    lrs = [lr_at(s, 100, 1.0, "wsd", warmup_steps=10, decay_steps=20, min_lr_ratio=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(lrs[:9], lrs[1:10]))  # linear warmup
    assert set(lrs[10:80]) == {1.0}  # stable
    assert all(b < a for a, b in zip(lrs[80:], lrs[81:])) and lrs[-1] == pytest.approx(0.1)  # decay to min
    cos = [lr_at(s, 100, 1.0, "cosine", warmup_steps=10) for s in range(100)]
    assert cos[9] == pytest.approx(1.0) and cos[55] == pytest.approx(0.5, abs=0.02) and cos[-1] < 0.01
    assert anneal_lr(0, 4, 1.0, 0.0) == pytest.approx(0.75) and anneal_lr(3, 4, 1.0, 0.0) == pytest.approx(0.0)
    assert anneal_lr(3, 4, 1.0, 0.0, "sqrt") == pytest.approx(0.0) and anneal_lr(0, 4, 1.0, 0.0, "sqrt") == pytest.approx(0.5)


# ---- exact resume --------------------------------------------------------------------------------------------
def test_resume_after_interruption_reproduces_the_loss_curve(corpus, tmp_path, monkeypatch):
    Trainer(load_run_config(overrides(corpus, tmp_path / "full"))).run()
    full = train_losses(tmp_path / "full")
    assert len(full) == 24

    real_step = Trainer.train_step

    def crash_at_13(self, step, lr):
        if step == 12:
            raise KeyboardInterrupt("simulated crash during step 13")
        return real_step(self, step, lr)

    monkeypatch.setattr(Trainer, "train_step", crash_at_13)
    with pytest.raises(KeyboardInterrupt):
        Trainer(load_run_config(overrides(corpus, tmp_path / "cut"))).run()
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "cut" / "checkpoints")] == [5, 10]
    t = Trainer(load_run_config(overrides(corpus, tmp_path / "cut")))
    assert t.step == 10
    t.run()
    assert train_losses(tmp_path / "cut") == full  # bit-exact, and no duplicated lines


def test_resume_after_sigkill_reproduces_the_loss_curve(corpus, tmp_path):
    """Kill -9 a training process at an arbitrary moment, rerun the same command, compare with a clean run."""
    base = overrides(corpus, tmp_path / "clean", "train.max_tokens=6144", "train.checkpoint.interval=3")
    cmd = lambda run_dir: [sys.executable, "-m", "tokengap.train", *[o if not o.startswith("run_dir=") else f"run_dir={run_dir}"  # noqa
                                                           for o in base]]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(cmd(tmp_path / "clean"), check=True, cwd=REPO, env=env, capture_output=True)
    proc = subprocess.Popen(cmd(tmp_path / "killed"), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    root = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and \
            max((s for s, _ in ckpt.list_checkpoints(root)), default=0) < 9:  # a few checkpoints in, mid-run
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max((s for s, _ in ckpt.list_checkpoints(root)), default=0)
    assert 0 < killed_at < 48, "the process should have been killed mid-run"
    subprocess.run(cmd(tmp_path / "killed"), check=True, cwd=REPO, env=env, capture_output=True)
    assert train_losses(tmp_path / "killed") == train_losses(tmp_path / "clean")


# ---- checkpoints ---------------------------------------------------------------------------------------------------
def test_crash_during_save_leaves_previous_checkpoint_loadable(corpus, tmp_path, monkeypatch):
    cfg = load_run_config(overrides(corpus, tmp_path / "r", "train.max_tokens=1280"))  # 10 steps
    Trainer(cfg).run()
    root = tmp_path / "r" / "checkpoints"
    before = ckpt.latest(root)
    ckpt.verify(before)

    def torn_save(obj, path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt.torch, "save", torn_save)
    t = Trainer(load_run_config(overrides(corpus, tmp_path / "r", "train.max_tokens=1280")))
    with pytest.raises(OSError):
        ckpt.save_checkpoint(root, 99, t.model, {"step": 99}, {})
    assert ckpt.latest(root) == before and ckpt.verify(before)["step"] == 10
    assert not (root / "step_000000099").exists() and not list(root.glob(".tmp-*"))  # nothing half-written left


def test_a_corrupt_checkpoint_is_skipped_and_none_verifying_is_refused(corpus, tmp_path, caplog):
    args = overrides(corpus, tmp_path / "r", "train.max_tokens=1280")
    Trainer(load_run_config(args)).run()
    root = tmp_path / "r" / "checkpoints"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [5, 10]
    with open(root / "step_000000010" / "train_state.pt", "ab") as f:
        f.write(b"x")
    assert Trainer(load_run_config(args)).step == 5  # the newest that verifies, the skipped one named with its reason
    assert "skipped" in caplog.text and "step_000000010/train_state.pt: sha256" in caplog.text
    with open(root / "step_000000005" / "train_state.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint under .* verifies: .*train_state.pt: sha256"):
        Trainer(load_run_config(args))  # never silently started over


def test_keep_last_and_milestones(corpus, tmp_path):
    Trainer(load_run_config(overrides(corpus, tmp_path / "r", "train.checkpoint.interval=2",
                                      "train.checkpoint.keep_last=2", "train.checkpoint.milestones=[0.25]"))).run()
    steps = [s for s, _ in ckpt.list_checkpoints(tmp_path / "r" / "checkpoints")]
    assert steps == [6, 20, 22, 24]  # milestone 0.25 * 24 = 6, the last two rolling, the final one (a milestone)


def test_different_config_is_refused_unless_new_run(corpus, tmp_path):
    Trainer(load_run_config(overrides(corpus, tmp_path / "r", "train.max_tokens=1280"))).run()
    with pytest.raises(ConfigError, match="model.d_model"):
        Trainer(load_run_config(overrides(corpus, tmp_path / "r", "train.max_tokens=1280", "model.d_model=128")))
    t = Trainer(load_run_config(overrides(corpus, tmp_path / "r", "train.max_tokens=1280", "model.d_model=128",
                                          "train.new_run=true")))
    assert t.step == 0 and not list(tmp_path.glob("r.old-*"))  # moved aside by run(), under the run's lock
    t.run()
    aside = list(tmp_path.glob("r.old-*"))
    assert len(aside) == 1 and (aside[0] / "summary.json").is_file()  # the old run was moved aside, not deleted
    assert json.loads((tmp_path / "r" / "run.json").read_text())["config"]["model"]["d_model"] == 128


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(corpus, tmp_path, monkeypatch):
    # no CUDA graph: it would capture the poisoned forward's Python condition once, at step 0
    t = Trainer(load_run_config(overrides(corpus, tmp_path / "r", "train.cuda_graph=false")))
    real_forward = type(t.model).forward

    def poisoned(self, ids, targets=None):
        out = real_forward(self, ids, targets)
        return out * float("nan") if targets is not None and t.step >= 7 else out

    monkeypatch.setattr(type(t.model), "forward", poisoned)
    with pytest.raises(NonFiniteLoss, match="step 8.*step_000000005"):
        t.run()
    assert ckpt.latest(tmp_path / "r" / "checkpoints").name == "step_000000005"


def test_bad_keys_fail_before_compute(corpus, tmp_path):
    with pytest.raises(ConfigError, match="train.optim.learning_rate"):
        load_run_config(overrides(corpus, tmp_path / "r", "train.optim.learning_rate=1"))
    with pytest.raises(ConfigError, match="train.micro_batch_size"):
        Trainer(load_run_config(overrides(corpus, tmp_path / "r", "train.batch_size=3", "train.micro_batch_size=2")))
    with pytest.raises(ConfigError, match="anneal_at"):
        Trainer(load_run_config(overrides(corpus, tmp_path / "r", "train.eval.anneal_at=[0.95]")))


# ---- evaluation ---------------------------------------------------------------------------------------------------
def _hand_losses(model, ev: EvalSet, T: int) -> np.ndarray:
    """Each document split into windows of T tokens, the first one starting at EOT (docs/formats.md)."""
    losses = []
    with torch.no_grad():
        for i in range(len(ev.docs)):
            toks = torch.tensor(ev.doc_tokens(i), dtype=torch.long)
            seq = torch.cat([torch.tensor([0]), toks])
            for k in range(0, len(toks), T):
                n = min(T, len(toks) - k)
                losses.append(F.cross_entropy(model(seq[k:k + n][None])[0], toks[k:k + n], reduction="none"))
    return torch.cat(losses).numpy()


@pytest.mark.parametrize("max_docs", [None, 1])
def test_filtered_eval_losses_match_hand_computation(corpus, tmp_path, max_docs):
    ev = EvalSet.from_corpus(corpus)
    rng = np.random.default_rng(1)
    masks = {"odd_tokens": ev.tokens % 2 == 1, "random": rng.random(ev.n_tokens) < 0.3,
             "empty": np.zeros(ev.n_tokens, dtype=bool)}
    np.savez(tmp_path / "filters.npz", eval_hash=np.str_(ev.eval_hash), **masks)
    t = Trainer(load_run_config(overrides(corpus, tmp_path / "r", f"train.eval.filters={tmp_path / 'filters.npz'}",
                                          f"train.eval.max_docs_per_domain={max_docs or 'null'}")))
    got = t.evaluator(t.model)
    keep = np.arange(ev.n_tokens)
    if max_docs:  # the first document of each domain: masks are cut to the kept tokens
        ev, keep = ev.subset(max_docs)
        assert [d["id"] for d in ev.docs] == ["e0", "e1"]
    losses = _hand_losses(t.model, ev, 32)
    assert got["eval/all"] == pytest.approx(losses.mean(), rel=1e-5)
    for name, m in masks.items():
        m = m[keep]
        want = losses[m].mean() if m.any() else float("nan")
        assert (math.isnan(want) and math.isnan(got[f"eval/filter/{name}"])) or \
            got[f"eval/filter/{name}"] == pytest.approx(want, rel=1e-5)
    doms = ev.domains()
    assert got["eval/domain/python"] == pytest.approx(losses[doms == "python"].mean(), rel=1e-5)


def test_filters_for_another_eval_set_are_refused(corpus, tmp_path):
    ev = EvalSet.from_corpus(corpus)
    np.savez(tmp_path / "f.npz", eval_hash=np.str_("0" * 64), all=np.ones(ev.n_tokens, dtype=bool))
    with pytest.raises(ConfigError, match="train.eval.filters"):
        Trainer(load_run_config(overrides(corpus, tmp_path / "r", f"train.eval.filters={tmp_path / 'f.npz'}")))


def test_anneal_branch_is_evaluated_and_does_not_change_the_stable_run(corpus, tmp_path):
    Trainer(load_run_config(overrides(corpus, tmp_path / "plain"))).run()
    Trainer(load_run_config(overrides(corpus, tmp_path / "ann", "train.eval.anneal_at=[0.25,0.5]",
                                      "train.eval.anneal_frac=0.125"))).run()
    assert train_losses(tmp_path / "ann") == train_losses(tmp_path / "plain")
    evals = [json.loads(x) for x in (tmp_path / "ann" / "metrics.jsonl").read_text().splitlines()]
    annealed = [r for r in evals if r["kind"] == "eval" and r["annealed"]]
    assert [(r["step"], r.get("branch_steps")) for r in annealed] == [(6, 3), (12, 3), (24, None)]
    plain = {r["step"]: r["eval/all"] for r in evals if r["kind"] == "eval" and not r["annealed"]}
    assert 0 in plain and 8 in plain and 16 in plain
    # per-token losses at every annealed point (the two branches and the final decay), read back
    from tokengap.evaluation.scorefile import Scores, check_comparable, load_scores
    files = sorted((tmp_path / "ann" / "scores").glob("annealed-step*.npz"))
    assert [f.name for f in files] == ["annealed-step0000006.npz", "annealed-step0000012.npz", "annealed-step0000024.npz"]
    for f, r in zip(files, annealed):
        s = load_scores(f)
        assert s.meta["step"] == r["step"] and s.meta["annealed"] and s.meta["context_len"] == 32
        assert float(s.loss.astype(np.float64).mean()) == pytest.approx(r["eval/all"], abs=1e-4)  # the 16-bit code
    a, b = load_scores(files[0]), load_scores(files[-1])
    check_comparable(a, b)
    other = Scores(b.loss, b.correct, {**b.meta, "eval_hash": "0" * 64, "eval_tokens_sha256": "1" * 64})
    with pytest.raises(ValueError, match="eval_hash"):
        check_comparable(a, other)


# ---- data parallel --------------------------------------------------------------------------------------------------
def test_ddp_two_gloo_processes_match_one_process(corpus, tmp_path):
    args = overrides(corpus, tmp_path / "one", "train.max_tokens=1536", "train.eval.interval=0")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "tokengap.train", *args], check=True, cwd=REPO, env=env, capture_output=True)
    two = [a if not a.startswith("run_dir=") else f"run_dir={tmp_path / 'two'}" for a in args]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "tokengap.train", *two], cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    one, ddp = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert [s for s, _ in one] == [s for s, _ in ddp] == list(range(1, 13))
    np.testing.assert_allclose([x for _, x in ddp], [x for _, x in one], rtol=1e-5)


def test_checkpoints_resume_across_world_sizes(corpus, tmp_path):
    """A run killed after its first checkpoints resumes with another number of processes (2 gloo -> 1 and
    1 -> 2 gloo) and finishes on the uninterrupted one-process loss curve (DDP: the same global batch, split)."""
    args = overrides(corpus, tmp_path / "one", "train.max_tokens=1536", "train.eval.interval=0",
                     "train.checkpoint.interval=3")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    at = lambda d: [a if not a.startswith("run_dir=") else f"run_dir={d}" for a in args]  # noqa: E731
    one_proc = lambda d: [sys.executable, "-m", "tokengap.train", *at(d)]  # noqa: E731
    two_procs = lambda d: [sys.executable, "-m", "torch.distributed.run", "--standalone",  # noqa: E731
                           "--nproc_per_node=2", "-m", "tokengap.train", *at(d)]
    subprocess.run(one_proc(tmp_path / "one"), check=True, cwd=REPO, env=env, capture_output=True)
    full = train_losses(tmp_path / "one")
    for name, first, then in (("2to1", two_procs, one_proc), ("1to2", one_proc, two_procs)):
        d = tmp_path / name
        proc = subprocess.Popen(first(d), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and \
                max((s for s, _ in ckpt.list_checkpoints(d / "checkpoints")), default=0) < 3:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = max((s for s, _ in ckpt.list_checkpoints(d / "checkpoints")), default=0)
        assert 3 <= killed_at < 12, f"{name}: should have been killed mid-run (at {killed_at})"
        res = subprocess.run(then(d), cwd=REPO, env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        got = train_losses(d)
        assert [s for s, _ in got] == list(range(1, 13)), name
        np.testing.assert_allclose([x for _, x in got], [x for _, x in full], rtol=1e-5, err_msg=name)
