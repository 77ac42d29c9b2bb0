"""Byte-level BPE: round trip on any text, offsets into the original characters, EOT, deterministic training."""
import subprocess
import sys

import numpy as np
import pytest

from tokengap.train.data.bpe import EOT, EOT_ID, encode_with_offsets, load, train_bpe

TRAIN = [
    "The quick brown fox jumps over the lazy dog. " * 20,
    "def f(x):\n    return x ** 2  # square\n" * 20,
    "<html><body><p class=\"note\">Caf\u00e9 na\u00efve r\u00e9sum\u00e9</p></body></html>\n" * 20,
    "\\begin{equation} E = mc^2 \\end{equation} % LaTeX\n" * 20,
]
TRICKY = [
    "plain ascii text",
    "  leading and trailing spaces  \n\n\ttabs\r\nCRLF",
    "caf\u00e9 \u65e5\u672c\u8a9e \U0001F600 emoji, \u0627\u0644\u0639\u0631\u0628\u064a\u0629, combining e\u0301",
    "unknown bytes \x00\x01\x7f and a lone surrogate-free \ufffd",
    f"a literal {EOT} inside text stays text",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe(TRAIN, vocab_size=600).save(str(path))
    return load(path)


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_any_text(tok, text):
    ids, _ = encode_with_offsets(tok, text)
    assert tok.decode(ids.tolist(), skip_special_tokens=False) == text


def test_eot_is_id_0_and_never_produced_from_text(tok):
    assert tok.token_to_id(EOT) == EOT_ID == 0
    ids, _ = encode_with_offsets(tok, f"before {EOT} after")
    assert EOT_ID not in ids


@pytest.mark.parametrize("text", TRICKY[:4] + [TRAIN[2][:200]])
def test_offsets_cover_the_original_characters(tok, text):
    ids, offsets = encode_with_offsets(tok, text)
    assert offsets.shape == (len(ids), 2)
    assert offsets[0, 0] == 0 and offsets[-1, 1] == len(text)
    assert np.all(offsets[:, 0] <= offsets[:, 1]) and np.all(np.diff(offsets[:, 0]) >= 0)
    # consecutive tokens either abut or share the span of one multi-byte character split between them
    for (s0, e0), (s1, e1) in zip(offsets[:-1], offsets[1:]):
        assert s1 == e0 or (s1 == s0 and e1 == e0) or s1 == e0 - 1
    # where tokens do not share a character, their offsets slice out exactly their decoded text
    for i, (s, e) in enumerate(offsets):
        if (i == 0 or offsets[i - 1][1] <= s) and (i + 1 == len(ids) or offsets[i + 1][0] >= e):
            assert tok.decode([int(ids[i])]) == text[s:e]


def test_bpe_training_is_deterministic_across_processes(tmp_path):
    code = ("import sys; from tokengap.train.data.bpe import train_bpe; from tests.test_data_tokenizer import TRAIN; "
            "train_bpe(TRAIN * 3, vocab_size=700).save(sys.argv[1])")
    outs = []
    for i, threads in enumerate(["1", "2"]):
        out = tmp_path / f"t{i}.json"
        env = {"PYTHONHASHSEED": str(i), "RAYON_NUM_THREADS": threads, "PATH": "/usr/bin:/bin"}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, cwd=_repo())
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def _repo():
    from pathlib import Path
    return Path(__file__).resolve().parents[1]
