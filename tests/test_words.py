"""The word-level comparison of two tokenizations (tokengap/analysis/words.py): a loss that adds up over characters
gives the same word totals and a zero gap under any two tokenizers; a planted word-category effect is recovered; the
CLI end to end on two tokenizers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tokengap.analysis.words import compare_words, segment, token_words, word_losses
from tokengap.evaluation.evalset import EvalSet, TextTokenizer

RNG = np.random.default_rng(0)
LEX = "the a cat sat on mat (x) [y] {z} def return if else quickly river theory garden, said: she ran.".split()
TEXTS = [" ".join(RNG.choice(LEX, size=int(n))) + ("\n\n  " if i % 2 else "") for i, n in
         enumerate(RNG.integers(30, 120, size=10))]
CONTENT = {"cat", "mat", "river", "theory", "garden,", "quickly"}


def tokenizer(tmp_path, vocab: int, name: str) -> TextTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path / f"{name}.json"
    tok.save(str(path))
    return TextTokenizer.from_file(path)


def docs():
    return [{"id": f"d{i}", "domain": "books" if i % 2 else "python", "source": "s", "text": t}
            for i, t in enumerate(TEXTS)]


def char_costs(text: str, content_bonus: float = 0.0) -> np.ndarray:
    """A cost per character; with a bonus, the characters of content words (and the spaces before them) cost less."""
    c = np.array([0.1 + (ord(ch) % 7) * 0.05 for ch in text])
    if content_bonus:
        words = segment([text])
        prev = 0
        for s, e, w in zip(words.start, words.end, words.text):
            if w in CONTENT:
                c[prev:e] -= content_bonus
            prev = e
    return c


def token_loss(ev: EvalSet, content_bonus: float = 0.0) -> np.ndarray:
    out = np.zeros(ev.n_tokens)
    for d, doc in enumerate(ev.docs):
        c = char_costs(doc["text"], content_bonus)
        a, b = int(ev.doc_starts[d]), int(ev.doc_starts[d + 1])
        # every character to exactly one token: [start of this token, start of the next)
        starts = np.maximum.accumulate(ev.offsets[a:b, 0])
        ends = np.append(starts[1:], len(doc["text"]))
        starts[0] = 0
        out[a:b] = [c[s:e].sum() for s, e in zip(starts, ends)]
    return out.astype(np.float32)


def test_a_character_additive_loss_has_the_same_word_totals_under_two_tokenizers(tmp_path):
    t1, t2 = tokenizer(tmp_path, 300, "small"), tokenizer(tmp_path, 700, "large")
    e1, e2 = EvalSet.from_docs(docs(), t1), EvalSet.from_docs(docs(), t2)
    assert e1.n_tokens != e2.n_tokens  # really two tokenizations
    words = segment([d["text"] for d in docs()])
    w1, w2 = word_losses(token_loss(e1), e1, words), word_losses(token_loss(e2), e2, words)
    np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(w1.sum(), token_loss(e1).astype(np.float64).sum(), rtol=1e-6)
    assert words.nbytes.sum() == sum(len(t.encode()) for t in TEXTS)
    table, totals = compare_words(e1, token_loss(e1), e2, token_loss(e2), n_boot=50)
    assert np.allclose(table["gap"], 0, atol=1e-4) and np.allclose(table["bpb_a"], table["bpb_b"], rtol=1e-5)
    # a spaces-only token goes to the word after it
    tw = token_words(e1, words)
    for j in np.flatnonzero([not p.strip() for p in (e1.docs[e1.doc_index[i]]["text"][s:e]
                                                     for i, (s, e) in enumerate(e1.offsets))])[:5]:
        d = e1.doc_index[j]
        nxt = words.start[tw[j]]
        assert nxt >= e1.offsets[j, 1] or tw[j] == words.doc_starts[d + 1] - 1


def test_a_planted_word_effect_is_recovered_across_tokenizers(tmp_path):
    import pandas as pd
    t1, t2 = tokenizer(tmp_path, 300, "small"), tokenizer(tmp_path, 700, "large")
    e1, e2 = EvalSet.from_docs(docs(), t1), EvalSet.from_docs(docs(), t2)
    bonus = 0.02
    la, lb = token_loss(e1), token_loss(e2, content_bonus=bonus)  # B is better on content words only
    words = segment([d["text"] for d in docs()])
    content = np.isin(words.text, list(CONTENT))
    # token labels as the labeler gives them: each token the class of the word holding its first character
    labels = pd.DataFrame({"word_class": np.where(content[token_words(e1, words)], "content", "other")})
    table, _ = compare_words(e1, la, e2, lb, labels, n_boot=100)
    row = table[(table.family == "word_class") & (table.category == "content")].iloc[0]
    # expected: the bonus times the characters of a content word with the space before it
    same_doc = np.concatenate([[False], words.doc[1:] == words.doc[:-1]])
    chars = np.where(same_doc, words.end - np.concatenate([[0], words.end[:-1]]), words.end)
    assert row.gap == pytest.approx(bonus * chars[content].mean(), rel=1e-3)
    assert row.lo < row.gap < row.hi
    other = table[(table.family == "word_class") & (table.category == "other")].iloc[0]
    assert abs(other.gap) < 1e-4


def test_words_cli_on_two_tokenizers(tmp_path, capsys):
    from tokengap.analysis.__main__ import main
    from tokengap.evaluation.scorefile import save_scores
    corpus = tmp_path / "corpus"
    (corpus / "docs").mkdir(parents=True)
    (corpus / "docs" / "eval.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs()))
    t1, t2 = tokenizer(tmp_path, 300, "small"), tokenizer(tmp_path, 700, "large")
    paths = []
    for t, name, bonus in ((t1, "a", 0.0), (t2, "b", 0.01)):
        ev = EvalSet.from_docs(docs(), t)
        p = tmp_path / f"{name}.npz"
        save_scores(p, token_loss(ev, bonus), np.zeros(ev.n_tokens, bool),
                    {"name": name, "eval_tokens_sha256": ev.eval_tokens_sha256, "eval_hash": ev.eval_hash})
        paths.append(p)
    rc = main(["words", "--a", str(paths[0]), "--b", str(paths[1]), "--eval", str(corpus), "--tokenizer-a",
               str(tmp_path / "small.json"), "--tokenizer-b", str(tmp_path / "large.json"), "--out",
               str(tmp_path / "w"), "--n-boot", "50"])
    assert rc == 0
    s = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert s["total_a"] == pytest.approx(s["token_total_a"], rel=1e-6) and s["total_b"] < s["total_a"]
    # the wrong tokenizer for a side is refused in one line
    rc = main(["words", "--a", str(paths[0]), "--b", str(paths[1]), "--eval", str(corpus), "--tokenizer-a",
               str(tmp_path / "large.json"), "--tokenizer-b", str(tmp_path / "large.json"), "--out",
               str(tmp_path / "w2")])
    assert rc == 2 and "not made on --eval" in capsys.readouterr().err
