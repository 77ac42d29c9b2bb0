"""One-line errors of the analysis commands: AnalysisError (bad input, said in one line; `python -m tokengap.analysis`
prints it after "error: " and exits with status 2, before any long compute and without writing anything), the
argument parser that answers bad flags the same way, argparse types that refuse nonsense values, and the one rule
for every file a command writes (check_output)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

from tokengap.models.ours import Refused, check_ours, in_results, mark


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


def fraction(text: str) -> float:
    """A probability strictly between 0 and 1 (a significance level: --alpha)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return v


def device_arg(text: str) -> str:
    """cpu, cuda or cuda:N, refused at the command line when this machine has no such device."""
    import torch
    try:
        d = torch.device(text)
    except (RuntimeError, ValueError):
        d = None
    if d is None or d.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    if d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device on this machine (use --device cpu)")
        if d.index is not None and d.index >= n:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    return text


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: {'not a file' if Path(text).exists() else 'no such file'}")
    return text


def existing_dir(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {'not a folder' if Path(text).exists() else 'no such folder'}")
    return text


def eval_source(text: str) -> str:
    """A built corpus directory, or the user's own evaluation text (a .txt / .jsonl file, a folder of them, a saved
    Hugging Face dataset: tokengap/evaluation/sources.py); read (and refused, in one line) when the command runs."""
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder (a built corpus directory, a folder of .txt "
                                         "files, a .jsonl file or a saved Hugging Face dataset)")
    return text


def add_source_arguments(p: argparse.ArgumentParser, required: bool = True, default_note: str = "") -> None:
    """--eval and the options that read the user's own evaluation text (tokengap/evaluation/sources.py)."""
    p.add_argument("--eval", required=required, default=None, type=eval_source,
                   help=f"a built corpus directory{default_note}, or your own text: a folder of .txt files, a .jsonl "
                        "file (or a folder of them), a saved Hugging Face dataset (docs/data.md)")
    p.add_argument("--text-field", default="text", help="your JSONL / dataset's text field (default: text)")
    p.add_argument("--domain-field", default=None,
                   help="your JSONL / dataset's domain field (default: one domain per file, else 'text')")
    p.add_argument("--split", default=None, help="the split of a saved DatasetDict (default: its only one, "
                   "else validation, else test)")


def eval_corpus(text: str) -> str:
    """A built corpus directory that holds the eval documents."""
    if not (Path(text) / "docs" / "eval.jsonl").is_file():
        raise argparse.ArgumentTypeError(f"{text}: {'no such folder' if not Path(text).exists() else 'no docs/eval.jsonl'}"
                                         " (a built corpus directory: make data DATA=...)")
    return text


def check_writable(flag: str, path, folder: bool = False) -> None:
    """Refuse, before any compute, a `path` that cannot be created: the nearest existing folder above it must be a
    writable folder (a file in the way, or a read-only folder, is found now, not after the work)."""
    path = Path(path)
    above = path if folder else path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise AnalysisError(f"{flag} {path}: {above} is a file, not a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise AnalysisError(f"{flag} {path}: {above} is not writable")


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
    check_writable(flag, path)
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
    check_writable(flag, out, folder=True)
    for name in names:
        check_output(flag, out / name, kind, lambda _: holds(out), want, overwrite)
    return out


def check_figure_outputs(results: Path, out: Path, report: Optional[Path] = None, overwrite: bool = False) -> None:
    """figures / sweep write PNG, PDF and CSV files by fixed names into `out` and, for figures, an HTML report:
    under their --results folder (what they regenerate) anything goes; elsewhere `out` must be new, empty or a
    figure folder of ours (its marker, written here), and an existing `report` one of our reports, unless
    --overwrite: the fixed names must not land on a user's files of the same name."""
    def under_results(path: Path) -> bool:
        p, r = path.resolve(), results.resolve()
        return p == r or r in p.parents
    if overwrite:
        return
    if not under_results(out):
        try:
            check_ours(out, "figures", "--out")
        except Refused as exc:
            raise AnalysisError(f"{exc} (or --overwrite)") from None
        out.mkdir(parents=True, exist_ok=True)
        mark(out, "figures")
    if report is not None and report.exists() and not under_results(report):
        head = report.read_text(encoding="utf-8", errors="replace")[:300]
        if "<title>tokengap:" not in head:
            raise AnalysisError(f"--report {report}: exists and is not a tokengap report; pass --overwrite to "
                                "replace it, or another --report")


def check_npz(path, members: Iterable[str], kind: str) -> None:
    """Refuse, in one line naming the file, an input that is not an .npz holding `members` (a text file, a score
    file where probe results are expected, a truncated archive)."""
    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = sorted(set(members) - set(z.files))
    except FileNotFoundError:
        raise AnalysisError(f"{path}: no such file, where {kind} was expected") from None
    except Exception:  # a text file ("pickled data"), not a zip, truncated
        raise AnalysisError(f"{path}: not {kind} (not a readable .npz archive)") from None
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise AnalysisError(f"{path}: not {kind} (it has no {', '.join(missing[:3])}{more})")


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
