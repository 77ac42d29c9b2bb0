"""Evaluation documents from the user's own text (tokengap/evaluation/sources.py): every accepted form, domains, and the
one-line refusals (naming the file and line)."""
from __future__ import annotations

import json

import pytest

from tokengap.evaluation.sources import SourceError, is_corpus, read_docs


def write(p, text):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def write_bytes(p, data):
    p.write_bytes(data)
    return p


def test_txt_folder_one_document_per_file_domain_from_subfolder(tmp_path):
    write(tmp_path / "news" / "a.txt", "The cat sat.")
    write(tmp_path / "news" / "b.txt", "A dog ran.")
    write(tmp_path / "code" / "c.txt", "def f(): pass")
    docs = read_docs(tmp_path)
    assert [(d["id"], d["domain"], d["text"]) for d in docs] == [
        ("code/c.txt", "code", "def f(): pass"), ("news/a.txt", "news", "The cat sat."),
        ("news/b.txt", "news", "A dog ran.")]
    flat = tmp_path / "flat"
    write(flat / "x.txt", "one")
    assert [d["domain"] for d in read_docs(flat)] == ["text"]
    assert read_docs(flat / "x.txt")[0]["text"] == "one"


def test_jsonl_text_and_domain_fields(tmp_path):
    f = write(tmp_path / "eval.jsonl", "\n".join(json.dumps(r) for r in [
        {"content": "first doc", "src": "web"}, {"content": "second", "src": "books", "id": "b-1"}]) + "\n\n")
    docs = read_docs(f, text_field="content", domain_field="src")
    assert [(d["id"], d["domain"], d["text"]) for d in docs] == [("eval.jsonl:1", "web", "first doc"),
                                                                 ("b-1", "books", "second")]
    assert {d["domain"] for d in read_docs(f, text_field="content")} == {"text"}


def test_jsonl_folder_one_domain_per_file(tmp_path):
    write(tmp_path / "web.jsonl", json.dumps({"text": "a"}) + "\n")
    write(tmp_path / "code.jsonl", json.dumps({"text": "b"}) + "\n" + json.dumps({"text": "c"}) + "\n")
    assert [(d["domain"], d["text"]) for d in read_docs(tmp_path)] == [("code", "b"), ("code", "c"), ("web", "a")]


def test_saved_hf_dataset(tmp_path):
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_dict({"body": ["alpha text", "", "beta text"], "genre": ["x", "y", "x"]})
    ds.save_to_disk(str(tmp_path / "one"))
    docs = read_docs(tmp_path / "one", text_field="body", domain_field="genre")
    assert [(d["domain"], d["text"]) for d in docs] == [("x", "alpha text"), ("x", "beta text")]  # empty row dropped
    DatasetDict({"train": ds, "validation": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert [d["text"] for d in read_docs(tmp_path / "dd", text_field="body")] == ["alpha text"]  # validation
    assert len(read_docs(tmp_path / "dd", text_field="body", split="train")) == 2
    with pytest.raises(SourceError, match=r"no column 'text' \(columns: body, genre; --text-field\)$"):
        read_docs(tmp_path / "one")
    with pytest.raises(SourceError, match=r"no split 'dev' \(splits: train, validation\)$"):
        read_docs(tmp_path / "dd", text_field="body", split="dev")


@pytest.mark.parametrize("make, msg", [
    (lambda p: p / "missing", r"missing: no such file or folder$"),
    (lambda p: (p / "empty").mkdir() or p / "empty", r"empty: no \.txt or \.jsonl files"),
    (lambda p: write(p / "e" / "a.txt", "  \n"), r"a\.txt: empty file$"),
    (lambda p: write(p / "e.jsonl", ""), r"e\.jsonl: empty file$"),
    (lambda p: write(p / "bad.jsonl", '{"text": "ok"}\n{"text": oops}\n'), r"bad\.jsonl:2: not JSON$"),
    (lambda p: write(p / "f.jsonl", '{"text": "ok"}\n{"body": "x"}\n'),
     r"f\.jsonl:2: no 'text' string field \(fields: body; --text-field to choose\)$"),
    (lambda p: write(p / "l.jsonl", '["a"]\n'), r"l\.jsonl:1: a JSON list, not an object"),
    (lambda p: write(p / "b.bin", "x"), r"b\.bin: not a \.txt or \.jsonl file"),
    (lambda p: write_bytes(p / "u.txt", b"\xff\xfe"), r"u\.txt: not UTF-8 text \(byte 0\)$"),
])
def test_refusals_name_the_file_and_line(tmp_path, make, msg):
    with pytest.raises(SourceError, match=msg) as e:
        read_docs(make(tmp_path))
    assert "\n" not in str(e.value)


def test_domain_field_with_one_value_per_document_is_refused(tmp_path):
    f = write(tmp_path / "d.jsonl", "".join(json.dumps({"text": f"doc {i}", "url": f"u{i}"}) + "\n" for i in range(70)))
    with pytest.raises(SourceError, match=r"d\.jsonl: field 'url' gives 70 domains over 70 documents \(more than 64"):
        read_docs(f, domain_field="url")
    assert len(read_docs(f, domain_field="url", max_domains=100)) == 70


def test_is_corpus(tmp_path):
    assert not is_corpus(tmp_path)
    write(tmp_path / "docs" / "eval.jsonl", "")
    assert is_corpus(tmp_path)
