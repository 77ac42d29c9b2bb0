"""Read files out of fetched packages (.deb, wheel/zip, tarball) without unpacking them to disk or running them.

`iter_files(path, want)` yields `(inner_path, bytes)` for every regular file whose path `want(path)` accepts,
in archive order. A .deb is an `ar` archive whose `data.tar.*` member holds the files (what `dpkg-deb -x`
extracts); it is read here in Python, so no Debian tool is needed once the file is fetched.
"""
from __future__ import annotations

import io
import lzma
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Iterator

Want = Callable[[str], bool]


def iter_files(path: Path, want: Want) -> Iterator[tuple[str, bytes]]:
    name = Path(path).name
    if name.endswith(".deb"):
        yield from _iter_deb(Path(path), want)
    elif name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir() and want(info.filename):
                    yield info.filename, z.read(info)
    elif name.endswith((".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar")):
        with tarfile.open(path, "r:*") as t:
            yield from iter_tar(t, want)
    else:
        raise ValueError(f"{path}: unknown archive type")


def iter_tar(t: tarfile.TarFile, want: Want) -> Iterator[tuple[str, bytes]]:
    for m in t:
        name = m.name[2:] if m.name.startswith("./") else m.name
        if m.isfile() and want(name):
            f = t.extractfile(m)
            if f is not None:
                yield name, f.read()


def _ar_members(f) -> Iterator[tuple[str, int]]:
    """(name, size) of each member of an ar archive, leaving `f` positioned at the member's data."""
    if f.read(8) != b"!<arch>\n":
        raise ValueError("not an ar archive (.deb)")
    while True:
        header = f.read(60)
        if len(header) < 60:
            return
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        start = f.tell()
        yield name, size
        f.seek(start + size + (size & 1))  # members are 2-byte aligned


def _iter_deb(path: Path, want: Want) -> Iterator[tuple[str, bytes]]:
    with open(path, "rb") as f:
        for name, size in _ar_members(f):
            if not name.startswith("data.tar"):
                continue
            if name.endswith((".xz", ".gz", ".bz2")) or name == "data.tar":
                with tarfile.open(fileobj=io.BytesIO(f.read(size)), mode="r:*") as t:
                    yield from iter_tar(t, want)
                return
            break  # e.g. data.tar.zst: let dpkg-deb decompress it
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError(f"{path.name}: data member {name} needs dpkg-deb, which is not installed")
    proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:") as t:
        yield from iter_tar(t, want)


def iter_nested_tar_xz(data: bytes, want: Want) -> Iterator[tuple[str, bytes]]:
    """Files of a .tar.xz held in memory (linux-source ships its tree as one), streamed."""
    with tarfile.open(fileobj=lzma.LZMAFile(io.BytesIO(data)), mode="r|") as t:
        yield from iter_tar(t, want)


__all__ = ["iter_files", "iter_tar", "iter_nested_tar_xz"]
