"""Atomic file writes and file hashes: standard library only, shared by every part of the package.

A writer gets a temp file beside the target, the file is fsynced, then renamed over the target: a crash at any
moment leaves the old file or the new one, never a torn one. Used for model weights, checkpoints, corpora
manifests, eval-set caches, labels, score files and probe sets.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

PathLike = Union[str, Path]


def sha256_file(path: PathLike, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path) for a temp file beside `path`, fsync it, make it 0644, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are shared (and some committed)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_stream(path: PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Like atomic_write, for writers that take an open binary file (np.savez_compressed, pq.write_table)."""
    def to_file(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write(f)
    return atomic_write(path, to_file)


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
