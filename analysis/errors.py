"""One-line errors of the analysis commands: AnalysisError (bad input, said in one line; `python -m analysis`
prints it after "error: " and exits with status 2, before any long compute and without writing anything), the
argument parser that answers bad flags the same way, argparse types that refuse nonsense values, and the one rule
for every file a command writes (check_output)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

from models.ours import in_results


class AnalysisError(Exception):
    """A one-line, user-facing error naming the culprit (the flag, the file, the expected vs actual value)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors in one line (no usage block), exit status 2; `--help` is unchanged."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def check_output(flag: str, path, kind: str, holds: Callable[[Path], Optional[str]], want: Optional[str] = None,
                 overwrite: bool = False) -> Path:
    """Where an analysis command may write `path`, checked before the compute that fills it: never inside the
    committed results/ (only the commands that regenerate it, `claims`, `sweep` and `figures`, write there), never
    onto a directory, and never over an existing file of another kind (holds(path) is None: not `kind`) or of
    another model (holds(path) != want) unless --overwrite."""
    path = Path(path)
    if in_results(path):
        raise AnalysisError(f"{flag} {path}: inside the committed results/; pick another {flag}")
    if path.is_dir():
        raise AnalysisError(f"{flag} {path}: a directory, where {kind} is to be written")
    if overwrite or not path.exists():
        return path
    got = holds(path)
    if got is None:
        raise AnalysisError(f"{flag} {path}: exists and is not {kind}; pass --overwrite to replace it, or another "
                            f"{flag}")
    if want is not None and got != want:
        raise AnalysisError(f"{flag} {path}: holds {kind} of {got}, not of {want}; pass --overwrite to replace it, "
                            f"or another {flag}")
    return path


def check_output_dir(flag: str, out, names: Iterable[str], kind: str, holds: Callable[[Path], Optional[str]],
                     want: Optional[str] = None, overwrite: bool = False) -> Path:
    """check_output for each file `names` a command writes into the directory `out`; holds(out) reads what the
    directory already holds (None: not `kind`)."""
    out = Path(out)
    if in_results(out):
        raise AnalysisError(f"{flag} {out}: inside the committed results/; pick another {flag}")
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"{flag} {out}: not a directory")
    for name in names:
        check_output(flag, out / name, kind, lambda _: holds(out), want, overwrite)
    return out


def npz_meta(path, members: Iterable[str]) -> Optional[dict]:
    """The JSON `meta` of an .npz holding `members`; None for any other file."""
    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as z:
            if not set(members) <= set(z.files):
                return None
            meta = json.loads(str(z["meta"]))
    except Exception:  # not a zip, truncated, no `meta`, not JSON: not the kind of file asked for
        return None
    return meta if isinstance(meta, dict) else None


def json_fields(path, *keys: str) -> Optional[str]:
    """The string fields `keys` (dotted: "a.name") of a JSON object file, joined by " vs "; None when the file is
    not such an object."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    values = []
    for key in keys:
        v = d
        for k in key.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        if not isinstance(v, str):
            return None
        values.append(v)
    return " vs ".join(values)


def csv_header(path) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None
