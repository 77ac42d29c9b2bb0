"""What the training loop reads: a packed corpus (`PackedCorpus`) and seeded, resumable, rank-sliced batches of
token windows (`TokenWindows`). `prepare_hf` writes a Hugging Face dataset in the same packed format.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch


class PackedCorpus:
    """`<corpus_dir>/train.bin` as a read-only memmap, with its document starts and metadata."""

    def __init__(self, corpus_dir: str | Path):
        self.dir = Path(corpus_dir)
        if not (self.dir / "train.json").exists():
            raise FileNotFoundError(f"{self.dir}: no train.json; build it with "
                                    "`python -m tokengap.train.data build --mix ...`")
        info = json.loads((self.dir / "train.json").read_text())
        self.info = info
        self.tokens = np.memmap(self.dir / "train.bin", dtype=np.dtype(info["dtype"]), mode="r")
        if len(self.tokens) != info["n_tokens"]:
            raise ValueError(f"{self.dir}/train.bin: {len(self.tokens)} tokens, train.json says {info['n_tokens']}")
        self.doc_starts = np.load(self.dir / "train_docs.npy")  # (n_docs + 1,): each document's EOT, then n_tokens
        self.vocab_size: int = info["vocab_size"]
        self.eot_id: int = info["eot_id"]
        self.tokenizer_sha256: str = info["tokenizer_sha256"]
        manifest = self.dir / "manifest.json"
        self.manifest: dict = json.loads(manifest.read_text()) if manifest.exists() else {}

    def __len__(self) -> int:
        return len(self.tokens)

    def document(self, i: int) -> np.ndarray:
        """Tokens of document i, without its leading EOT."""
        return np.asarray(self.tokens[self.doc_starts[i] + 1: self.doc_starts[i + 1]])


class TokenWindows:
    """Non-overlapping windows of `seq_len + 1` tokens (stride `seq_len`) visited in a seeded permutation that is
    redrawn per epoch. `batch(step, ...)` is a pure function of (step, rank, world): a resumed run at step k gets
    exactly the batches it would have got, and the ranks of a step together hold the single-process batch."""

    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int):
        if len(tokens) < seq_len + 1:
            raise ValueError(f"TokenWindows: {len(tokens)} tokens cannot fill one window of {seq_len + 1}")
        self.tokens, self.seq_len, self.seed = tokens, int(seq_len), int(seed)
        self._perm_epoch, self._perm = -1, None

    @property
    def windows_per_epoch(self) -> int:
        return (len(self.tokens) - 1) // self.seq_len

    def __len__(self) -> int:
        return self.windows_per_epoch

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:  # one epoch's permutation cached: batches walk epochs in order
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.windows_per_epoch)
            self._perm_epoch = epoch
        return self._perm

    def window(self, sample: int) -> np.ndarray:
        """The `sample`-th window of the whole stream (epoch = sample // windows_per_epoch)."""
        epoch, pos = divmod(sample, self.windows_per_epoch)
        start = int(self.permutation(epoch)[pos]) * self.seq_len
        return np.asarray(self.tokens[start: start + self.seq_len + 1], dtype=np.int64)

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), int64 of shape (batch_size // world, seq_len): samples
        [step*batch_size + rank*per_rank, ... + per_rank) of the stream."""
        if batch_size % world != 0 or not 0 <= rank < world:
            raise ValueError(f"TokenWindows.batch: batch_size={batch_size} must split evenly over world={world} "
                             f"(rank={rank})")
        per_rank = batch_size // world
        first = step * batch_size + rank * per_rank
        rows = np.stack([self.window(first + j) for j in range(per_rank)])
        x = torch.from_numpy(rows)
        return x[:, :-1].contiguous(), x[:, 1:].contiguous()


def prepare_hf(path: str, name: Optional[str] = None, split: str = "train", data_files=None, text_field: str = "text",
               streaming: bool = False, tokenizer: str | Path = "build/corpus/small/tokenizer.json",
               max_tokens: Optional[int] = None, out_dir: str | Path = "build/hf", log=print) -> dict:
    """Tokenize a `datasets.load_dataset` source into `out_dir/train.{bin,json}` + `train_docs.npy`."""
    from .hf import prepare_hf as _prepare

    return _prepare(path, name=name, split=split, data_files=data_files, text_field=text_field, streaming=streaming,
                    tokenizer=tokenizer, max_tokens=max_tokens, out_dir=out_dir, log=log)


__all__ = ["PackedCorpus", "TokenWindows", "prepare_hf"]
