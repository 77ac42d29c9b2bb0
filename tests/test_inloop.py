"""The in-loop library (tokengap/analysis/inloop.py) and its Trainer callback (tokengap/analysis/hf_callback.py):
the same numbers as our training loop's evaluation, tokenizers of every accepted kind, one-line refusals, and a real
`Trainer` whose logged values equal a direct call and whose training the callback does not disturb."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tokengap.analysis.categories.filters import filter_masks, filter_names
from tokengap.analysis.inloop import DEFAULT_FILTERS, FilteredEval, InLoopError, as_tokenizer, label_masks, take_tokens
from tokengap.evaluation.evalset import EvalSet
from tokengap.models import LM, ModelConfig
from tests.synthetic import regex_tokenizer, synthetic_docs, synthetic_evalset
from tokengap.train.loop import Evaluator

CTX = 64


@pytest.fixture(scope="module")
def ev():
    return synthetic_evalset(n_docs_per_domain=4, units=4)


@pytest.fixture(scope="module")
def masks(ev):
    # labels from the synthetic set's own generator (no spaCy): the masks' content does not matter here, only
    # that both sides average under the same ones
    from tokengap.analysis.categories.context import logprob_from_counts, unigram_counts
    from tokengap.analysis.labels import label_evalset, to_frame
    from tests.synthetic import LexiconTagger

    res = {"tagger": LexiconTagger(), "unigram_logprob": logprob_from_counts(unigram_counts(ev.tokens, 50001))}
    cols = label_evalset(ev, CTX, res, progress=False)
    return filter_masks(to_frame(cols, ev.doc_index))


def tiny_lm(vocab=50001, seed=0):
    torch.manual_seed(seed)
    return LM(ModelConfig(name="transformer", n_layers=2, d_model=32, n_heads=4, pattern=["attention"] * 2,
                          vocab_size=vocab, mlp_ratio=2.0))


def test_same_numbers_as_our_training_loop(ev, masks):
    model = tiny_lm()
    ours = Evaluator(ev, masks, CTX, batch_size=4, device=torch.device("cpu"), dtype=None)(model)
    fe = FilteredEval(ev, masks, CTX, filters=filter_names(), min_filter_tokens=0)
    got = fe.evaluate(model, batch_size=4)
    assert got.flat("eval/") == ours  # exactly: the same scoring and the same masked mean
    assert got.tokens["filter/content"] == int(masks["content"].sum()) and got.tokens["all"] == ev.n_tokens


def test_default_set_and_counts(ev, masks):
    fe = FilteredEval(ev, masks, CTX, min_filter_tokens=0)
    names = [k for k in fe.counts() if k.startswith("filter/")]
    assert names == [f"filter/{f}" for f in DEFAULT_FILTERS]
    assert {k for k in fe.counts() if k.startswith("domain/")} == {f"domain/{d}" for d in
                                                                  ("books", "html", "latex", "news", "python")}


def test_planted_loss_is_recovered(ev, masks):
    """A 'model' whose per-token loss is known: logits -h (the same at every position) give a target t the loss
    logsumexp(-h) + h[t]; the filter means must be the means of that over each mask's tokens."""
    fe = FilteredEval(ev, masks, CTX, filters=("content", "close_delim"), per_domain=True, min_filter_tokens=0)
    h = 3 * torch.rand(50001, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    planted = (torch.logsumexp(-h, 0) + h[torch.from_numpy(ev.tokens.astype(np.int64))]).numpy()
    got = fe.evaluate(lambda ids: (-h.float()).expand(*ids.shape, -1), batch_size=2)
    for k, m in fe.masks.items():
        assert got.loss[k] == pytest.approx(float(planted[m].mean()), rel=1e-5), k
    assert got.loss["all"] == pytest.approx(float(planted.mean()), rel=1e-5)
    assert got.loss["filter/content"] != pytest.approx(got.loss["filter/close_delim"], rel=1e-3)  # masks differ


def test_callable_and_module_paths_agree(ev, masks):
    model = tiny_lm()
    fe = FilteredEval(ev, masks, CTX, min_filter_tokens=0)
    a = fe.evaluate(model)  # the chunked scorer of a tokengap LM
    b = fe.evaluate(lambda ids: model(ids))  # any callable returning logits
    assert a.loss.keys() == b.loss.keys()
    for k in a.loss:
        assert b.loss[k] == pytest.approx(a.loss[k], rel=1e-5), k


def test_mode_and_rng_left_alone(ev, masks):
    model = tiny_lm().train()
    fe = FilteredEval(ev, masks, CTX, min_filter_tokens=0)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    fe.evaluate(model)
    assert model.training
    assert torch.equal(torch.random.get_rng_state(), state)


def test_refusals_are_one_line(ev, masks):
    with pytest.raises(InLoopError, match=r"^filters: unknown 'nope' \(known: ") as e:
        FilteredEval(ev, masks, CTX, filters=("nope",))
    assert "\n" not in str(e.value)
    with pytest.raises(InLoopError, match=r"^filter/close_delim: \d+ tokens in this evaluation set, fewer than "
                                          r"min_filter_tokens=100000 "):
        FilteredEval(ev, masks, CTX, filters=("close_delim",), per_domain=False, min_filter_tokens=100000)
    with pytest.raises(InLoopError, match=r"^domain/books: \d+ tokens"):
        FilteredEval(ev, masks, CTX, filters=(), min_filter_tokens=10 ** 6)
    with pytest.raises(InLoopError, match=r"^texts: no documents$"):
        FilteredEval.build([], regex_tokenizer())
    with pytest.raises(InLoopError, match=r"^texts\[1\]: expected a string or a mapping with a 'text' string"):
        FilteredEval.build(["a b", 3], regex_tokenizer())
    with pytest.raises(InLoopError, match=r"^the evaluation text tokenizes to nothing$"):
        FilteredEval.build(["", ""], regex_tokenizer())
    with pytest.raises(InLoopError, match=r"^max_tokens=3: every document is longer"):
        take_tokens(ev, 3)
    with pytest.raises(InLoopError, match=r"^tokenizer: int is not a tokenizer"):
        as_tokenizer(3)


def test_take_tokens_keeps_whole_documents_from_every_domain(ev):
    sub, idx = take_tokens(ev, ev.n_tokens // 3)
    assert np.array_equal(ev.tokens[idx], sub.tokens)
    assert 0 < sub.n_tokens <= ev.n_tokens // 3
    assert {d["domain"] for d in sub.docs} == {d["domain"] for d in ev.docs}
    for d in sub.docs:  # each document whole, with the tokens it had
        i = next(j for j, e in enumerate(ev.docs) if e["id"] == d["id"])
        k = sub.docs.index(d)
        assert np.array_equal(sub.doc_tokens(k), ev.doc_tokens(i))


def test_tokenizer_kinds_give_the_same_ids(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate("the cat sat on a mat .".split())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    texts = ["the cat sat on a mat .", "a mat the cat"]
    got = [as_tokenizer(t).encode(texts) for t in (str(path), tok, fast)]
    assert got[0] == got[1] == got[2]
    assert got[0][0][0] == [2, 3, 4, 5, 6, 7, 8]
    assert {as_tokenizer(t).eot_id for t in (str(path), tok, fast)} == {0}
    # the file and the object it was saved from are one tokenizer (transformers adds its EOS as an added token)
    assert as_tokenizer(str(path)).content_sha256 == as_tokenizer(tok).content_sha256


def test_labels_are_cached(tmp_path, monkeypatch, ev, masks):
    """label_masks labels once per eval set and context; the second call reads the cache."""
    import tokengap.analysis.labels as labels

    calls = []

    def fake_run_labels(e, ctx, out, filters, progress=False):  # the real labelling is tested elsewhere
        calls.append(ctx)
        labels.write_filters(filters, masks, e.eval_hash)
    monkeypatch.setattr(labels, "run_labels", fake_run_labels)
    a = label_masks(ev, CTX, tmp_path)
    b = label_masks(ev, CTX, tmp_path)
    assert calls == [CTX] and a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    label_masks(ev, CTX * 2, tmp_path)  # another context: labelled again
    assert calls == [CTX, CTX * 2]


def test_build_labels_user_text_with_spacy(tmp_path):
    """The whole path on plain strings: tokenize, label (spaCy), choose, evaluate a model."""
    docs = synthetic_docs(n_docs_per_domain=2, units=3, domains=("books", "python"))
    fe = FilteredEval.build(docs, regex_tokenizer(), context_len=CTX, min_filter_tokens=1, cache_dir=tmp_path)
    assert fe.counts()["filter/content_novel"] > 0 and fe.counts()["filter/close_delim"] > 0
    res = fe.evaluate(tiny_lm())
    assert np.isfinite(res.loss["all"]) and set(res.flat()) == {"tokengap/" + k for k in fe.counts()}


# ---- the Hugging Face Trainer callback --------------------------------------------------------------------------
def _train(tmp_path, ev, masks, callback: str, steps: int = 4, report_to=()):
    """A tiny random Llama (dropout on: a stolen random number would change the weights) trained `steps` steps
    on windows of the eval set's ids; callback: "ours", "none", or "greedy" (ours plus one torch.rand per call:
    the control that shows the comparison can fail)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    from tokengap.analysis.hf_callback import FilteredLossCallback

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50001, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                      attention_dropout=0.2)
    model = LlamaForCausalLM(cfg)
    ids = torch.from_numpy(ev.tokens[: 32 * 24].astype(np.int64)).view(24, 32)
    data = [{"input_ids": r, "labels": r} for r in ids]
    args = TrainingArguments(output_dir=str(tmp_path / callback), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=1e-2, logging_steps=1, report_to=list(report_to), save_strategy="no",
                             use_cpu=True,
                             seed=0, data_seed=0, disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=data)
    fe = FilteredEval(ev, masks, CTX, min_filter_tokens=0)
    cb = None
    if callback != "none":
        cb = FilteredLossCallback(trainer, fe, every_n_steps=2, batch_size=4)
        if callback == "greedy":
            inner = cb._evaluate
            cb._evaluate = lambda state, control, model: (torch.rand(1), inner(state, control, model))
        trainer.add_callback(cb)
    trainer.train()
    return trainer, fe, cb


@pytest.mark.slow
def test_trainer_callback_logs_a_direct_call_and_disturbs_nothing(tmp_path, ev, masks):
    plain, _, _ = _train(tmp_path, ev, masks, "none")
    with_cb, fe, cb = _train(tmp_path, ev, masks, "ours")
    greedy, _, _ = _train(tmp_path, ev, masks, "greedy")
    logged = [h for h in with_cb.state.log_history if "eval_tokengap/all" in h]
    assert [h["step"] for h in logged] == [2, 4] == cb.logged_steps  # every 2 steps; the end's is step 4's
    direct = fe.evaluate(with_cb.model, batch_size=4).flat("eval_tokengap/")
    assert {k: logged[-1][k] for k in direct} == direct
    assert set(logged[0]) >= {"eval_tokengap/filter/content_novel", "eval_tokengap/domain/python",
                              "eval_tokengap/eval_seconds"}

    def losses(t):
        return [h["loss"] for h in t.state.log_history if "loss" in h]

    def weights(t):
        return torch.cat([p.detach().flatten() for p in t.model.parameters()])
    assert losses(with_cb) == losses(plain) and torch.equal(weights(with_cb), weights(plain))
    assert not torch.equal(weights(greedy), weights(plain))  # the control: one stolen random number shows


def test_from_files_reads_the_users_jsonl(tmp_path, monkeypatch, masks):
    import tokengap.analysis.inloop as inloop

    docs = synthetic_docs(n_docs_per_domain=2, units=3, domains=("books", "python"))
    f = tmp_path / "eval.jsonl"
    f.write_text("".join(json.dumps({"body": d["text"], "kind": d["domain"]}) + "\n" for d in docs))
    monkeypatch.setattr(inloop, "label_masks", lambda ev, ctx, cache_dir, progress: {
        n: np.ones(ev.n_tokens, dtype=bool) for n in DEFAULT_FILTERS})
    fe = FilteredEval.from_files(f, regex_tokenizer(), context_len=CTX, text_field="body", domain_field="kind",
                                 min_filter_tokens=1)
    assert set(fe.counts()) == {"all", "domain/books", "domain/python", *(f"filter/{n}" for n in DEFAULT_FILTERS)}
    assert fe.evalset.n_tokens == synthetic_evalset_tokens(docs)


def synthetic_evalset_tokens(docs):
    return EvalSet.from_docs(docs, regex_tokenizer()).n_tokens


@pytest.mark.slow
def test_the_trainer_example_runs(tmp_path, capsys):
    """examples/inloop_trainer.py (docs/library.md, README) on a small synthetic corpus: it must not rot."""
    import importlib.util

    from tests.test_train import make_corpus

    corpus = make_corpus(tmp_path)
    spec = importlib.util.spec_from_file_location("inloop_trainer", Path(__file__).parents[1] / "examples" /
                                                  "inloop_trainer.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--corpus", str(corpus), "--steps", "4", "--every", "2", "--max-tokens", "3000",
                         "--min-tokens", "1", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "step    2  all " in printed and "step    4  all " in printed and "filter/close_delim" in printed


@pytest.mark.slow
def test_trainer_callback_reaches_the_trainers_loggers(tmp_path, ev, masks):
    """report_to=["tensorboard"]: the values land in TensorBoard's event files, as logged, under eval/tokengap/...
    (the Trainer's integrations turn a leading "eval_" into "eval/")."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, fe, cb = _train(tmp_path, ev, masks, "ours", report_to=("tensorboard",))
    logged = [h for h in trainer.state.log_history if "eval_tokengap/all" in h]
    (events,) = {p.parent for p in tmp_path.rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(events))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"eval/tokengap/all", "eval/tokengap/filter/content_novel", "eval/tokengap/domain/books"} <= set(tags), tags
    got = [(e.step, e.value) for e in acc.Scalars("eval/tokengap/all")]
    assert [s for s, _ in got] == [h["step"] for h in logged] == [2, 4]
    assert [v for _, v in got] == pytest.approx([h["eval_tokengap/all"] for h in logged], rel=1e-6)
