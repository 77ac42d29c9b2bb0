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

from tokengap.models.atomic import atomic_write_stream


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
        root = Path(__file__).resolve().parents[2]  # the checkout (tokengap/evaluation/scorefile.py)
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


# Per-token losses in 16 bits: a fixed-point code of step 2^-11 nats (uint16: 0 to 32 nats; a loss above is kept as
# float32 beside it, exactly). Half the bytes of float32. IEEE float16 would be the obvious 16 bits, but its step
# grows with the value (2^-8 nats between 4 and 8): on the committed files it moved one PTB tag's mean loss (RBS,
# 309 tokens) by 1.2e-4 nats; this code moves no category of >= 100 tokens by more than 2.2e-5 (max error 2.4e-4 a
# token, uniform; tests/test_results_files.py checks the committed files against their float32 means).
Q_STEP = 2.0 ** -11
Q_MAX = 65535 * Q_STEP


def encode_losses(loss: np.ndarray) -> dict:
    loss = np.asarray(loss, dtype=np.float64)
    if not np.isfinite(loss).all() or (loss < 0).any():
        raise ValueError("per-token losses must be finite and >= 0")
    over = np.flatnonzero(loss > Q_MAX)
    q = np.rint(np.minimum(loss, Q_MAX) / Q_STEP).astype(np.uint16)
    return {"loss_q": q, "loss_q_step": np.float64(Q_STEP), "loss_over_idx": over.astype(np.int64),
            "loss_over": loss[over].astype(np.float32)}


def decode_losses(z) -> np.ndarray:
    loss = z["loss_q"].astype(np.float32) * np.float32(z["loss_q_step"])
    loss[z["loss_over_idx"]] = z["loss_over"]
    return loss


def save_scores(path: Union[str, Path], loss: np.ndarray, correct: np.ndarray, meta: dict,
                precision: str = "q16") -> Path:
    """Write a score file atomically. precision: "q16" (the 16-bit code above, the default) or "float32"."""
    if precision not in ("q16", "float32"):
        raise ValueError(f"precision: q16 or float32, got {precision!r}")
    arrays = encode_losses(loss) if precision == "q16" else {"loss": np.asarray(loss, np.float32)}
    meta = {**meta, "loss_encoding": "uint16 x 2^-11 nats (float32 above 32 nats)" if precision == "q16" else "float32"}
    return atomic_write_stream(path, lambda f: np.savez_compressed(
        f, **arrays, correct=correct.astype(bool), meta=np.str_(json.dumps(meta, sort_keys=True))))


class ScoreFileError(ValueError):
    """A score file that is missing, unreadable or not one (one line, naming the file)."""


def load_scores(path: Union[str, Path]) -> Scores:
    """Read a score file; anything but a complete one (missing, truncated, corrupt, another kind of file) is a
    ScoreFileError naming the file. Losses come back as float32 whatever the precision they were stored in."""
    path = Path(path)
    if not path.is_file():
        raise ScoreFileError(f"{path}: no such score file")
    try:
        with np.load(path, allow_pickle=False) as z:
            have = set(z.files)
            missing = ({"correct", "meta"} - have) | (set() if have & {"loss", "loss_q"} else {"loss"})
            if missing:
                raise ScoreFileError(f"{path}: not a score file (no {', '.join(sorted(missing))})")
            loss = decode_losses(z) if "loss_q" in have else z["loss"].astype(np.float32)
            correct, meta = z["correct"], json.loads(str(z["meta"]))
    except ScoreFileError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, a CRC mismatch, ValueError: truncated or corrupt
        raise ScoreFileError(f"{path}: not a readable score file ({type(exc).__name__}: {str(exc)[:80]})") from None
    if loss.ndim != 1 or loss.shape != correct.shape:
        raise ScoreFileError(f"{path}: loss {loss.shape} and correct {correct.shape} do not match")
    return Scores(loss, correct, meta)


def same_eval_tokens(ma: dict, mb: dict) -> bool:
    """Two metas (score files, labels) of the same documents and token ids under tokenizers of the same content,
    even where the tokenizer files differ (e.g. one re-saved by transformers): both must record the content
    hashes (tokengap.evaluation.evalset.tokenizer_content_sha256, EvalSet.eval_tokens_sha256)."""
    keys = ("tokenizer_content_sha256", "eval_tokens_sha256")
    return all(ma.get(k) and ma.get(k) == mb.get(k) for k in keys)


def check_comparable(a: Scores, b: Scores, names: tuple[str, str] = ("A", "B")) -> None:
    """Refuse to compare score files from different eval sets or tokenizers, naming the hashes. A tokenizer is
    identified by its content: files that differ only in how the tokenizer was saved compare."""
    if not same_eval_tokens(a.meta, b.meta):
        for key in ("tokenizer_sha256", "eval_hash"):
            ha, hb = a.meta.get(key), b.meta.get(key)
            if ha != hb:
                raise ValueError(f"{names[0]} and {names[1]} differ in {key}: {str(ha)[:16]}… vs {str(hb)[:16]}…")
    if a.loss.shape != b.loss.shape:
        raise ValueError(f"{names[0]} and {names[1]} have {a.loss.shape[0]} vs {b.loss.shape[0]} tokens")
