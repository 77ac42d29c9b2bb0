"""Training checkpoints: written atomically, verified on load, pruned to the last N plus milestones.

    runs/<name>/checkpoints/step_000500/
        model.safetensors, config.json   (models.io.save_pretrained: loadable by `analysis` without `train`)
        train_state.pt                    optimizer, step, tokens, RNG states, data position, schedule
        meta.json                         step, milestone flag, sha256 of every file above (written last)

A checkpoint is first written to `checkpoints/.tmp-step_000500/`, fsynced, then renamed into place, so a
crash at any moment leaves the previous checkpoints untouched and never a half-written one under a real name.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional

import torch

from models.atomic import atomic_write_text, sha256_file
from models.io import save_pretrained

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
    save_pretrained(model, tmp, extra=model_extra)
    torch.save(train_state, tmp / STATE)
    files = sorted(p.name for p in tmp.iterdir() if p.is_file())
    meta = {"step": step, "milestone": milestone, "sha256": {f: sha256_file(tmp / f) for f in files}}
    atomic_write_text(tmp / META, json.dumps(meta, indent=2))
    for f in tmp.iterdir():  # make every file durable before the rename publishes the directory
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
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


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (a meta.json exists), oldest first. Temp directories are ignored."""
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = STEP_DIR.match(p.name)
        if m and (p / META).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def verify(path: Path) -> dict:
    """Check every file's sha256 against meta.json; raise CheckpointError naming the file otherwise."""
    meta_path = path / META
    if not meta_path.is_file():
        raise CheckpointError(f"{path}: no {META}; not a complete checkpoint")
    meta = json.loads(meta_path.read_text())
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


def prune(root: Path, keep_last: int) -> None:
    """Delete rolling checkpoints beyond the newest `keep_last`; milestones stay."""
    rolling = [(s, p) for s, p in list_checkpoints(root)
               if not json.loads((p / META).read_text()).get("milestone")]
    for _, p in rolling[:-keep_last] if keep_last > 0 else rolling:
        shutil.rmtree(p, ignore_errors=True)


def latest(root: Path) -> Optional[Path]:
    cps = list_checkpoints(root)
    return cps[-1][1] if cps else None
