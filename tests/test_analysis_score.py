"""Scoring: equals the model's own training loss on the same tokens; a Hugging Face model scores too."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tokengap.evaluation.evalset import EvalSet, TextTokenizer
from tokengap.evaluation.scoring import HFScorer, ZooScorer, score
from tokengap.evaluation.scorefile import check_comparable, load_scores, save_scores
from tokengap.models import LM, MambaConfig, ModelConfig

TEXTS = ["The cat sat on the mat. " * 12, "def f(x):\n    return (x + 1) * [2, 3]\n" * 6, "A short one.",
         "<p class=\"a\">Hello <b>world</b></p>\n" * 9]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A small byte-level BPE with <|endoftext|> = 0, saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS * 3, trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def evalset(tokenizer_path) -> EvalSet:
    docs = [{"id": f"d{i}", "domain": "books", "source": "t", "text": t} for i, t in enumerate(TEXTS)]
    return EvalSet.from_docs(docs, TextTokenizer.from_file(tokenizer_path))


def test_scorer_mean_equals_the_training_loss_on_the_same_tokens(tokenizer):
    """The training forward (mean cross-entropy of model(inputs, targets)) over each scoring window, weighted by
    its token count, equals the mean of the scorer's per-token losses."""
    ev = evalset(tokenizer)
    torch.manual_seed(0)
    cfg = ModelConfig(n_layers=2, d_model=64, n_heads=2, pattern=["mamba2", "attention"], vocab_size=320,
                      mamba=MambaConfig(d_state=8, headdim=16, chunk_size=16))
    model = LM(cfg).eval()
    T = 32
    loss, correct = score(ZooScorer(model), ev, T, batch_size=3, progress=False, chunk_tokens=17)
    total, n = 0.0, 0
    with torch.no_grad():
        for d, s, k in ev.windows(T):
            toks = torch.from_numpy(ev.tokens.astype(np.int64))
            first = s == ev.doc_starts[d]
            inp = torch.cat([torch.tensor([ev.eot_id]), toks[s:s + k - 1]]) if first else toks[s - 1:s + k - 1]
            total += float(model(inp[None], toks[s:s + k][None])) * k  # the training loss of this window
            n += k
    assert n == ev.n_tokens and np.isfinite(loss).all()
    assert loss.mean() == pytest.approx(total / n, rel=1e-5)
    assert correct.dtype == bool and correct.shape == loss.shape
    # CUDA's default: batches padded to batch_size rows and at least 2 * pad_multiple columns; same scores
    padded, pcorrect = score(ZooScorer(model), ev, T, batch_size=3, progress=False, chunk_tokens=17,
                             pad_multiple=8, pad_batch=True)
    np.testing.assert_allclose(padded, loss, rtol=1e-5, atol=1e-6)
    assert (pcorrect == correct).all()
    # a token budget a batch (more rows of short windows, fewer of long ones): same scores
    budget, _ = score(ZooScorer(model), ev, T, batch_size=4, progress=False, chunk_tokens=17, pad_multiple=8,
                      max_batch_tokens=40)
    np.testing.assert_allclose(budget, loss, rtol=1e-5, atol=1e-6)


def test_a_hugging_face_causal_lm_scores(tokenizer, tmp_path):
    pytest.importorskip("transformers")
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer), bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")
    fast.save_pretrained(tmp_path / "hf")
    tok = TextTokenizer.from_hf(str(tmp_path / "hf"))
    docs = [{"id": f"d{i}", "domain": "books", "source": "t", "text": t} for i, t in enumerate(TEXTS)]
    ev = EvalSet.from_docs(docs, tok)
    assert np.array_equal(ev.tokens, evalset(tokenizer).tokens)  # same tokenizer, same tokens and offsets
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                         tie_word_embeddings=False)).eval()
    loss, correct = score(HFScorer(model), ev, 32, batch_size=2, progress=False)
    assert np.isfinite(loss).all() and abs(loss.mean() - np.log(320)) < 0.5  # random weights: near uniform
    # the chunked head equals the model's own logits
    d, s, k = next(iter(ev.windows(32)))
    inp = torch.cat([torch.tensor([ev.eot_id]), torch.from_numpy(ev.tokens[s:s + k - 1].astype(np.int64))])
    with torch.no_grad():
        want = F.cross_entropy(model(input_ids=inp[None]).logits[0], torch.from_numpy(ev.tokens[s:s + k].astype(np.int64)),
                               reduction="none").numpy()
    np.testing.assert_allclose(loss[s:s + k], want, rtol=1e-5, atol=1e-6)


def test_score_files_roundtrip_and_refuse_other_eval_sets(tmp_path):
    loss, ok = np.random.default_rng(0).random(10).astype(np.float32), np.zeros(10, bool)
    a = load_scores(save_scores(tmp_path / "a.npz", loss, ok, {"eval_hash": "e1", "tokenizer_sha256": "t"}))
    b = load_scores(save_scores(tmp_path / "b.npz", loss, ok, {"eval_hash": "e2", "tokenizer_sha256": "t"}))
    assert np.abs(a.loss - loss).max() <= 2.0 ** -12 + 1e-7 and a.meta["eval_hash"] == "e1"  # the 16-bit code
    check_comparable(a, a)
    with pytest.raises(ValueError, match="eval_hash: e1"):
        check_comparable(a, b)
