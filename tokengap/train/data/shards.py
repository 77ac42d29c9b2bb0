"""Packed training shards: `train.bin` (EOT d1 EOT d2 ...), `train_docs.npy` (offset of each document's EOT, then
n_tokens) and `train.json` (dtype, counts, vocab, tokenizer hash). See docs/formats.md. numpy + stdlib only.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import numpy as np

from .bpe import EOT_ID, encode_batches, sha256_file


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


def write_token_files(out_dir: Path, tok, tokenizer_path: Path, texts: Iterable[str],
                      max_tokens: int | None = None) -> dict:
    """Encode `texts` (in order) into `out_dir/train.{bin,json}` + `train_docs.npy`; returns train.json's dict
    plus `sha256` of train.bin. With `max_tokens`, stops after the document that reaches it."""
    out_dir = Path(out_dir)
    vocab = tok.get_vocab_size()
    dtype = token_dtype(vocab)
    starts: list[int] = []
    n = 0
    h = hashlib.sha256()
    eot = np.array([EOT_ID], dtype=dtype)
    with open(out_dir / "train.bin", "wb") as f:
        for batch in encode_batches(tok, texts):
            for ids in batch:
                starts.append(n)
                chunk = np.concatenate([eot, ids.astype(dtype)]).tobytes()
                f.write(chunk)
                h.update(chunk)
                n += len(ids) + 1
                if max_tokens is not None and n >= max_tokens:
                    break
            if max_tokens is not None and n >= max_tokens:
                break
    np.save(out_dir / "train_docs.npy", np.asarray(starts + [n], dtype=np.int64))
    info = {"dtype": dtype.name, "n_tokens": n, "n_docs": len(starts), "vocab_size": vocab, "eot_id": EOT_ID,
            "tokenizer_sha256": sha256_file(tokenizer_path)}
    (out_dir / "train.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return {**info, "sha256": h.hexdigest()}


__all__ = ["token_dtype", "write_token_files"]
