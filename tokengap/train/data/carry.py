"""Carry a built corpus to another machine: `pack` writes one .tar.xz of docs + tokenizer + manifest (the token
shards are left out: they are re-made on arrival), `unpack` re-tokenizes in parallel and checks that the
resulting train.bin has the manifest's sha256. Imports only the standard library, numpy and tokenizers.

Inside the archive the train documents are sorted by id (`docs/train.by_id.jsonl`): files of one package side by
side compress far better than the shuffled training order (measured on `small`: see docs/data.md). `unpack` puts
them back in training order (the seeded sha256 order of ids) and checks docs/train.jsonl against the manifest.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from tokengap.models.atomic import sha256_file
from tokengap.models.ours import Refused, check_ours, make_ours, mark, replace_ours

PACKED = ("manifest.json", "tokenizer.json", "docs/train.jsonl", "docs/eval.jsonl")  # what unpack restores
IN_ARCHIVE = ("manifest.json", "tokenizer.json", "docs/train.by_id.jsonl", "docs/eval.jsonl")
DERIVED = ("train.bin", "train.json", "train_docs.npy")


class CarryError(RuntimeError):
    """A packed corpus that does not match its manifest."""


def pack(corpus: Path, out: Path, log: Callable = print) -> Path:
    """`corpus` (a built `<root>/<mix>`) -> `out` (.tar.xz). Uses the `xz` program when present (multi-threaded),
    else Python's lzma; both at preset 9."""
    corpus, out = Path(corpus), Path(out)
    if out.exists() and not _is_archive(out):
        raise Refused(f"{out}: exists and is not a corpus archive; refusing to replace it: pick another --out")
    manifest = json.loads((corpus / "manifest.json").read_text())
    for rel in PACKED[1:]:
        if sha256_file(corpus / rel) != manifest["files"][rel]["sha256"]:
            raise CarryError(f"{corpus / rel}: sha256 differs from the manifest; rebuild before packing")
    t0 = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if shutil.which("xz"):
        with open(tmp, "wb") as f:
            xz = subprocess.Popen(["xz", "-9", "-T0", "-c"], stdin=subprocess.PIPE, stdout=f)
            with tarfile.open(fileobj=xz.stdin, mode="w|") as t:
                _add_all(t, corpus, manifest["mix"])
            xz.stdin.close()
            if xz.wait() != 0:
                raise CarryError("xz failed")
    else:
        with tarfile.open(tmp, mode="w:xz", preset=9) as t:
            _add_all(t, corpus, manifest["mix"])
    os.replace(tmp, out)
    log(f"packed {corpus} -> {out}: {out.stat().st_size / 1e6:.1f} MB in {time.time() - t0:.0f}s")
    return out


def _is_archive(path: Path) -> bool:
    """Whether `path` is an archive `pack` wrote: an xz tar whose first member is <mix>/manifest.json."""
    try:
        with tarfile.open(path, mode="r:xz") as t:
            first = t.next()
    except (tarfile.TarError, OSError, EOFError):
        return False
    return first is not None and first.name.endswith("/manifest.json")


def _add_all(t: tarfile.TarFile, corpus: Path, mix: str) -> None:
    for rel in IN_ARCHIVE:  # manifest first: unpack reads it before anything else
        if rel == "docs/train.by_id.jsonl":
            data = b"".join(sorted(_lines(corpus / "docs/train.jsonl"), key=_line_id))
        else:
            data = (corpus / rel).read_bytes()
        info = tarfile.TarInfo(f"{mix}/{rel}")
        info.size, info.mtime, info.mode = len(data), 0, 0o644  # same bytes in, same archive out
        t.addfile(info, io.BytesIO(data))


def _lines(path: Path) -> list[bytes]:
    with open(path, "rb") as f:
        return f.readlines()


def _line_id(line: bytes) -> str:
    return json.loads(line)["id"]


def restore_train_order(by_id: Path, out: Path, seed: int) -> None:
    """docs/train.jsonl from the id-sorted copy: the builder's seeded order, line bytes unchanged."""
    from .split import order_key

    lines = _lines(by_id)
    lines.sort(key=lambda line: order_key(seed, "train", _line_id(line)))
    with open(out, "wb") as f:
        f.writelines(lines)
    by_id.unlink()


def unpack(archive: Path, root: Path, workers: int = 16, log: Callable = print) -> Path:
    """`archive` -> `<root>/<mix>/`, complete with train.bin etc.; raises CarryError on any hash mismatch."""
    from .bpe import set_threads

    set_threads(workers)  # before tokenizers first runs in this process
    from .bpe import load
    from .shards import write_token_files

    t0 = time.time()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    work = make_ours(root / f".unpack.partial-{os.getpid()}", "corpus")
    try:
        mix = _extract(Path(archive), work)
        check_ours(root / mix, "corpus")  # before the long re-tokenization
        corpus = work / mix
        mark(corpus, "corpus")
        manifest = json.loads((corpus / "manifest.json").read_text())
        restore_train_order(corpus / "docs/train.by_id.jsonl", corpus / "docs/train.jsonl", manifest["config"]["seed"])
        for rel in PACKED[1:]:
            _check(corpus / rel, manifest["files"][rel]["sha256"], rel)
        log(f"unpacked and verified docs in {time.time() - t0:.1f}s; tokenizing with {workers} threads")
        tok = load(corpus / "tokenizer.json")
        info = write_token_files(corpus, tok, corpus / "tokenizer.json", _texts(corpus / "docs/train.jsonl"))
        for rel in DERIVED:
            _check(corpus / rel, manifest["files"][rel]["sha256"], rel)
        out = root / mix
        replace_ours(corpus, out, "corpus")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"corpus {mix} ready at {out}: {info['n_tokens']:,} tokens, train.bin sha256 matches the manifest "
        f"({time.time() - t0:.1f}s)")
    return out


def subset(corpus: Path, out_mix: str, train_tokens: int, log: Callable = print) -> Path:
    """A smaller corpus `<corpus.parent>/<out_mix>/` that fits where the whole one does not (the device tool's
    64 MiB carry): the first training documents in training order up to `train_tokens` (the shuffled order, so a
    random sample of the mix), the same eval set and tokenizer. train.bin is the original's prefix, byte for
    byte (each document is tokenized alone); the manifest names the subset's files and what it was cut from.
    `pack` and `unpack` then work on it as on any mix."""
    corpus = Path(corpus)
    manifest = json.loads((corpus / "manifest.json").read_text())
    starts = np.load(corpus / "train_docs.npy")
    k = int(np.searchsorted(starts[1:], train_tokens)) + 1  # documents until one ends at or after train_tokens
    k = min(k, len(starts) - 1)
    out = corpus.parent / out_mix
    check_ours(out, "corpus", "--out-mix")
    work = make_ours(corpus.parent / f".{out_mix}.partial-{os.getpid()}", "corpus")
    (work / "docs").mkdir(exist_ok=True)
    try:
        for rel in ("tokenizer.json", "docs/eval.jsonl"):
            shutil.copyfile(corpus / rel, work / rel)
        with open(corpus / "docs/train.jsonl", "rb") as src, open(work / "docs/train.jsonl", "wb") as dst:
            for _ in range(k):
                dst.write(src.readline())
        info = json.loads((corpus / "train.json").read_text())
        n = int(starts[k])
        itemsize = np.dtype(info["dtype"]).itemsize
        with open(corpus / "train.bin", "rb") as src, open(work / "train.bin", "wb") as dst:
            dst.write(src.read(n * itemsize))
        np.save(work / "train_docs.npy", starts[:k + 1].astype(np.int64))
        info.update(n_tokens=n, n_docs=k)
        (work / "train.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        sub = dict(manifest, mix=out_mix, subset_of={"mix": manifest["mix"], "manifest_hash": manifest.get("manifest_hash"),
                                                     "train_docs": k, "train_tokens": n})
        sub["files"] = {rel: dict(manifest["files"].get(rel, {}), sha256=sha256_file(work / rel))
                        for rel in PACKED[1:] + DERIVED}
        (work / "manifest.json").write_text(json.dumps(sub, indent=1, sort_keys=True) + "\n")
        replace_ours(work, out, "corpus")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"subset {out}: {k:,} of {len(starts) - 1:,} train documents, {n:,} tokens; eval set and tokenizer unchanged")
    return out


def _check(path: Path, expected: str, rel: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise CarryError(f"{rel}: sha256 {actual} differs from the manifest's {expected}. "
                         "The archive is corrupt, or this tokenizers version encodes differently.")


def _extract(archive: Path, dest: Path) -> str:
    """Extract only the expected members (no links, no paths outside `dest`); returns the mix name."""
    mix = None
    with tarfile.open(archive, mode="r:xz") as t:
        for m in t:
            top, _, rel = m.name.partition("/")
            if mix is None:
                mix = top
            if top != mix or top in ("", ".", "..") or rel not in IN_ARCHIVE or not m.isfile():
                raise CarryError(f"{archive}: unexpected member {m.name!r}")
            target = dest / mix / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with t.extractfile(m) as src, open(target, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
    if mix is None:
        raise CarryError(f"{archive}: empty archive")
    return mix


def _texts(path: Path) -> Iterator[str]:
    with io.open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["text"]


__all__ = ["pack", "unpack", "subset", "restore_train_order", "CarryError", "PACKED", "IN_ARCHIVE", "DERIVED"]
