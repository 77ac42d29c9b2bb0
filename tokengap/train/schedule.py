"""Learning-rate schedules as pure functions of the step: warmup-stable-decay (WSD) and cosine.

WSD (Hu et al. 2024, MiniCPM; used by Olmo): linear warmup, a long constant phase, then a short decay to
min_lr. Because the stable phase does not depend on the run length, a decay can be branched off at any step
to get an "annealed" checkpoint (see `anneal_lr`), which is how the study evaluates during pretraining.
"""
from __future__ import annotations

import math


def _decay(frac: float, shape: str) -> float:
    """Multiplier going from 1 (frac=0) to 0 (frac=1)."""
    frac = min(max(frac, 0.0), 1.0)
    if shape == "linear":
        return 1.0 - frac
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    if shape == "sqrt":  # 1 - sqrt(x): the "1-sqrt" cooldown of Hägele et al. 2024
        return 1.0 - math.sqrt(frac)
    raise ValueError(f"unknown decay shape {shape!r}")


def lr_at(step: int, total_steps: int, peak_lr: float, kind: str = "wsd", warmup_steps: int = 0,
          decay_steps: int = 0, min_lr_ratio: float = 0.0, decay_shape: str = "linear") -> float:
    """Learning rate used for the update of `step` (0-based) in a run of `total_steps` updates."""
    min_lr = peak_lr * min_lr_ratio
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if kind == "cosine":
        frac = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr + (peak_lr - min_lr) * _decay(frac, "cosine")
    if kind == "wsd":
        decay_start = total_steps - decay_steps
        if step < decay_start:
            return peak_lr
        return min_lr + (peak_lr - min_lr) * _decay((step - decay_start + 1) / max(1, decay_steps), decay_shape)
    if kind == "constant":
        return peak_lr
    raise ValueError(f"unknown schedule {kind!r}")


def anneal_lr(i: int, n: int, from_lr: float, min_lr: float, shape: str = "linear") -> float:
    """LR of step i (0-based) of an n-step decay branch started from the stable-phase LR `from_lr`."""
    return min_lr + (from_lr - min_lr) * _decay((i + 1) / max(1, n), shape)
