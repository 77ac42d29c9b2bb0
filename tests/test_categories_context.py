"""Document/corpus-level labelers: meta (domain, source, position) and unigram frequency from train.bin."""
import json

import numpy as np

from tokengap.analysis.categories import DocView, REGISTRY
from tokengap.analysis.categories.context import logprob_from_counts, unigram_logprob


def test_meta():
    d = DocView.from_pieces(["a", "b", "c"], domain="news", source="s1", context_len=2)
    out = REGISTRY["meta"](d)
    assert out["domain"].tolist() == ["news"] * 3 and out["source"].tolist() == ["s1"] * 3
    assert out["ctx_pos"].tolist() == [0, 1, 0]


def test_frequency_lookup_and_out_of_table_ids():
    table = np.log(np.array([0.5, 0.25, 0.25]))
    d = DocView("xyz", np.array([1, 0, 7]), np.array([[0, 1], [1, 2], [2, 3]]))
    out = REGISTRY["frequency"](d, {"unigram_logprob": table})["log_freq"]
    assert np.allclose(out, np.log([0.25, 0.5, 0.25]))  # id 7 is beyond the table: the floor


def test_unigram_logprob_from_train_bin(tmp_path):
    tokens = np.array([0, 1, 1, 2, 0, 1], dtype=np.uint16)  # 0 = EOT, not counted
    tokens.tofile(tmp_path / "train.bin")
    (tmp_path / "train.json").write_text(json.dumps({"dtype": "uint16", "n_tokens": 6, "vocab_size": 4,
                                                     "eot_id": 0, "tokenizer_sha256": "abc"}))
    table, prov = unigram_logprob(tmp_path, smoothing=0.5)
    # counts without EOT: [0, 3, 1, 0]; total 4; add-0.5 over 4 types
    assert np.allclose(np.exp(table), np.array([0.5, 3.5, 1.5, 0.5]) / 6.0)
    assert prov["n_tokens"] == 6 and prov["tokenizer_sha256"] == "abc"
    assert np.allclose(logprob_from_counts(np.array([1, 1])), np.log([0.5, 0.5]))
