"""Score files (docs/formats.md): per-token loss and arg-max correctness of one model on one eval set.

numpy only, so that `compare` and `figures` read score files without importing torch.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from models.atomic import atomic_write_stream


@dataclass
class Scores:
    loss: np.ndarray  # (N,) float32 nats
    correct: np.ndarray  # (N,) bool
    meta: dict


def code_version() -> str:
    """`git describe` of this checkout; TOKENGAP_CODE_VERSION where the code was copied without .git (GPU runs)."""
    if os.environ.get("TOKENGAP_CODE_VERSION"):
        return os.environ["TOKENGAP_CODE_VERSION"]
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def save_scores(path: Union[str, Path], loss: np.ndarray, correct: np.ndarray, meta: dict) -> Path:
    return atomic_write_stream(path, lambda f: np.savez_compressed(
        f, loss=loss.astype(np.float32), correct=correct.astype(bool), meta=np.str_(json.dumps(meta, sort_keys=True))))


def load_scores(path: Union[str, Path]) -> Scores:
    with np.load(path, allow_pickle=False) as z:
        return Scores(z["loss"], z["correct"], json.loads(str(z["meta"])))


def check_comparable(a: Scores, b: Scores, names: tuple[str, str] = ("A", "B")) -> None:
    """Refuse to compare score files from different eval sets or tokenizers, naming the hashes."""
    for key in ("tokenizer_sha256", "eval_hash"):
        ha, hb = a.meta.get(key), b.meta.get(key)
        if ha != hb:
            raise ValueError(f"{names[0]} and {names[1]} differ in {key}: {str(ha)[:16]}… vs {str(hb)[:16]}…")
    if a.loss.shape != b.loss.shape:
        raise ValueError(f"{names[0]} and {names[1]} have {a.loss.shape[0]} vs {b.loss.shape[0]} tokens")
