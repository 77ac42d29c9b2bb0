"""`python -m tokengap.train --help` (the config groups and every key, with its default and comment) and `--dry-run`
(the resolved config, the layer list and the parameter counts, then exit)."""
from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from enum import Enum
from pathlib import Path

from tokengap.models.config import CONF_DIR, count_params_formula, human, resolve_layers

USAGE = """usage: python -m tokengap.train [GROUP=CHOICE ...] [KEY=VALUE ...] [--dry-run]

  python -m tokengap.train model=hybrid                          # CPU quick start: tiny model, tiny corpus
  python -m tokengap.train model=hybrid_gdn preset=small         # GPU reproduction size
  python -m tokengap.train model=hybrid model.ratio=5:1 --dry-run  # print the resolved config and parameters, exit

Overrides are Hydra's (key=value, lists as [a,b]); a key that is not below fails at start-up, naming it.
--dry-run prints the resolved config, the layers and the parameter counts without building data or a model."""


def _comments(cls) -> dict[str, str]:
    """{field: its trailing comment} from the dataclass's source."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out = {}
    for line in src.splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def describe(cls, prefix: str = "") -> list[str]:
    """One line per leaf key of a (nested) dataclass schema: key, default, comment."""
    lines, hints, notes = [], typing.get_type_hints(cls), _comments(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines += describe(tp, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else \
            (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if isinstance(default, Enum):
            default = f"{default.value} ({'|'.join(m.value for m in type(default))})"
        note = f"  # {notes[f.name]}" if f.name in notes else ""
        lines.append(f"  {prefix}{f.name} = {default}{note}")
    return lines


def help_text() -> str:
    from tokengap.train.config import RunConfig
    groups = []
    for g in ("model", "size", "data", "preset"):
        choices = sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml"))
        groups.append(f"  {g}: {', '.join(choices)}")
    return "\n".join([USAGE, "", "config groups (GROUP=CHOICE, tokengap/conf/<group>/<choice>.yaml):", *groups, "",
                      "keys (KEY=VALUE; default, comment):", *describe(RunConfig)])


def dry_run(cfg) -> str:
    from omegaconf import OmegaConf

    from tokengap.train.config import resolve_defaults, validate_run
    validate_run(cfg)
    resolve_defaults(cfg)
    layers = resolve_layers(cfg.model)
    n = count_params_formula(cfg.model)["non_embedding"]
    t = cfg.train
    steps = -(-t.max_tokens // (t.batch_size * t.seq_len))
    return "\n".join([OmegaConf.to_yaml(OmegaConf.structured(cfg)).rstrip(), "",
                      f"run {cfg.name} -> {cfg.run_dir}",
                      "layers: " + ", ".join(f"{i}:{x}" for i, x in enumerate(layers)),
                      f"non-embedding parameters: {human(n)} ({n:,}); embeddings follow the tokenizer's vocabulary",
                      f"{steps} steps x {t.batch_size * t.seq_len:,} tokens ({t.batch_size} x {t.seq_len})",
                      f"corpus: {Path(cfg.data.root) / cfg.data.mix}"])
