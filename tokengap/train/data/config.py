"""`DataConfig`: what a corpus mix is made of. The schema of `tokengap/conf/data/<mix>.yaml` (Hydra structured config).

A key that is not a field fails at load time, naming the key. The training config nests this under `data:`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

DOMAINS = ("books", "encyclopedic", "technical", "news", "python", "c", "html", "latex")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "data"


class DataConfigError(ValueError):
    """A bad data configuration; the message is one line and names the key."""


@dataclass
class DataConfig:
    mix: str = "tiny"  # name of the built corpus: <root>/<mix>/
    root: str = "build/corpus"  # where built corpora live
    cache: str = "build/downloads"  # fetched packages and per-source extractions (reused by every mix)
    vocab_size: int = 8192  # byte-level BPE vocabulary, EOT included
    seed: int = 1234  # selection, eval split and shuffle order
    sources: List[str] = field(default_factory=list)  # names from tokengap/train/data/sources.py
    required: List[str] = field(default_factory=list)  # sources whose absence fails the build ("*": all); others
    # are skipped with the reason recorded in the manifest
    domain_mb: Dict[str, float] = field(default_factory=dict)  # upper bound of text per domain, MB (1e6 bytes, UTF-8)
    source_mb: Dict[str, float] = field(default_factory=dict)  # optional per-source cap, MB
    max_source_share: float = 0.5  # no source exceeds this share of its domain's budget
    eval_tokens: int = 64_000  # held-out eval set size, split evenly across domains (estimated from bytes)
    eval_max_doc_tokens: int = 4_000  # larger documents are never picked for eval (keeps it many documents)
    max_doc_chars: int = 60_000  # longer texts are split at paragraph breaks into parts ("/0001", ...)
    min_doc_chars: int = 200  # shorter documents are dropped
    near_dup_threshold: float = 0.5  # a train document sharing this fraction of its 13-grams with eval is dropped
    tokenizer_sample_mb: float = 0.0  # BPE is trained on this much of the train split (0: all of it)

    def content_hash(self) -> str:
        """sha256 of everything that changes the built bytes (not where they are written)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("root", "cache")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def is_required(self, source: str) -> bool:
        return "*" in self.required or source in self.required

    def corpus_dir(self) -> Path:
        return Path(self.root) / self.mix


def validate(cfg: DataConfig) -> None:
    from .sources import SOURCES  # local: sources imports the extractors

    for d in cfg.domain_mb:
        if d not in DOMAINS:
            raise DataConfigError(f"data.domain_mb: unknown domain {d!r} (known: {', '.join(DOMAINS)})")
    for key in ("sources", "required", "source_mb"):
        for name in getattr(cfg, key):
            if key == "required" and name == "*":
                continue
            if name not in SOURCES:
                raise DataConfigError(f"data.{key}: unknown source {name!r} (see tokengap/train/data/sources.py)")
            if key != "sources" and name not in cfg.sources:
                raise DataConfigError(f"data.{key}: {name!r} is not in data.sources")
    for name in cfg.sources:
        if SOURCES[name].domain not in cfg.domain_mb:
            raise DataConfigError(f"data.sources: {name!r} is {SOURCES[name].domain} text, a domain with no budget")
    if len(set(cfg.sources)) != len(cfg.sources):
        raise DataConfigError("data.sources: a source is listed twice")
    if not 0 < cfg.max_source_share <= 1:
        raise DataConfigError(f"data.max_source_share: must be in (0, 1], got {cfg.max_source_share}")
    if cfg.vocab_size < 512 or cfg.vocab_size > 2**32:
        raise DataConfigError(f"data.vocab_size: must be in [512, 2^32], got {cfg.vocab_size}")


def load_config(mix: str, overrides: Sequence[str] = (), conf_dir: Optional[Path] = None) -> DataConfig:
    """`tokengap/conf/data/<mix>.yaml` over the DataConfig schema, then `key=value` overrides; validated."""
    from omegaconf import OmegaConf

    path = Path(conf_dir or CONF_DIR) / f"{mix}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in Path(conf_dir or CONF_DIR).glob("*.yaml"))
        raise DataConfigError(f"data: no mix {mix!r} ({path} missing; known: {', '.join(known)})")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(path),
                                 OmegaConf.from_dotlist(list(overrides)))
        cfg = OmegaConf.to_object(merged)
    except Exception as exc:  # omegaconf.errors.*: keep the first line, which names the key
        key = getattr(exc, "full_key", None)
        where = f"data.{key}" if key else path.name
        raise DataConfigError(f"{where}: {str(exc).splitlines()[0]} ({path.name})") from None
    validate(cfg)
    return cfg


__all__ = ["DOMAINS", "DataConfig", "DataConfigError", "load_config", "validate"]
