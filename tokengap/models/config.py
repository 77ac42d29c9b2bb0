"""Typed model configuration, layer-pattern resolution, and Hydra composition with one-line errors.

The dataclasses below are the Hydra schemas (structured configs): a YAML file or a command-line override
with a key that is not a field here fails at start-up, naming the key. What a mixer name in the pattern stands
for, its parameter count and the checks of its own keys come from the mixer registry (tokengap/models/mixers/).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from enum import Enum
from typing import Any, List, Optional

from tokengap.models import mixers
from tokengap.models.mixers.gdn import GDNConfig
from tokengap.models.mixers.mamba2 import MambaConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class ConfigError(ValueError):
    """A bad configuration value; the message is one line and names the key."""


class Kernels(str, Enum):
    """model.kernels: which implementation the recurrent layers' scans run (tokengap/models/kernels.py)."""
    auto = "auto"  # the Triton kernels on CUDA when importable, else the PyTorch twins (said in the log)
    reference = "reference"  # always the PyTorch twins
    triton = "triton"  # the kernels, or fail naming what is missing


@dataclass
class ModelConfig:
    name: str = "custom"
    vocab_size: int = 0  # 0: set from the tokenizer when the model is built for a run
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4  # attention heads; head_dim = d_model / n_heads
    n_kv_heads: Optional[int] = None  # grouped KV heads (None: = n_heads)
    # Layer mixers. A list whose length divides n_layers is a period repeated over depth
    # ([mamba2, mamba2, mamba2, attention] on 8 layers = 2 periods); a list of length n_layers is per layer.
    pattern: List[str] = field(default_factory=lambda: ["attention"])
    # Shorthand that replaces `pattern`: "R:A" = R recurrent layers then A attention layers, repeated.
    ratio: Optional[str] = None
    recurrent_mixer: str = "mamba2"  # what the recurrent slots of `ratio` hold
    d_ff: Optional[int] = None  # SwiGLU hidden size; None: mlp_ratio * d_model rounded to ff_multiple_of
    mlp_ratio: float = 8 / 3
    ff_multiple_of: int = 32
    # Sliding window (tokens, the current one included) of "swa" layers. None: half the training context,
    # set when a run starts (Olmo 3: 4096 of 8192); a model saved by a run stores the number.
    window: Optional[int] = None
    qk_norm: bool = False
    rope_theta: float = 10000.0
    tie_embeddings: bool = False  # Olmo unties input and output embeddings
    norm_eps: float = 1e-5
    init_std: float = 0.02
    kernels: Kernels = Kernels.auto  # the recurrent layers' scans: auto | reference | triton (see Kernels)
    mamba: MambaConfig = field(default_factory=MambaConfig)
    gdn: GDNConfig = field(default_factory=GDNConfig)

    # ---- derived ---------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn_dim(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        m = self.ff_multiple_of
        return m * max(1, round(self.mlp_ratio * self.d_model / m))

    def layers(self) -> list[str]:
        """The resolved per-layer mixer list (validated)."""
        validate(self)
        return resolve_layers(self)


def _parse_ratio(ratio: str, recurrent: str) -> list[str]:
    parts = str(ratio).split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"model.ratio: expected 'R:A' with whole numbers (e.g. '3:1'), got {ratio!r}")
    r, a = (int(p) for p in parts)
    if r + a == 0:
        raise ConfigError(f"model.ratio: {ratio!r} has no layers")
    return [recurrent] * r + ["attention"] * a


def resolve_layers(cfg: ModelConfig) -> list[str]:
    period = _parse_ratio(cfg.ratio, cfg.recurrent_mixer) if cfg.ratio is not None else list(cfg.pattern)
    key = "model.ratio" if cfg.ratio is not None else "model.pattern"
    if not period:
        raise ConfigError(f"{key}: empty pattern")
    for name in period:
        if mixers.get(name) is None:
            raise ConfigError(f"{key}: unknown mixer {name!r} (known: {', '.join(mixers.names())})")
    if cfg.n_layers % len(period) != 0:
        raise ConfigError(
            f"{key}: a period of {len(period)} layers {list(period)} does not fit model.n_layers={cfg.n_layers}"
        )
    return period * (cfg.n_layers // len(period))


def validate(cfg: ModelConfig) -> None:
    """Raise ConfigError (one line, naming the key) for any inconsistent value."""
    if cfg.n_layers < 1:
        raise ConfigError(f"model.n_layers: must be >= 1, got {cfg.n_layers}")
    if cfg.d_model < 1 or cfg.n_heads < 1:
        raise ConfigError(f"model.d_model/model.n_heads: must be positive, got {cfg.d_model}/{cfg.n_heads}")
    spec = mixers.get(cfg.recurrent_mixer)
    if spec is None or not spec.recurrent:
        raise ConfigError(f"model.recurrent_mixer: unknown {cfg.recurrent_mixer!r} "
                          f"(known: {', '.join(mixers.names(recurrent=True))})")
    layers = resolve_layers(cfg)
    for name in dict.fromkeys(layers):  # each mixer checks its own keys, once
        mixers.get(name).validate(cfg)
    if cfg.kernels not in {k.value for k in Kernels}:  # a str Enum: equal to its value
        raise ConfigError(f"model.kernels: expected auto|reference|triton, got {cfg.kernels!r}")
    if cfg.ffn_dim < 1:
        raise ConfigError(f"model.d_ff: must be positive, got {cfg.ffn_dim}")


def to_dict(cfg: ModelConfig) -> dict:
    return to_plain(dataclasses.asdict(cfg))


def to_plain(obj: Any) -> Any:
    """asdict-like, with enums as their values (what JSON and OmegaConf round-trip)."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def from_dict(d: dict) -> ModelConfig:
    """A ModelConfig from to_dict's output (a model's config.json); configs saved before model.gdn existed load
    with its defaults."""
    d = dict(d)
    mamba = MambaConfig(**d.pop("mamba", {}))
    gdn = GDNConfig(**d.pop("gdn", {}))
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"model config: unknown key(s) {sorted(unknown)}")
    if "kernels" in d:
        try:
            d["kernels"] = Kernels(d["kernels"])
        except ValueError:
            raise ConfigError(f"model.kernels: expected auto|reference|triton, got {d['kernels']!r}") from None
    return ModelConfig(**d, mamba=mamba, gdn=gdn)


# ---- Hydra composition ----------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    """Hydra/OmegaConf errors are multi-line and chained; keep the most specific message and the full key."""
    full_key, msgs, options = None, [], []
    e: Optional[BaseException] = exc
    while e is not None:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        msgs.append(lines[0] if lines else type(e).__name__)
        for i, ln in enumerate(lines):
            if ln.startswith("full_key:") and full_key is None:
                full_key = ln.split(":", 1)[1].strip()
            if ln.startswith("Available options in"):
                options = [x for x in lines[i + 1:] if not x.startswith(("Config search path", "provider="))]
        e = e.__cause__
    msg = msgs[-1]  # the innermost cause names what is wrong ("Key 'foo' not in 'ModelConfig'")
    if options:
        msg += f" (available: {', '.join(options)})"
    return f"{full_key}: {msg}" if full_key else msg


def _switch_keys(schema: Any, prefix: str = "") -> set[str]:
    """Dotted keys of `schema` whose type is an Enum with members `true` and `false` (train.Switch)."""
    import typing
    keys = set()
    for name, tp in typing.get_type_hints(schema).items():
        if isinstance(tp, type) and issubclass(tp, Enum) and {"true", "false"} <= set(tp.__members__):
            keys.add(prefix + name)
        elif dataclasses.is_dataclass(tp):
            keys |= _switch_keys(tp, f"{prefix}{name}.")
    return keys


def _quote_switches(overrides: list[str], schema: Any) -> list[str]:
    """Hydra reads `key=true` / `key=false` as booleans, which an Enum field refuses: quote them for the keys whose
    enum has members of those names, so `train.compile=true` means Switch.true."""
    keys = _switch_keys(schema)
    out = []
    for o in overrides:
        key, eq, val = o.partition("=")
        if eq and key.lstrip("+~") in keys and val.strip().lower() in ("true", "false"):
            o = f"{key}='{val.strip().lower()}'"
        out.append(o)
    return out


def compose(config_name: str, overrides: list[str], schema_name: str, schema: Any) -> Any:
    """Compose `tokengap/conf/<config_name>.yaml` over the dataclass `schema` with command-line overrides.

    Returns the instantiated dataclass (so __post_init__-free validation runs on real objects).
    Raises ConfigError with a one-line message naming the culprit key.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name=schema_name, node=schema)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=_quote_switches(list(overrides), schema))
        obj = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as exc:  # hydra.errors.*, omegaconf.errors.*: rephrase as one line
        raise ConfigError(_one_line(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    return obj


def count_params_formula(cfg: ModelConfig) -> dict:
    """Closed-form parameter counts (the registry's per-mixer formulas; a test compares them with the built model)."""
    d, layers = cfg.d_model, resolve_layers(cfg)
    mlp = 3 * d * cfg.ffn_dim
    body = sum(mixers.get(x).num_params(cfg) + mlp + 2 * d for x in layers) + d  # + final norm
    emb = cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2)
    return {"non_embedding": body, "embedding": emb, "total": body + emb}


def flops_per_token(cfg: ModelConfig, seq_len: int, matmul_params: int) -> float:
    """Model FLOPs per token of a train step (forward + backward): 6 x the matmul parameters (lm_head included, the
    embedding lookup not) plus what each layer's mixer computes beyond them (the registry's formulas)."""
    return 6.0 * matmul_params + sum(mixers.get(x).flops_per_token(cfg, seq_len) for x in resolve_layers(cfg))


def human(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


__all__ = [
    "ConfigError", "GDNConfig", "Kernels", "MambaConfig", "ModelConfig", "resolve_layers", "validate", "compose",
    "to_dict", "from_dict", "to_plain", "count_params_formula", "flops_per_token", "human",
]
