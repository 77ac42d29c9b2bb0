"""Packed shards and the training-loop loader on synthetic text; the Hugging Face path on local files."""
import json

import numpy as np
import pytest
import torch

from tokengap.train.data.bpe import EOT_ID, load, train_bpe
from tokengap.train.data.loader import PackedCorpus, TokenWindows, prepare_hf
from tokengap.train.data.shards import write_token_files

DOCS = [f"Document number {i}. " + "Some words repeat here, " * (i % 7 + 1) + f"and it ends {i}." for i in range(40)]


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe(DOCS, vocab_size=400).save(str(path))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tokenizer_path):
    out = tmp_path_factory.mktemp("corpus")
    write_token_files(out, load(tokenizer_path), tokenizer_path, DOCS)
    return PackedCorpus(out)


def test_shards_put_eot_before_every_document(corpus, tokenizer_path):
    tok = load(tokenizer_path)
    assert corpus.tokens.dtype == np.uint16 and corpus.eot_id == EOT_ID
    assert corpus.vocab_size == tok.get_vocab_size() <= 400  # tiny text: BPE runs out of pairs before 400
    assert len(corpus.doc_starts) == len(DOCS) + 1 and corpus.doc_starts[-1] == len(corpus.tokens)
    assert np.all(corpus.tokens[corpus.doc_starts[:-1]] == EOT_ID)
    assert np.count_nonzero(np.asarray(corpus.tokens) == EOT_ID) == len(DOCS)  # EOT nowhere else
    for i, text in enumerate(DOCS):
        assert tok.decode(corpus.document(i).tolist()) == text
    assert not corpus.tokens.flags.writeable


def test_windows_are_non_overlapping_and_shifted_by_one(corpus):
    w = TokenWindows(corpus.tokens, seq_len=16, seed=0)
    assert len(w) == w.windows_per_epoch == (len(corpus.tokens) - 1) // 16
    x, y = w.batch(0, batch_size=len(w))
    assert x.dtype == y.dtype == torch.int64 and x.shape == (len(w), 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    toks, perm = np.asarray(corpus.tokens, dtype=np.int64), w.permutation(0)
    assert sorted(perm) == list(range(len(w)))  # one epoch visits every window exactly once
    for j, p in enumerate(perm):
        assert np.array_equal(x[j].numpy(), toks[16 * p: 16 * p + 16])
        assert np.array_equal(y[j].numpy(), toks[16 * p + 1: 16 * p + 17])


def test_batches_are_a_pure_function_of_the_step(corpus):
    a = TokenWindows(corpus.tokens, seq_len=8, seed=3)
    run = [a.batch(s, 4) for s in range(30)]  # crosses several epochs
    resumed = TokenWindows(corpus.tokens, seq_len=8, seed=3)
    for s in (17, 5, 29):  # any order, fresh object: same batches
        assert all(torch.equal(p, q) for p, q in zip(resumed.batch(s, 4), run[s]))
    other = TokenWindows(corpus.tokens, seq_len=8, seed=4)
    assert not torch.equal(other.batch(0, 4)[0], run[0][0])


def test_epochs_are_reshuffled(corpus):
    w = TokenWindows(corpus.tokens, seq_len=8, seed=3)
    assert not np.array_equal(w.permutation(0), w.permutation(1))
    assert sorted(w.permutation(1)) == list(range(len(w)))


@pytest.mark.parametrize("world", [1, 2, 4])
def test_ranks_together_hold_the_single_process_batch(corpus, world):
    w = TokenWindows(corpus.tokens, seq_len=8, seed=1)
    for step in (0, 3):
        full_x, full_y = w.batch(step, 8)
        parts = [w.batch(step, 8, rank=r, world=world) for r in range(world)]
        assert all(p[0].shape == (8 // world, 8) for p in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), full_x)
        assert torch.equal(torch.cat([p[1] for p in parts]), full_y)
    with pytest.raises(ValueError):
        w.batch(0, 6, rank=0, world=4)


def test_prepare_hf_on_local_json_and_text_files(tmp_path, tokenizer_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"content": d, "meta": i}) + "\n" for i, d in enumerate(DOCS[:10])))
    info = prepare_hf("json", data_files=str(rows), text_field="content", tokenizer=tokenizer_path,
                      out_dir=tmp_path / "hf_json", log=lambda *a: None)
    c = PackedCorpus(tmp_path / "hf_json")
    assert info["n_docs"] == 10 and len(c.doc_starts) == 11 and c.manifest["hf"]["text_field"] == "content"
    tok = load(tokenizer_path)
    assert [tok.decode(c.document(i).tolist()) for i in range(10)] == DOCS[:10]

    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(DOCS[:12]) + "\n")
    info = prepare_hf("text", data_files=[str(lines)], streaming=True, tokenizer=tokenizer_path, max_tokens=50,
                      out_dir=tmp_path / "hf_text", log=lambda *a: None)
    c = PackedCorpus(tmp_path / "hf_text")
    assert info["n_tokens"] >= 50 and c.doc_starts[-2] < 50  # stops after the document that reaches max_tokens
    assert tok.decode(c.document(0).tolist()) == DOCS[0]


def test_prepare_hf_names_a_missing_text_field(tmp_path, tokenizer_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(KeyError, match="no field 'text'"):
        prepare_hf("json", data_files=str(rows), tokenizer=tokenizer_path, out_dir=tmp_path / "o",
                   log=lambda *a: None)
    assert not (tmp_path / "o").exists()
