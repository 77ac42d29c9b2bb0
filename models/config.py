"""Typed model configuration, layer-pattern resolution, and Hydra composition with one-line errors.

The dataclasses below are the Hydra schemas (structured configs): a YAML file or a command-line override
with a key that is not a field here fails at start-up, naming the key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

MIXERS = ("attention", "swa", "mamba2")  # swa = sliding-window attention (needs model.window)
RECURRENT_MIXERS = ("mamba2",)
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class ConfigError(ValueError):
    """A bad configuration value; the message is one line and names the key."""


@dataclass
class MambaConfig:
    d_state: int = 128  # N: state size per head
    d_conv: int = 4  # width of the short causal depthwise conv
    expand: int = 2  # d_inner = expand * d_model
    headdim: int = 64  # P: channels per SSM head; n_heads_ssm = d_inner / headdim
    ngroups: int = 1  # B/C groups (like GQA for the SSM)
    chunk_size: int = 256  # SSD chunk length (kernel and reference)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    A_init_min: float = 1.0  # A = -exp(A_log), A_log = log(U(A_init_min, A_init_max))
    A_init_max: float = 16.0
    conv_bias: bool = True


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
    window: Optional[int] = None  # sliding window (tokens, including the current one) of "swa" layers
    qk_norm: bool = False
    rope_theta: float = 10000.0
    tie_embeddings: bool = False  # Olmo unties input and output embeddings
    norm_eps: float = 1e-5
    init_std: float = 0.02
    # Which implementation the Mamba2 layers run: "auto" (mamba-ssm Triton kernels on CUDA when importable,
    # else the pure-PyTorch reference, saying so in the log), "reference" (always PyTorch), "triton" (fail if absent).
    kernels: str = "auto"
    mamba: MambaConfig = field(default_factory=MambaConfig)

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
        if name not in MIXERS:
            raise ConfigError(f"{key}: unknown mixer {name!r} (known: {', '.join(MIXERS)})")
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
    if cfg.recurrent_mixer not in RECURRENT_MIXERS:
        raise ConfigError(f"model.recurrent_mixer: unknown {cfg.recurrent_mixer!r} (known: {', '.join(RECURRENT_MIXERS)})")
    layers = resolve_layers(cfg)
    if any(m in ("attention", "swa") for m in layers):
        if cfg.d_model % cfg.n_heads != 0:
            raise ConfigError(f"model.n_heads: {cfg.n_heads} heads do not divide model.d_model={cfg.d_model}")
        if cfg.head_dim % 2 != 0:
            raise ConfigError(f"model.n_heads: head_dim={cfg.head_dim} must be even for RoPE")
        if cfg.n_heads % cfg.kv_heads != 0:
            raise ConfigError(f"model.n_kv_heads: {cfg.kv_heads} KV heads do not divide model.n_heads={cfg.n_heads}")
    if "swa" in layers and (cfg.window is None or cfg.window < 1):
        raise ConfigError("model.window: 'swa' layers need a positive window (tokens)")
    if "mamba2" in layers:
        m = cfg.mamba
        d_inner = m.expand * cfg.d_model
        if d_inner % m.headdim != 0:
            raise ConfigError(f"model.mamba.headdim: {m.headdim} does not divide d_inner={d_inner} (expand*d_model)")
        if (d_inner // m.headdim) % m.ngroups != 0:
            raise ConfigError(f"model.mamba.ngroups: {m.ngroups} does not divide the {d_inner // m.headdim} SSM heads")
        if m.chunk_size < 1 or m.d_conv < 1 or m.d_state < 1:
            raise ConfigError("model.mamba: chunk_size, d_conv and d_state must be positive")
    if cfg.kernels not in ("auto", "reference", "triton"):
        raise ConfigError(f"model.kernels: expected auto|reference|triton, got {cfg.kernels!r}")
    if cfg.ffn_dim < 1:
        raise ConfigError(f"model.d_ff: must be positive, got {cfg.ffn_dim}")


def to_dict(cfg: ModelConfig) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(d: dict) -> ModelConfig:
    d = dict(d)
    mamba = MambaConfig(**d.pop("mamba", {}))
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"model config: unknown key(s) {sorted(unknown)}")
    return ModelConfig(**d, mamba=mamba)


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


def compose(config_name: str, overrides: list[str], schema_name: str, schema: Any) -> Any:
    """Compose `conf/<config_name>.yaml` over the dataclass `schema` with command-line overrides.

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
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
        obj = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as exc:  # hydra.errors.*, omegaconf.errors.*: rephrase as one line
        raise ConfigError(_one_line(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    return obj


def count_params_formula(cfg: ModelConfig) -> dict:
    """Closed-form parameter counts (used in docs; the test compares it with the built model)."""
    d, layers = cfg.d_model, resolve_layers(cfg)
    attn = d * (cfg.n_heads + 2 * cfg.kv_heads) * cfg.head_dim + d * d + (2 * cfg.head_dim if cfg.qk_norm else 0)
    m = cfg.mamba
    di, H = m.expand * d, (m.expand * d) // m.headdim
    conv_dim = di + 2 * m.ngroups * m.d_state
    mamba = d * (2 * di + 2 * m.ngroups * m.d_state + H) + conv_dim * (m.d_conv + int(m.conv_bias)) + 3 * H + di + di * d
    mlp = 3 * d * cfg.ffn_dim
    per = {"attention": attn, "swa": attn, "mamba2": mamba}
    body = sum(per[x] + mlp + 2 * d for x in layers) + d  # + final norm
    emb = cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2)
    return {"non_embedding": body, "embedding": emb, "total": body + emb}


def human(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


__all__ = [
    "ConfigError", "MambaConfig", "ModelConfig", "MIXERS", "resolve_layers", "validate", "compose",
    "to_dict", "from_dict", "count_params_formula", "human",
]
