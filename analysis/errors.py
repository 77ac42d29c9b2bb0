"""One-line errors of the analysis commands: AnalysisError (bad input, said in one line; `python -m analysis`
prints it after "error: " and exits with status 2, before any long compute and without writing anything), the
argument parser that answers bad flags the same way, and argparse types that refuse nonsense values."""
from __future__ import annotations

import argparse
import sys


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
