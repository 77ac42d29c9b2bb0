"""The tokenized held-out evaluation set, and how it is cut into scoring contexts (see docs/formats.md).

Every model is scored on the same eval documents; a score file is aligned token by token with the EvalSet it
came from, and `eval_hash` says which one that is.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from tokengap.models.atomic import atomic_write_stream

CACHE_NAME = "eval_tokens.npz"


def sha256_bytes(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))  # length-prefixed: no ambiguity between parts
        h.update(p)
    return h.hexdigest()


def tokenizer_content_sha256(tokenizer_json: str) -> str:
    """sha256 of what decides a tokenizer's ids: its model (vocabulary, merges), normalizer, pre-tokenizer and
    added tokens, as canonical JSON. A tokenizer.json re-saved by transformers (another post-processor, other
    formatting) gives the same ids and the same content hash, where its file hash differs."""
    d = json.loads(tokenizer_json)
    model = dict(d.get("model") or {})
    if isinstance(model.get("merges"), list):  # ["a b"] and [["a", "b"]] are two spellings of one merge list
        model["merges"] = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    content = {"model": model, "normalizer": d.get("normalizer"), "pre_tokenizer": d.get("pre_tokenizer"),
               "added_tokens": [(t.get("id"), t.get("content"), t.get("special")) for t in d.get("added_tokens", [])]}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class TextTokenizer:
    """A tokenizer that returns ids and character offsets: ours (tokenizer.json) or a Hugging Face one.

    `sha256` identifies it (two score files must share it to be compared); `eot_id` starts every context."""

    def __init__(self, encode_batch, eot_id: int, sha256: str, name: str, content_sha256: str = ""):
        self._encode_batch, self.eot_id, self.sha256, self.name = encode_batch, eot_id, sha256, name
        self.content_sha256 = content_sha256  # tokenizer_content_sha256: the same for the same ids

    def encode(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        return self._encode_batch(list(texts))

    @classmethod
    def from_file(cls, path: Union[str, Path], eot_token: str = "<|endoftext|>") -> "TextTokenizer":
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():  # the tokenizers library's own error names no path
            raise FileNotFoundError(f"{path}: no such tokenizer file")
        return cls.from_tokenizers(Tokenizer.from_file(str(path)), str(path), (eot_token,),
                                   hashlib.sha256(path.read_bytes()).hexdigest(), path.read_text(encoding="utf-8"))

    @classmethod
    def from_tokenizers(cls, tok, name: str, eot_tokens=("<|endoftext|>",), sha256: Optional[str] = None,
                        json_text: Optional[str] = None) -> "TextTokenizer":
        """A `tokenizers.Tokenizer`; EOT: the first of `eot_tokens` it has. sha256 / json_text: of the file it came
        from (default: of its serialisation)."""
        eot = next((tok.token_to_id(t) for t in eot_tokens if tok.token_to_id(t) is not None), None)
        if eot is None:
            raise ValueError(f"{name}: no {' or '.join(repr(t) for t in eot_tokens)} token")

        def encode_batch(texts):
            return [(e.ids, e.offsets) for e in tok.encode_batch(texts, add_special_tokens=False)]

        json_text = tok.to_str() if json_text is None else json_text
        return cls(encode_batch, eot, sha256 or hashlib.sha256(json_text.encode()).hexdigest(), name,
                   tokenizer_content_sha256(json_text))

    @classmethod
    def from_hf(cls, name_or_path: str) -> "TextTokenizer":
        """A transformers tokenizer by name or path (see from_hf_tokenizer)."""
        from transformers import AutoTokenizer

        return cls.from_hf_tokenizer(AutoTokenizer.from_pretrained(name_or_path), name_or_path)

    @classmethod
    def from_hf_tokenizer(cls, tok, name: str) -> "TextTokenizer":
        """A transformers tokenizer object (must be a fast tokenizer: offsets come from its Rust backend); EOT: its
        BOS, else its EOS."""
        if not getattr(tok, "is_fast", False):
            raise ValueError(f"{name}: a fast tokenizer is needed for character offsets")
        eot = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if eot is None:
            raise ValueError(f"{name}: tokenizer has neither a BOS nor an EOS token to start contexts")

        def encode_batch(texts):
            enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
            return [(ids, [tuple(o) for o in offs]) for ids, offs in zip(enc["input_ids"], enc["offset_mapping"])]

        text = tok.backend_tokenizer.to_str()
        return cls(encode_batch, eot, hashlib.sha256(text.encode()).hexdigest(), name, tokenizer_content_sha256(text))


def read_jsonl(path: Union[str, Path]) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class EvalSet:
    """docs: [{"id", "domain", "source", "text"}]; token arrays are concatenated over docs in order.

    tokens: (N,) int32; doc_index: (N,) int32; offsets: (N, 2) int32 [start, end) in the doc's text;
    doc_starts: (n_docs + 1,) int64."""
    docs: list[dict]
    tokens: np.ndarray
    doc_index: np.ndarray
    offsets: np.ndarray
    doc_starts: np.ndarray
    eot_id: int
    tokenizer_sha256: str
    tokenizer_content_sha256: str = ""  # see tokenizer_content_sha256 ("" where not known)

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def eval_tokens_sha256(self) -> str:
        """The documents and their token ids, whatever file the tokenizer came from (eval_hash adds its file hash)."""
        ids = "\n".join(d["id"] for d in self.docs).encode()
        return sha256_bytes(ids, self.tokens.astype("<i4").tobytes(), self.doc_starts.astype("<i8").tobytes())

    @property
    def eval_hash(self) -> str:
        ids = "\n".join(d["id"] for d in self.docs).encode()
        return sha256_bytes(self.tokenizer_sha256.encode(), ids, self.tokens.astype("<i4").tobytes(),
                            self.doc_starts.astype("<i8").tobytes())

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def from_docs(cls, docs: Sequence[dict], tokenizer: TextTokenizer) -> "EvalSet":
        encoded = tokenizer.encode([d["text"] for d in docs])
        lengths = np.array([len(ids) for ids, _ in encoded], dtype=np.int64)
        doc_starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        n = int(doc_starts[-1])
        tokens = np.fromiter((t for ids, _ in encoded for t in ids), dtype=np.int32, count=n)
        offsets = np.fromiter((o for _, offs in encoded for off in offs for o in off), dtype=np.int32,
                              count=2 * n).reshape(n, 2)
        doc_index = np.repeat(np.arange(len(docs), dtype=np.int32), lengths)
        return cls(list(docs), tokens, doc_index, offsets, doc_starts, tokenizer.eot_id, tokenizer.sha256,
                   tokenizer.content_sha256)

    @classmethod
    def from_corpus(cls, corpus_dir: Union[str, Path], tokenizer: Optional[TextTokenizer] = None,
                    cache: bool = True) -> "EvalSet":
        """docs/eval.jsonl of a built corpus, with its own tokenizer.json unless another is given.

        With our tokenizer the tokenization is cached as eval_tokens.npz (checked against tokenizer sha256
        and the docs file's sha256 before use)."""
        corpus_dir = Path(corpus_dir)
        docs_path = corpus_dir / "docs" / "eval.jsonl"
        if not docs_path.is_file():
            raise FileNotFoundError(f"{docs_path}: no evaluation documents (build the corpus: make data DATA=...)")
        docs = read_jsonl(docs_path)
        own = tokenizer is None
        tokenizer = tokenizer or TextTokenizer.from_file(corpus_dir / "tokenizer.json")
        if not (own and cache and docs):  # nothing to cache for an empty set (the commands refuse it)
            return cls.from_docs(docs, tokenizer)
        docs_sha = hashlib.sha256(docs_path.read_bytes()).hexdigest()
        cache_path = corpus_dir / CACHE_NAME
        if cache_path.is_file():
            with np.load(cache_path, allow_pickle=False) as z:
                if str(z["tokenizer_sha256"]) == tokenizer.sha256 and str(z["docs_sha256"]) == docs_sha:
                    return cls(docs, z["tokens"], z["doc_index"], z["offsets"], z["doc_starts"],
                               int(z["eot_id"]), tokenizer.sha256, tokenizer.content_sha256)
        ev = cls.from_docs(docs, tokenizer)
        ev.save_tokens(cache_path, docs_sha256=docs_sha)
        return ev

    def save_tokens(self, path: Union[str, Path], docs_sha256: str = "") -> None:
        atomic_write_stream(path, lambda f: np.savez_compressed(
            f, tokens=self.tokens, doc_index=self.doc_index, offsets=self.offsets, doc_starts=self.doc_starts,
            eot_id=np.int64(self.eot_id), tokenizer_sha256=np.str_(self.tokenizer_sha256),
            docs_sha256=np.str_(docs_sha256), eval_hash=np.str_(self.eval_hash)))

    # ---- per-token views ----------------------------------------------------------------------------
    def doc_tokens(self, i: int) -> np.ndarray:
        return self.tokens[self.doc_starts[i]:self.doc_starts[i + 1]]

    def position_in_doc(self) -> np.ndarray:
        """(N,) int64: index of each token within its document."""
        return np.arange(self.n_tokens, dtype=np.int64) - self.doc_starts[self.doc_index]

    def ctx_pos(self, context_len: int) -> np.ndarray:
        """(N,) int64: position of each token's prediction within its scoring window (see windows())."""
        return self.position_in_doc() % context_len

    def window_id(self, context_len: int) -> np.ndarray:
        """(N,) int64: a distinct id per scoring window; "same context" means same window id."""
        w = self.position_in_doc() // context_len
        return self.doc_index.astype(np.int64) * (1 << 32) + w

    def domains(self) -> np.ndarray:
        """(N,) object array of domain labels."""
        return np.array([d["domain"] for d in self.docs], dtype=object)[self.doc_index]

    def windows(self, context_len: int) -> Iterable[tuple[int, int, int]]:
        """(doc, first target token (global index), n targets) for every scoring window, in token order.

        Window k of a document predicts its tokens kT .. kT+n-1 from the input s[kT : kT+n] where
        s = [EOT] + document tokens (docs/formats.md, "Contexts")."""
        for d in range(len(self.docs)):
            a, b = int(self.doc_starts[d]), int(self.doc_starts[d + 1])
            for s in range(a, b, context_len):
                yield d, s, min(context_len, b - s)

    def subset(self, max_docs_per_domain: int) -> tuple["EvalSet", np.ndarray]:
        """The first `max_docs_per_domain` documents of each domain (quick evaluation during training), and the
        indices (into this set's tokens) of the tokens it keeps, for cutting per-token arrays the same way."""
        seen: dict[str, int] = {}
        keep = []
        for i, d in enumerate(self.docs):
            if seen.get(d["domain"], 0) < max_docs_per_domain:
                seen[d["domain"]] = seen.get(d["domain"], 0) + 1
                keep.append(i)
        return self.take_docs(keep)

    def take_docs(self, keep: Sequence[int]) -> tuple["EvalSet", np.ndarray]:
        """The documents `keep` (indices, in order), whole, and the indices (into this set's tokens) of their tokens."""
        idx = np.concatenate([np.arange(self.doc_starts[i], self.doc_starts[i + 1]) for i in keep] or
                             [np.zeros(0, dtype=np.int64)]).astype(np.int64)
        lengths = np.array([self.doc_starts[i + 1] - self.doc_starts[i] for i in keep], dtype=np.int64)
        sub = EvalSet([self.docs[i] for i in keep], self.tokens[idx], np.repeat(np.arange(len(keep), dtype=np.int32), lengths),
                      self.offsets[idx], np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), self.eot_id,
                      self.tokenizer_sha256, self.tokenizer_content_sha256)
        return sub, idx
