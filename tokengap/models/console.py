"""Console logging for the command-line entry points (python -m tokengap.train, python -m tokengap.analysis): INFO
lines, plain format, always to the current sys.stderr (a handler bound to the stream of the moment would outlive it:
tests and notebooks swap sys.stderr)."""
from __future__ import annotations

import logging
import sys


class _CurrentStderr(logging.StreamHandler):
    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):  # StreamHandler.__init__ assigns one; the property always reads sys.stderr
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """Once per process: INFO messages of our loggers to stderr, unless logging is configured already."""
    root = logging.getLogger()
    if not root.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(level)
