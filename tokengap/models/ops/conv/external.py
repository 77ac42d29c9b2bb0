"""causal-conv1d's CUDA kernel and fla's Triton conv behind the signature of the twin (`reference.py`):
x (b, l, c), weight (c, k), bias (c,) or None, activation (SiLU) on or off; returns (b, l, c)."""
from __future__ import annotations

from typing import Callable


def wrap_causal_conv1d(fn: Callable) -> Callable:
    def conv(x, weight, bias, activation=True):  # the extension wants (b, c, l)
        return fn(x.transpose(1, 2), weight, bias, activation="silu" if activation else None).transpose(1, 2)
    return conv


def wrap_fla_conv(fn: Callable) -> Callable:
    def conv(x, weight, bias, activation=True):
        # no copy: fla reads the strided view that in_proj's split gives (tests/test_models.py checks it on CUDA)
        return fn(x, weight, bias, activation="silu" if activation else None)[0]
    return conv
