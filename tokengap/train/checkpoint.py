"""Training checkpoints: written atomically, verified on load, pruned to the last N plus milestones.

    runs/<name>/checkpoints/step_000500/
        model.safetensors, config.json   (tokengap.models.io.save_pretrained: loadable by `analysis` without `train`)
        train_state.pt                    optimizer, step, tokens, RNG states, data position, schedule
        meta.json                         step, milestone flag, sha256 of every file above (written last)

A checkpoint is first written to `checkpoints/.tmp-step_000500/`, fsynced, then renamed into place, so a
crash at any moment leaves the previous checkpoints untouched and never a half-written one under a real name; a
write that fails (a full disk) removes its temp directory. Resume takes the newest checkpoint that verifies and
names the newer ones it skipped (damaged after the fact: a missing or unreadable meta.json, a file whose sha256
changed).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional

import torch

from tokengap.models.atomic import atomic_write_text, sha256_file
from tokengap.models.io import save_pretrained

STEP_DIR = re.compile(r"^step_(\d{9})$")
META = "meta.json"
STATE = "train_state.pt"


class CheckpointError(RuntimeError):
    pass


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:09d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(root: Path, step: int, model, train_state: dict, model_extra: dict, milestone: bool = False) -> Path:
    """Write checkpoint `step` under `root` atomically; return its directory."""
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    tmp = root / f".tmp-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_pretrained(model, tmp, extra=model_extra)
        torch.save(train_state, tmp / STATE)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        meta = {"step": step, "milestone": milestone, "sha256": {f: sha256_file(tmp / f) for f in files}}
        atomic_write_text(tmp / META, json.dumps(meta, indent=2))
        for f in tmp.iterdir():  # make every file durable before the rename publishes the directory
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # a re-save of the same step (e.g. after a resume): replace it
        old = root / f".old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    return final


def step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Every step_* directory, complete or not, oldest first. Temp directories are ignored."""
    if not root.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir())


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (a meta.json exists), oldest first."""
    return [(s, p) for s, p in step_dirs(root) if (p / META).is_file()]


def read_meta(path: Path) -> dict:
    meta_path = path / META
    if not meta_path.is_file():
        raise CheckpointError(f"{path}: no {META}; not a complete checkpoint")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"{meta_path}: unreadable ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), dict):
        raise CheckpointError(f"{meta_path}: no sha256 table; not a checkpoint's {META}")
    return meta


def verify(path: Path) -> dict:
    """Check every file's sha256 against meta.json; raise CheckpointError naming the file otherwise."""
    meta = read_meta(path)
    for name, want in meta["sha256"].items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing (listed in {META})")
        got = sha256_file(f)
        if got != want:
            raise CheckpointError(f"{f}: sha256 {got[:16]}… does not match {META} ({want[:16]}…): checkpoint is corrupt")
    return meta


def load_train_state(path: Path) -> dict:
    return torch.load(path / STATE, map_location="cpu", weights_only=True)


def newest_verified(root: Path) -> tuple[Optional[Path], list[str]]:
    """(the newest checkpoint that verifies, why each newer step directory was skipped). Step directories of
    which none verifies raise CheckpointError: a run is never silently started over."""
    skipped = []
    for _, p in reversed(step_dirs(root)):
        try:
            verify(p)
            return p, skipped
        except CheckpointError as exc:
            skipped.append(str(exc))
    if skipped:
        raise CheckpointError(f"no checkpoint under {root} verifies: {'; '.join(skipped)}")
    return None, []


def _is_milestone(path: Path) -> Optional[bool]:
    try:
        return bool(read_meta(path).get("milestone"))
    except CheckpointError:
        return None


def prune(root: Path, keep_last: int) -> None:
    """Delete rolling checkpoints beyond the newest `keep_last`; milestones stay, and so does a checkpoint whose
    meta.json cannot be read (the run rewrites it when it reaches that step again)."""
    rolling = [p for _, p in list_checkpoints(root) if _is_milestone(p) is False]
    for p in rolling[:-keep_last] if keep_last > 0 else rolling:
        shutil.rmtree(p, ignore_errors=True)


def latest(root: Path) -> Optional[Path]:
    cps = list_checkpoints(root)
    return cps[-1][1] if cps else None
