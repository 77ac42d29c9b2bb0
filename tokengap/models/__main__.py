"""Print a zoo model's resolved layers and parameter counts.

    python -m tokengap.models model=hybrid size=small             # one config (Hydra overrides)
    python -m tokengap.models model=hybrid model.ratio=5:1 size=base
    python -m tokengap.models --table                             # the zoo configs at every size
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from tokengap.models.config import ConfigError, ModelConfig, compose, count_params_formula, human

# the Mamba2 zoo, then the study's pair (Olmo 3 / Olmo Hybrid layouts) and its pure recurrent model
ZOO = ("transformer", "hybrid", "recurrent", "transformer_swa", "hybrid_gdn", "recurrent_gdn")
SIZES = ("tiny", "small", "base")


@dataclass
class ZooConfig:
    model: ModelConfig = field(default_factory=ModelConfig)


def load(overrides: list[str]) -> ModelConfig:
    return compose("zoo", overrides, "zoo_schema", ZooConfig).model


def table() -> str:
    rows = ["| size | model | layers (period) | non-embedding params | vs transformer |", "|---|---|---|---|---|"]
    for size in SIZES:
        base = None
        for name in ZOO:
            cfg = load([f"model={name}", f"size={size}"])
            n = count_params_formula(cfg)["non_embedding"]
            base = base or n
            layers = cfg.layers()
            period = len(cfg.pattern) if cfg.ratio is None else None
            shape = f"{cfg.n_layers} x {cfg.d_model}, " + ",".join(layers[:period or len(layers)])
            rows.append(f"| {size} | {name} | {shape} | {human(n)} ({n:,}) | {100 * (n / base - 1):+.1f}% |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    try:
        if "--table" in argv:
            print(table())
            return 0
        cfg = load(argv)
        layers = cfg.layers()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    counts = count_params_formula(cfg)
    print(f"model {cfg.name}: {cfg.n_layers} layers x d_model {cfg.d_model}, d_ff {cfg.ffn_dim}")
    for i, m in enumerate(layers):
        print(f"  layer {i:2d}: {m}")
    print(f"non-embedding parameters: {human(counts['non_embedding'])} ({counts['non_embedding']:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
