"""What tokengap may move, replace or delete, and where it may write: standard library only.

Every folder the project makes and may later move aside or replace (a run directory, a corpus, a corpus being
built) gets a marker file, `.tokengap` naming its kind, before anything else is written into it. Only a folder
with that marker, or an empty one, is ever moved, replaced or deleted; anything else is refused in one line naming
the folder (Refused), because a mistyped path must never cost anyone their files. Folders made before the marker
existed are recognised by the file only their kind writes (LEGACY).

Outputs never go into the committed results/ unless the command exists to regenerate it (in_results), and a
training run holds an advisory lock in its run directory for its whole life (hold_lock): one writer per run.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import IO, Optional, Union

from tokengap.models.atomic import atomic_write_text

PathLike = Union[str, Path]
MARKER = ".tokengap"
LOCK = ".lock"
RESULTS = Path(__file__).resolve().parents[2] / "results"  # the repository's results/ (this is tokengap/models/ours.py)
KINDS = {"run": "run directory", "corpus": "corpus", "figures": "figure folder"}
LEGACY = {"run": "run.json", "corpus": "manifest.json"}  # each holds "tokenizer_sha256"


class Refused(Exception):
    """One line: a file or folder that is not ours to move, replace or delete, or a run another process writes."""


def kind_of(path: PathLike) -> Optional[str]:
    """The kind of tokengap folder `path` is ("run", "corpus"), or None: not one of ours."""
    path = Path(path)
    try:
        return json.loads((path / MARKER).read_text())["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for kind, name in LEGACY.items():
        try:
            info = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and "tokenizer_sha256" in info:
            return kind
    return None


def check_ours(path: PathLike, kind: str, key: str = "") -> None:
    """Refuse unless `path` is missing, an empty folder, or a folder of ours of this kind; `key` (the setting or
    flag that named it) starts the line."""
    path = Path(path)
    where = f"{key} {path}" if key else str(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise Refused(f"{where}: not a folder, so not a {KINDS[kind]}; pick another path")
    if kind_of(path) != kind and any(path.iterdir()):
        raise Refused(f"{where}: not a tokengap {KINDS[kind]} (it holds other files and no {MARKER} marker); "
                      "refusing to move, replace or write into it: pick a new or empty folder")


def mark(path: PathLike, kind: str) -> None:
    atomic_write_text(Path(path) / MARKER, json.dumps({"kind": kind}) + "\n")


def make_ours(path: PathLike, kind: str) -> Path:
    """`path` as a folder of this kind: created with its parents (the marker its first file), an empty folder
    taken over, one of ours kept as it is; anything else refused."""
    path = Path(path)
    check_ours(path, kind)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / MARKER).is_file():
        mark(path, kind)
    return path


def move_aside(path: PathLike, kind: str) -> Path:
    """Rename our folder `path` to `<name>.old-<time>` beside it and return that. A rename, never a copy and
    delete: nothing is half moved, and a folder on another file system (a mount point) is refused."""
    path = Path(path)
    check_ours(path, kind)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = path.with_name(f"{path.name}.old-{stamp}"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.old-{stamp}-{n}")
    try:
        os.rename(path, aside)
    except OSError as exc:
        raise Refused(f"{path}: cannot be moved aside to {aside.name} ({exc.strerror}); move it yourself") from None
    return aside


def remove_ours(path: PathLike, kind: str) -> None:
    check_ours(path, kind)
    shutil.rmtree(path, ignore_errors=True)


def replace_ours(new: PathLike, path: PathLike, kind: str) -> None:
    """Put the complete folder `new` in place of `path` (ours, empty or missing) with renames only: the previous
    one goes to `.<name>.old` beside it first, so an interruption leaves one of the two (see restore_ours)."""
    new, path = Path(new), Path(path)
    check_ours(path, kind)
    old = path.parent / f".{path.name}.old"
    remove_ours(old, kind)
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


def restore_ours(path: PathLike, kind: str) -> None:
    """Finish a replace_ours that was interrupted between its two renames."""
    path = Path(path)
    old = path.parent / f".{path.name}.old"
    if not path.exists() and old.exists():
        check_ours(old, kind)
        os.replace(old, path)


def in_results(path: PathLike) -> bool:
    """Whether `path` lies in the committed results/ of this repository."""
    p = Path(path).resolve()
    return p == RESULTS or RESULTS in p.parents


def _busy(folder: Path, pid: str) -> Refused:
    return Refused(f"{folder}: another training (pid {pid or '?'}) is writing to this run directory; wait for it "
                   "to end or pick another run_dir")


def check_unlocked(folder: PathLike) -> None:
    """Refuse a folder whose lock another process holds (hold_lock); creates nothing."""
    try:
        f = open(Path(folder) / LOCK)
    except OSError:
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(Path(folder), f.read().strip()) from None


def hold_lock(folder: PathLike) -> IO:
    """An exclusive advisory lock on `folder`/.lock, held while the returned file is open. The kernel drops it
    when the process ends in any way, so a killed run leaves no stale lock. Another holder: Refused."""
    folder = Path(folder)
    f = open(folder / LOCK, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        raise _busy(folder, pid) from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f
