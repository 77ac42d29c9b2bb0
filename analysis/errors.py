"""AnalysisError: bad input to an analysis command, said in one line (`python -m analysis` prints it after
"error: " and exits with status 2, before any long compute and without writing anything)."""


class AnalysisError(Exception):
    """A one-line, user-facing error naming the culprit (the flag, the file, the expected vs actual value)."""
