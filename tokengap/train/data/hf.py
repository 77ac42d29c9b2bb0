"""Hugging Face datasets -> the packed training format, so `PackedCorpus` serves FineWeb-Edu, The Stack,
Wikipedia or PG-19 the same way it serves the embedded corpus. Needs `datasets` (and network for hub datasets);
tested on local JSON and text files.

    python -m tokengap.train.data prepare-hf HuggingFaceFW/fineweb-edu --name sample-10BT --streaming \
        --tokenizer build/corpus/small/tokenizer.json --max-tokens 500000000 --out build/hf/fineweb-edu
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterator, Optional

from tokengap.models.ours import check_ours, make_ours, replace_ours

from .bpe import EOT, sha256_file, load
from .shards import write_token_files


def iter_texts(ds, text_field: str) -> Iterator[str]:
    for row in ds:
        text = row.get(text_field)
        if text is None:
            raise KeyError(f"prepare_hf: rows have no field {text_field!r} (fields: {sorted(row)}); use --text-field")
        if text and EOT not in text:
            yield text


def prepare_hf(path: str, name: Optional[str] = None, split: str = "train", data_files=None, text_field: str = "text",
               streaming: bool = False, tokenizer: str | Path = "build/corpus/small/tokenizer.json",
               max_tokens: Optional[int] = None, out_dir: str | Path = "build/hf", log=print) -> dict:
    """`datasets.load_dataset(path, name, split=split, data_files=data_files, streaming=streaming)`, rows'
    `text_field` tokenized in order (EOT before each), stopping after `max_tokens`. Returns train.json's dict."""
    import datasets

    t0 = time.time()
    out = Path(out_dir)
    check_ours(out, "corpus", "--out")  # before the download: an --out of the user's files is refused, never replaced
    ds = datasets.load_dataset(path, name, split=split, data_files=data_files, streaming=streaming)
    work = make_ours(out.parent / f".{out.name}.partial-{os.getpid()}", "corpus")
    try:
        shutil.copyfile(tokenizer, work / "tokenizer.json")
        info = write_token_files(work, load(work / "tokenizer.json"), work / "tokenizer.json",
                                 iter_texts(ds, text_field), max_tokens=max_tokens)
        manifest = {"hf": {"path": path, "name": name, "split": split, "data_files": data_files,
                           "text_field": text_field, "streaming": streaming, "max_tokens": max_tokens},
                    "tokenizer_sha256": info["tokenizer_sha256"], "vocab_size": info["vocab_size"],
                    "files": {rel: {"sha256": sha256_file(work / rel), "bytes": (work / rel).stat().st_size}
                              for rel in ("tokenizer.json", "train.bin", "train.json", "train_docs.npy")}}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")
        replace_ours(work, out, "corpus")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"prepared {path} -> {out}: {info['n_docs']:,} documents, {info['n_tokens']:,} tokens "
        f"({time.time() - t0:.0f}s)")
    return info


__all__ = ["prepare_hf", "iter_texts"]
