"""Probe scoring, first-token rule, chance levels, compare and figures (CPU, no corpus needed).

A scorer is any callable (inputs (b, l), targets (b, l) with -100 = ignore, chunk_tokens) -> (loss, correct);
the fake scorers below make the expected numbers exact. The byte-level BPE is trained here on a few KB.
"""
from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tokengap.evaluation.evalset import TextTokenizer
from tokengap.analysis.probes.compare import compare
from tokengap.analysis.probes.figures import make_figures
from tokengap.analysis.probes.probeset import ProbeSet, generate_probe_set
from tokengap.analysis.probes.scoring import ARRAYS, load_results, save_results, score_probe_set

GENERIC = ("The history of the city begins with a small village by the river. People came to trade fish, salt "
           "and wood, and the market grew into a town with a wall, a church and a school. ") * 8


# ---- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("probes")
    generate_probe_set(d, seed=0, preset="tiny", docs_per_level=24)
    return d


@pytest.fixture(scope="module")
def probes(probe_dir) -> ProbeSet:
    return ProbeSet.load(probe_dir)


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory, probes):
    """A small byte-level BPE (vocab 400) trained on ~8 KB: frequent pieces merge, rare words split."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    text = GENERIC + "\n".join(d["text"] for d in probes.docs[::24])[:6000]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def tokenizer(tok_path) -> TextTokenizer:
    return TextTokenizer.from_file(tok_path)


def first_id(tokenizer, prev: str, word: str) -> int:
    """Id of the first token reaching into `word` when it follows the character `prev`."""
    ids, offs = tokenizer.encode([prev + word])[0]
    return next(i for i, (s, e) in zip(ids, offs) if e > len(prev))


def vocab(tokenizer) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(tokenizer.name).get_vocab_size()


# ---- fake scorers -----------------------------------------------------------------------------------------------
def logits_scorer(make_logits):
    def scorer(inputs, targets, chunk_tokens):
        logits = make_logits(inputs, targets)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none")
        return loss.view_as(targets), logits.argmax(-1) == targets
    return scorer


def oracle(V):
    """All probability on the true next token."""
    def make(inputs, targets):
        logits = torch.full((*targets.shape, V), -1e4)
        return logits.scatter(-1, targets.clamp(min=0).unsqueeze(-1), 0.0)
    return logits_scorer(make)


def copy_input(inputs, targets, chunk_tokens):
    """A misaligned oracle (certain of the token it was given): what an off-by-one in windowing would give."""
    hit = inputs == targets
    return torch.where(hit, 0.0, 1e4), hit


def unigram(ids):
    """A fixed distribution, uniform over `ids` (arg-max: the first of them), the same at every position;
    written without the (b, l, vocab) logits: loss log K on the ids, +inf (here 1e4) elsewhere."""
    ids = torch.tensor(sorted(ids))

    def scorer(inputs, targets, chunk_tokens):
        inside = torch.isin(targets, ids)
        return torch.where(inside, math.log(len(ids)), 1e4), targets == ids[0]
    return scorer


@pytest.fixture(scope="module")
def oracle_arrays(probes, tokenizer):
    return score_probe_set(oracle(vocab(tokenizer)), probes, tokenizer, context_len=1024)


# ---- target -> token mapping --------------------------------------------------------------------------------------
def test_first_token_rule_on_a_word_the_tokenizer_splits(tokenizer):
    """A target that spans several tokens is scored on its first token, and only on it."""
    word = "Zyzzogetonx"
    text = f"Oslo goes with {word}. Lima goes with pen.\nOslo goes with {word}."
    char = text.rindex(word)
    ps = ProbeSet([{"id": "d0", "domain": "probe", "source": "recall", "text": text}],
                  [{"doc": "d0", "probe": "recall", "kind": "value", "char": char, "answer": word,
                    "candidates": [word, "pen"], "n_pairs": 2, "baselines": {}}],
                  {"preset": "test", "seed": 0, "probes": {"recall": {"axis": "n_pairs"}}}, "h")

    def next_id(inputs, targets, chunk_tokens):  # "loss" = id of the token being predicted
        return targets.float(), torch.zeros_like(targets, dtype=torch.bool)

    arrays, meta = score_probe_set(next_id, ps, tokenizer, context_len=64)
    ids, offs = tokenizer.encode([text])[0]
    pieces = [i for i, (s, e) in enumerate(offs) if e > char and s < char + len(word)]
    assert len(pieces) > 1 and arrays["n_pieces"][0] == len(pieces)
    assert arrays["loss"][0] == ids[pieces[0]] == arrays["token"][0]
    first = text[offs[pieces[0]][0]:offs[pieces[0]][1]]
    assert arrays["piece"][0] == first and word.startswith(first.lstrip()) and first.lstrip() != word


def test_every_target_maps_to_the_token_holding_its_first_character(probes, oracle_arrays):
    arrays, meta = oracle_arrays
    text = {i: d["text"] for i, d in enumerate(probes.docs)}
    for t, piece, n in zip(probes.targets, arrays["piece"], arrays["n_pieces"]):
        assert t["answer"].startswith(piece.lstrip()) and piece.lstrip(), (t["answer"], piece)
        assert (n == 1) == (piece.lstrip() == t["answer"])
    assert (arrays["n_pieces"] > 1).any() and (arrays["n_pieces"] == 1).any()
    assert meta["first_token_agreement"] == 1.0  # candidates tokenized alone start like they do in context
    assert len(text) == meta["n_docs"]


def test_documents_longer_than_the_context_are_refused(probes, tokenizer):
    with pytest.raises(ValueError, match="longer than the context"):
        score_probe_set(oracle(vocab(tokenizer)), probes, tokenizer, context_len=16)


# ---- oracle and unigram sanity checks ----------------------------------------------------------------------------
def test_oracle_gets_zero_loss_and_full_accuracy_misaligned_oracle_does_not(probes, tokenizer, oracle_arrays):
    arrays, _ = oracle_arrays
    assert np.all(arrays["loss"] == 0.0) and arrays["correct"].all()
    shifted, _ = score_probe_set(copy_input, probes, tokenizer, context_len=1024)
    assert shifted["correct"].mean() < 0.1 and (shifted["loss"] > 0).mean() > 0.9  # right only on repeats: ") )"


@pytest.mark.parametrize("probe,kind", [("pronoun", "pronoun"), ("entity", "box"), ("brackets", "delim")])
def test_unigram_scorer_is_at_chance(probes, tokenizer, probe, kind):
    """Uniform over the K candidate first tokens: loss log K, accuracy 1/K up to sampling error (answers are
    drawn uniformly, so 4 binomial standard errors bound a correct generator's deviation almost surely)."""
    t = next(t for t in probes.targets if t["probe"] == probe and t["kind"] == kind)
    text = next(d["text"] for d in probes.docs if d["id"] == t["doc"])
    prev = text[t["char"] - 1]
    ids = sorted({first_id(tokenizer, prev, c) for c in t["candidates"]})
    assert len(ids) == len(t["candidates"]), "the candidates start with distinct tokens"
    arrays, _ = score_probe_set(unigram(ids), probes, tokenizer, context_len=1024)
    m = (arrays["probe"] == probe) & (arrays["kind"] == kind)
    k, n = len(ids), int(m.sum())
    assert np.allclose(arrays["loss"][m], math.log(k), atol=1e-5)
    acc = arrays["correct"][m].mean()
    assert abs(acc - 1 / k) < 4 * math.sqrt((1 / k) * (1 - 1 / k) / n), (n, acc)
    assert np.allclose(arrays["chance_token"][m], 1 / k)


# ---- compare ---------------------------------------------------------------------------------------------------
def fake_results(tmp_path, arch, seed, planted, n_docs=80, per_doc=12):
    """Two levels of one probe; B's loss is lower by `planted` on level 2 only; seed noise on top."""
    rng = np.random.default_rng([seed, zlib.crc32(arch.encode())])  # not hash(): it is randomised per process
    base = np.random.default_rng(7)  # the same "difficulty" of every target for every model
    n = n_docs * per_doc
    doc = np.repeat(np.arange(n_docs), per_doc).astype(np.int32)
    level = np.where(doc < n_docs // 2, 1, 2).astype(np.int32)
    loss = base.gamma(2.0, 1.0, n) + rng.normal(0, 0.5, n) + rng.normal(0, 0.02)
    loss = (loss - planted * (level == 2)).astype(np.float32)
    correct = rng.random(n) < np.where(level == 2, 0.3 + planted, 0.3)
    arrays = {"loss": loss, "correct": correct, "token": np.zeros(n, np.int64), "n_pieces": np.ones(n, np.int16),
              "first_shared": np.zeros(n, bool), "chance": np.full(n, 0.5, np.float32),
              "chance_token": np.full(n, 0.5, np.float32), "doc": doc, "level": level,
              "probe": np.array(["pronoun"] * n), "kind": np.array(["pronoun"] * n), "answer": np.array(["she"] * n),
              "piece": np.array([" she"] * n)}
    meta = {"probe_set_hash": "h0", "axes": {"pronoun": "n_distractors"}, "arch": arch}
    return save_results(tmp_path / "probes" / f"{arch}-s{seed}.npz", arrays, meta)


def test_compare_recovers_a_planted_gap_and_its_absence(tmp_path):
    a = [load_results(fake_results(tmp_path, "transformer", s, 0.0)) for s in range(3)]
    b = [load_results(fake_results(tmp_path, "hybrid", s, 0.3)) for s in range(3)]
    df = compare(a, b, n_boot=500).set_index("level")
    assert df.loc[2, "gap_lo"] > 0.15 and abs(df.loc[2, "gap"] - 0.3) < 0.1 and df.loc[2, "gap_hi"] < 0.45
    assert df.loc[1, "gap_lo"] < 0 < df.loc[1, "gap_hi"]
    assert df.loc[2, "acc_gain_lo"] > 0.15 and df.loc[1, "acc_gain_lo"] < 0 < df.loc[1, "acc_gain_hi"]
    assert df.loc[2, "n_seed_pairs"] == 3 and df.loc[2, "gap_seed_min"] <= df.loc[2, "gap"] <= df.loc[2, "gap_seed_max"]
    assert df.loc[2, "n_docs"] == 40 and df.loc["all", "n_targets"] == 960
    swapped = compare(b, a, n_boot=500).set_index("level")
    assert np.isclose(swapped.loc[2, "gap"], -df.loc[2, "gap"])


def test_compare_refuses_results_from_different_probe_sets(tmp_path):
    a = load_results(fake_results(tmp_path, "transformer", 0, 0.0))
    b = load_results(fake_results(tmp_path, "hybrid", 0, 0.0))
    b.meta["probe_set_hash"] = "other"
    with pytest.raises(ValueError, match="different probe sets"):
        compare([a], [b])


# ---- figures ----------------------------------------------------------------------------------------------------
def test_figures_are_written_and_reproduced_byte_for_byte(tmp_path, capsys):
    for arch, planted in (("transformer", 0.0), ("hybrid", 0.2), ("recurrent", 0.1)):
        for s in range(2):
            fake_results(tmp_path / "results", arch, s, planted)
    first = make_figures(tmp_path / "results", tmp_path / "fig1")
    second = make_figures(tmp_path / "results", tmp_path / "fig2")
    assert [e["name"] for e in first] == ["probe_pronoun"]
    for e1, e2 in zip(first, second):
        assert set(e1) == {"name", "title", "png", "pdf", "csv", "caption"}
        for key in ("png", "pdf", "csv"):
            data = open(e1[key], "rb").read()
            assert len(data) > 500 and data == open(e2[key], "rb").read(), key
    assert make_figures(tmp_path / "nothing", tmp_path / "fig3") == []
    assert "no results" in capsys.readouterr().out
    json.dumps(first)  # entries are plain strings: the HTML report may serialise them


# ---- command line, end to end with a small random model ---------------------------------------------------------
def test_cli_generate_score_compare_figures(tmp_path, tok_path, tokenizer, capsys):
    from tokengap.analysis.__main__ import main
    from tokengap.models import LM, MambaConfig, ModelConfig, save_pretrained

    assert main(["probes", "generate", "--out", str(tmp_path / "p"), "--preset", "tiny", "--docs-per-level", "1"]) == 0
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, pattern=["mamba2", "attention"], vocab_size=vocab(tokenizer),
                      kernels="reference", mamba=MambaConfig(d_state=8, headdim=16, chunk_size=64))
    torch.manual_seed(0)
    model_dir = save_pretrained(LM(cfg), tmp_path / "runs" / "hybrid" / "checkpoints" / "final",
                                extra={"tokenizer_sha256": tokenizer.sha256})
    out = tmp_path / "results" / "probes" / "hybrid-s0.npz"
    assert main(["probes", "score", "--model", str(model_dir), "--tokenizer", str(tok_path), "--probes",
                 str(tmp_path / "p"), "--out", str(out), "--context", "1024", "--device", "cpu"]) == 0
    r = load_results(out)
    ps = ProbeSet.load(tmp_path / "p")
    assert r.meta["probe_set_hash"] == ps.hash and r.meta["name"] == "hybrid" and r.meta["arch"] == "custom"
    assert len(r.loss) == len(ps.targets) and np.isfinite(r.loss).all() and set(ARRAYS) <= set(vars(r))
    assert main(["probes", "compare", "--a", str(out), "--b", str(out), "--n-boot", "50"]) == 0
    assert "+0.000 [+0.000, +0.000]" in capsys.readouterr().out
    assert main(["probes", "figures", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "fig")]) == 0
    assert len(list((tmp_path / "fig").glob("probe_*.png"))) == 4
