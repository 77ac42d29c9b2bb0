"""Byte-level BPE: train on the training split, encode documents in parallel. Imports only numpy + tokenizers.

Byte-level means every string has an encoding and decode(encode(text)) == text; token offsets index characters
of the original text (a character split over two tokens gives both tokens that character's span).
Token id 0 is `<|endoftext|>` (EOT). Documents that contain that literal string are dropped by the builder, and
encoding here never turns text into the special token (`encode_special_tokens`), so EOT only ever separates
documents.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from tokengap.models.atomic import sha256_file

EOT = "<|endoftext|>"
EOT_ID = 0


def set_threads(workers: int) -> None:
    """Threads for tokenizers' Rayon pool; must run before the first parallel encode of the process."""
    os.environ["RAYON_NUM_THREADS"] = str(max(1, workers))
    os.environ["TOKENIZERS_PARALLELISM"] = "true"


def train_bpe(texts: Iterable[str], vocab_size: int, length: int | None = None):
    """A byte-level BPE trained on `texts`. Deterministic: ties between equally frequent pairs are broken by the
    pairs themselves, and the 256 byte symbols all exist up front (checked by tests/test_data_tokenizer.py)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer, length=length)
    assert tok.token_to_id(EOT) == EOT_ID
    return tok


def load(path: Path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.encode_special_tokens = True  # "<|endoftext|>" inside a text stays text
    return tok


def encode_batches(tok, texts: Iterable[str], batch_chars: int = 4_000_000) -> Iterator[list[np.ndarray]]:
    """Token ids (int64 arrays) of `texts`, in order, a batch of documents at a time (parallel inside a batch)."""
    tok.encode_special_tokens = True
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # _fast skips offsets we do not need here
    batch, size = [], 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= batch_chars:
            yield [np.asarray(e.ids, dtype=np.int64) for e in encode(batch, add_special_tokens=False)]
            batch, size = [], 0
    if batch:
        yield [np.asarray(e.ids, dtype=np.int64) for e in encode(batch, add_special_tokens=False)]


def encode_with_offsets(tok, text: str) -> tuple[np.ndarray, np.ndarray]:
    """ids (n,) and [start, end) character offsets (n, 2) into `text`: what the eval set is scored and labelled by."""
    tok.encode_special_tokens = True
    enc = tok.encode(text, add_special_tokens=False)
    return np.asarray(enc.ids, dtype=np.int64), np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)


def count_tokens(tok, texts: Sequence[str]) -> int:
    return sum(len(a) for batch in encode_batches(tok, texts) for a in batch)


__all__ = ["EOT", "EOT_ID", "set_threads", "train_bpe", "load", "sha256_file", "encode_batches",
           "encode_with_offsets", "count_tokens"]
