"""The user's own evaluation text through the commands (`python -m tokengap.analysis label`, `score`, `pipeline`
take a folder of .txt files, a JSONL with a text field, or a saved Hugging Face dataset): the same numbers as the
same documents given as a built corpus, domains from the user's field, and one-line refusals before any compute."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tokengap.analysis.__main__ import main as analysis
from tokengap.evaluation.scorefile import load_scores
from tests.test_nothing_lost import corpus, made, refused  # noqa: F401  (fixtures)


def user_jsonl(corpus: Path, path: Path) -> Path:
    """The corpus's eval documents as someone's JSONL: another text field name, the domain under 'genre'."""
    docs = [json.loads(x) for x in (corpus / "docs" / "eval.jsonl").read_text().splitlines()]
    path.write_text("".join(json.dumps({"body": d["text"], "genre": d["domain"], "id": d["id"]}) + "\n" for d in docs))
    return path


def test_score_and_label_the_users_jsonl_as_the_corpus(corpus, made, tmp_path):  # noqa: F811
    """Scored from the user's JSONL, the model gives the per-token losses it gives on the same documents as a built
    corpus (the tokenizer comes from beside the model); labels of the user's text label the same tokens."""
    f = user_jsonl(corpus, tmp_path / "mine.jsonl")
    model = str(made["model"])
    assert (made["model"] / "tokenizer.json").is_file()  # training leaves the tokenizer beside the weights
    assert analysis(["score", "--model", model, "--eval", str(f), "--text-field", "body", "--domain-field", "genre",
                     "--out", str(tmp_path / "mine.npz"), "--device", "cpu"]) == 0
    mine, theirs = load_scores(tmp_path / "mine.npz"), load_scores(made["score"])
    assert mine.meta["eval_hash"] == theirs.meta["eval_hash"]  # same ids, tokens and tokenizer: the same eval set
    assert np.array_equal(mine.loss, theirs.loss)
    assert analysis(["label", "--eval", str(f), "--text-field", "body", "--domain-field", "genre", "--tokenizer",
                     str(made["model"] / "tokenizer.json"), "--context", "32", "--out", str(tmp_path / "l.parquet"),
                     "--filters", str(tmp_path / "f.npz")]) == 0
    import pandas as pd
    a, b = pd.read_parquet(tmp_path / "l.parquet"), pd.read_parquet(made["labels"])
    # the same labels but for log_freq (the user has no train.bin: the eval text's own counts) and the source name
    skip = ["log_freq", "source"]
    assert a.drop(columns=skip).equals(b.drop(columns=skip)) and (a["source"] == "mine.jsonl").all()


def test_a_txt_folder_needs_a_tokenizer_and_bad_lines_are_named(corpus, made, tmp_path, capsys):  # noqa: F811
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("the cat sat on the mat\n")
    refused(capsys, analysis, ["label", "--eval", str(tmp_path / "texts"), "--out", str(tmp_path / "l.parquet")],
            "your own text needs the model's tokenizer (--tokenizer", tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    out = tmp_path / "s.npz"
    refused(capsys, analysis, ["score", "--model", str(made["model"]), "--eval", str(bad), "--out", str(out),
                               "--device", "cpu"], "bad.jsonl:2: not JSON", tmp_path)
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text('{"body": "x"}\n')
    refused(capsys, analysis, ["score", "--model", str(made["model"]), "--eval", str(nofield), "--out", str(out),
                               "--device", "cpu"], "nofield.jsonl:1: no 'text' string field (fields: body", tmp_path)
    (tmp_path / "empty").mkdir()
    refused(capsys, analysis, ["label", "--eval", str(tmp_path / "empty"), "--out", str(tmp_path / "l.parquet")],
            "no .txt or .jsonl files", tmp_path)
    ids = tmp_path / "ids.jsonl"
    ids.write_text("".join(json.dumps({"text": f"doc {i}", "url": f"u{i}"}) + "\n" for i in range(80)))
    refused(capsys, analysis, ["score", "--model", str(made["model"]), "--eval", str(ids), "--domain-field", "url",
                               "--out", str(out), "--device", "cpu"], "field 'url' gives 80 domains", tmp_path)
    assert not out.exists()


def test_zoo_side_on_users_text_is_refused(corpus, tmp_path, capsys):  # noqa: F811
    f = user_jsonl(corpus, tmp_path / "mine.jsonl")
    refused(capsys, analysis, ["pipeline", "--a", "zoo:transformer", "--b", "zoo:hybrid", "--eval", str(f),
                               "--text-field", "body", "--out", str(tmp_path / "out")],
            "a zoo model is trained on a corpus", tmp_path)
