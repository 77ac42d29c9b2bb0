"""python -m tokengap.train.data {build,pack,subset,unpack,prepare-hf}: see docs/data.md.

Imports are inside each command: `unpack` (the GPU machine) needs only stdlib + numpy + tokenizers, and
`build` of an up-to-date corpus answers in about a second.
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tokengap.train.data", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="build <root>/<mix>/ from the pinned sources (idempotent)")
    b.add_argument("--mix", default="tiny", help="tokengap/conf/data/<mix>.yaml: tiny | small | large")
    b.add_argument("--root", default=None, help="default: the config's root (build/corpus)")
    b.add_argument("--cache", default=None, help="download cache (default: build/downloads)")
    b.add_argument("--force", action="store_true", help="rebuild even if up to date")
    b.add_argument("--relock", nargs="*", default=[], metavar="PKG",
                   help="Debian packages (or source names) to re-lock at their current version")
    b.add_argument("overrides", nargs="*", help="config overrides, e.g. vocab_size=32768")

    k = sub.add_parser("pack", help="one .tar.xz of docs + tokenizer + manifest, to carry to another machine")
    k.add_argument("--mix", default="small")
    k.add_argument("--root", default="build/corpus")
    k.add_argument("--out", required=True)

    c = sub.add_parser("subset", help="a smaller corpus: the first train documents up to N tokens, same eval set")
    c.add_argument("--mix", default="small")
    c.add_argument("--root", default="build/corpus")
    c.add_argument("--tokens", type=int, required=True, help="train tokens to keep (whole documents)")
    c.add_argument("--out-mix", required=True, help="name of the subset corpus (<root>/<out-mix>/)")

    u = sub.add_parser("unpack", help="unpack an archive and re-tokenize; verifies train.bin against the manifest")
    u.add_argument("archive")
    u.add_argument("--root", default="build/corpus")
    u.add_argument("--workers", type=int, default=16)

    h = sub.add_parser("prepare-hf", help="tokenize a Hugging Face dataset into the packed format")
    h.add_argument("path", help="hub id (e.g. HuggingFaceFW/fineweb-edu) or a builder: json, text, parquet")
    h.add_argument("--name", default=None)
    h.add_argument("--split", default="train")
    h.add_argument("--data-files", nargs="*", default=None)
    h.add_argument("--text-field", default="text")
    h.add_argument("--streaming", action="store_true")
    h.add_argument("--tokenizer", default="build/corpus/small/tokenizer.json")
    h.add_argument("--max-tokens", type=int, default=None)
    h.add_argument("--out", required=True)

    a = p.parse_args(argv)
    from tokengap.models.ours import Refused

    try:
        if a.cmd == "build":
            from .build import build
            from .config import load_config

            overrides = list(a.overrides) + [f"{k}={v}" for k, v in (("root", a.root), ("cache", a.cache)) if v]
            build(load_config(a.mix, overrides), relock=a.relock, force=a.force)
        elif a.cmd == "pack":
            from pathlib import Path

            from .carry import pack

            pack(Path(a.root) / a.mix, Path(a.out))
        elif a.cmd == "subset":
            from pathlib import Path

            from .carry import subset

            subset(Path(a.root) / a.mix, a.out_mix, a.tokens)
        elif a.cmd == "unpack":
            from .carry import unpack

            unpack(a.archive, a.root, workers=a.workers)
        else:
            from .hf import prepare_hf

            prepare_hf(a.path, name=a.name, split=a.split, data_files=a.data_files, text_field=a.text_field,
                       streaming=a.streaming, tokenizer=a.tokenizer, max_tokens=a.max_tokens, out_dir=a.out)
    except Refused as exc:  # a folder of someone else's where a corpus would go: nothing was moved or replaced
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, KeyError, FileNotFoundError) as exc:  # FetchError, CarryError, DataConfigError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
