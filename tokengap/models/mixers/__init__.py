"""The mixer registry: what a layer pattern's names (`attention`, `swa`, `mamba2`, `gdn`, ...) stand for.

A mixer is one file that defines its nn.Module and registers a MixerSpec: how to build it, its closed-form
parameter count, its FLOPs per token beyond the matmul parameters, the checks of its config keys, which ops of
tokengap.models.kernels it runs, and how it describes the path it ran. The LM, the config checks,
`python -m tokengap.models` and the benchmark scripts ask the registry; adding a mixer is its own file plus one
`register` call (and its tests).

A mixer module maps x: (batch, seqlen, d_model) -> (batch, seqlen, d_model) with `forward(x, rope, ops)`:
rope = (cos, sin) tables of the model's attention head dim, ops = the tokengap.models.kernels.MixerOps it asked for.
"""
from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Optional

if TYPE_CHECKING:
    from tokengap.models.config import ModelConfig


def _no_checks(cfg: "ModelConfig") -> None:
    return None


def _plain(module, ops) -> str:
    return "torch"


@dataclass(frozen=True)
class MixerSpec:
    name: str
    build: Callable  # (cfg: ModelConfig, layer_idx: int) -> nn.Module
    num_params: Callable  # (cfg) -> int: the mixer's parameters (the block's norms and MLP are the LM's)
    flops_per_token: Callable  # (cfg, seq_len) -> float: forward + backward FLOPs per token not in 6 x matmul params
    validate: Callable = _no_checks  # (cfg) -> None; raises tokengap.models.config.ConfigError naming the key
    describe: Callable = _plain  # (module, ops: MixerOps | None) -> str: the path its last forward ran
    check: Optional[Callable] = None  # (module, ops, device, dtype) -> dict | None: check its kernel before training
    ops: tuple[str, ...] = ()  # fields of tokengap.models.kernels.MixerOps it runs
    recurrent: bool = False  # may fill model.ratio's recurrent slots
    attention: bool = False  # uses the model's attention heads (and RoPE tables)
    doc: str = field(default="", compare=False)


_REGISTRY: dict[str, MixerSpec] = {}
_BUILTINS = ("tokengap.models.mixers.attention", "tokengap.models.mixers.mamba2", "tokengap.models.mixers.gdn")


def register(spec: MixerSpec) -> MixerSpec:
    """Add a mixer; its name becomes usable in model.pattern (and, if recurrent, in model.recurrent_mixer)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"mixer {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


@contextlib.contextmanager
def registered(spec: MixerSpec) -> Iterator[MixerSpec]:
    """register(spec) for the duration of a with-block (tests)."""
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.name)


def _load_builtins() -> None:
    for module in _BUILTINS:
        importlib.import_module(module)  # each registers itself on import


def get(name: str) -> Optional[MixerSpec]:
    _load_builtins()
    return _REGISTRY.get(name)


def names(recurrent: Optional[bool] = None) -> list[str]:
    """Registered mixer names (only the recurrent ones, or only the others, if asked)."""
    _load_builtins()
    return [n for n, s in _REGISTRY.items() if recurrent is None or s.recurrent == recurrent]
