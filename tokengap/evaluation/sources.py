"""Evaluation documents from the user's own text (docs/data.md, "Your own evaluation text").

    read_docs("my_eval/")                                 # a folder of .txt files: one document per file
    read_docs("eval.jsonl", text_field="text", domain_field="source")
    read_docs("my_dataset_dir", text_field="content")     # a Hugging Face dataset saved with save_to_disk

Domains: a field of each record (`domain_field`), or one domain per file — the subfolder a .txt file is in, or the
name of each .jsonl file in a folder of them — else one domain, "text". Every document is {"id", "domain", "source",
"text"}, as a built corpus's docs/eval.jsonl. Bad input is a SourceError of one line naming the file (and line),
raised before any tokenizing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Union

# More distinct domains than this is a per-document field (an id, a URL), not a domain: each domain is reported
# and drawn on its own, and a few hundred tokens per domain say nothing.
MAX_DOMAINS = 64


class SourceError(ValueError):
    """Unusable evaluation text (one line, naming the file and line)."""


def is_corpus(path: Union[str, Path]) -> bool:
    """A corpus built by `python -m tokengap.train.data build` (it holds docs/eval.jsonl and its tokenizer)."""
    return (Path(path) / "docs" / "eval.jsonl").is_file()


def is_hf_dataset(path: Path) -> bool:
    """A folder written by `datasets`' save_to_disk (a Dataset or a DatasetDict)."""
    return path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
                              or (path / "state.json").is_file())


def read_docs(source: Union[str, Path], text_field: str = "text", domain_field: Optional[str] = None,
              split: Optional[str] = None, max_domains: int = MAX_DOMAINS) -> list[dict]:
    """The documents of `source`: a .txt file, a folder of .txt files (recursive; a file's domain is its
    first-level subfolder), a .jsonl file, a folder of .jsonl files (a file's domain is its name), or a Hugging
    Face dataset folder (save_to_disk; `split` picks one of a DatasetDict, default the only one or "validation" /
    "test"). domain_field: the record field holding the domain (JSONL, datasets)."""
    p = Path(source)
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    if p.is_dir() and is_hf_dataset(p):
        docs = _hf_docs(p, text_field, domain_field, split)
    elif p.is_dir():
        txt = sorted(f for f in p.rglob("*.txt") if f.is_file())
        jsonl = sorted(f for f in p.rglob("*.jsonl") if f.is_file())
        if txt and jsonl:
            raise SourceError(f"{p}: holds both .txt and .jsonl files ({txt[0].name}, {jsonl[0].name}): one kind")
        if not txt and not jsonl:
            raise SourceError(f"{p}: no .txt or .jsonl files (and not a saved Hugging Face dataset)")
        if txt:
            docs = [_txt_doc(f, f.relative_to(p).parts[0] if len(f.relative_to(p).parts) > 1 else "text", p)
                    for f in txt]
        else:
            docs = [d for f in jsonl for d in _jsonl_docs(f, text_field, domain_field, f.stem, p)]
    elif p.suffix == ".jsonl":
        docs = _jsonl_docs(p, text_field, domain_field, "text", p.parent)
    elif p.suffix == ".txt":
        docs = [_txt_doc(p, "text", p.parent)]
    else:
        raise SourceError(f"{p}: not a .txt or .jsonl file, a folder of them, or a saved Hugging Face dataset")
    if not docs:
        raise SourceError(f"{p}: no documents")
    domains = {d["domain"] for d in docs}
    if len(domains) > max_domains:
        what = f"field {domain_field!r}" if domain_field else "the files' folders / names"
        raise SourceError(f"{p}: {what} gives {len(domains)} domains over {len(docs)} documents (more than "
                          f"{max_domains}: a per-document field, not a domain)")
    return docs


def _txt_doc(f: Path, domain: str, root: Path) -> dict:
    try:
        text = f.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{f}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise SourceError(f"{f}: empty file")
    return {"id": str(f.relative_to(root)), "domain": domain, "source": str(f.relative_to(root)), "text": text}


def _jsonl_docs(f: Path, text_field: str, domain_field: Optional[str], domain: str, root: Path) -> list[dict]:
    docs = []
    with open(f, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise SourceError(f"{f}:{n}: not JSON") from None
            docs.append(_record_doc(rec, text_field, domain_field, domain, f"{f}:{n}",
                                    f"{f.relative_to(root)}:{n}", str(f.relative_to(root))))
    if not docs:
        raise SourceError(f"{f}: empty file")
    return _drop_empty(docs, str(f))


def _drop_empty(docs: list[dict], where: str) -> list[dict]:
    """Records whose text is empty or blank hold no token to score: dropped, and said."""
    kept = [d for d in docs if d["text"].strip()]
    if len(kept) < len(docs):
        print(f"note: {where}: {len(docs) - len(kept)} of {len(docs)} records have empty text (dropped)",
              file=sys.stderr)
    return kept


def _record_doc(rec, text_field: str, domain_field: Optional[str], domain: str, where: str, id_: str,
                source: str) -> dict:
    if not isinstance(rec, dict):
        raise SourceError(f"{where}: a JSON {type(rec).__name__}, not an object with a {text_field!r} field")
    if not isinstance(rec.get(text_field), str):
        fields = ", ".join(sorted(rec)[:8]) or "none"
        raise SourceError(f"{where}: no {text_field!r} string field (fields: {fields}; --text-field to choose)")
    if domain_field is not None:
        if rec.get(domain_field) is None:
            raise SourceError(f"{where}: no {domain_field!r} field (--domain-field)")
        domain = str(rec[domain_field])
    return {"id": str(rec.get("id", id_)), "domain": domain, "source": source, "text": rec[text_field]}


def _hf_docs(p: Path, text_field: str, domain_field: Optional[str], split: Optional[str]) -> list[dict]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(p))
    except Exception as exc:
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        raise SourceError(f"{p}: not a readable saved dataset ({why})") from None
    if isinstance(ds, DatasetDict):
        names = list(ds)
        pick = split or (names[0] if len(names) == 1 else next((s for s in ("validation", "test") if s in ds), None))
        if pick not in ds:
            raise SourceError(f"{p}: splits {', '.join(names)}: choose one (--split)" if split is None else
                              f"{p}: no split {split!r} (splits: {', '.join(names)})")
        ds, p_split = ds[pick], pick
    else:
        p_split = "data"
    if text_field not in ds.column_names:
        raise SourceError(f"{p}: no column {text_field!r} (columns: {', '.join(ds.column_names)}; --text-field)")
    if domain_field is not None and domain_field not in ds.column_names:
        raise SourceError(f"{p}: no column {domain_field!r} (columns: {', '.join(ds.column_names)}; --domain-field)")
    return _drop_empty([_record_doc(rec, text_field, domain_field, "text", f"{p} {p_split} row {i}", f"{p_split}/{i}",
                                    f"{p.name}/{p_split}") for i, rec in enumerate(ds)], str(p))


def load_evalset(source: Union[str, Path], tokenizer=None, text_field: str = "text", domain_field: Optional[str] = None,
                 split: Optional[str] = None, flag: str = "--eval"):
    """The EvalSet of `source`: a built corpus (its docs/eval.jsonl; its own tokenizer unless `tokenizer` is given),
    or the user's own text (read_docs), tokenized by `tokenizer` (a TextTokenizer; needed). SourceError (one line,
    prefixed with `flag`) for unusable text, a missing tokenizer, or text that tokenizes to nothing."""
    from tokengap.evaluation.evalset import EvalSet

    try:
        if is_corpus(source):
            ev = EvalSet.from_corpus(source, tokenizer=tokenizer)
        else:
            docs = read_docs(source, text_field, domain_field, split)
            if tokenizer is None:
                raise SourceError(f"{source}: your own text needs the model's tokenizer (--tokenizer: a "
                                  "tokenizer.json or a Hugging Face tokenizer name)")
            ev = EvalSet.from_docs(docs, tokenizer)
    except SourceError as exc:
        raise SourceError(f"{flag} {exc}") from None
    if ev.n_tokens == 0:
        raise SourceError(f"{flag} {source}: the eval set has no tokens (the text tokenizes to nothing)")
    return ev
