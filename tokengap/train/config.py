"""Training-run configuration: the Hydra schema of `python -m tokengap.train` (tokengap/conf/config.yaml).

Every field is typed; a YAML key or command-line override that is not a field here, or an enumerated field given
a value outside its enum, fails at start-up naming the key (see tokengap.models.config.compose).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import List, Optional

from tokengap.models.config import ConfigError, ModelConfig, compose, resolve_layers, to_dict, validate
from tokengap.train.data.config import DataConfig


class Device(str, Enum):
    auto = "auto"  # CUDA when available, else CPU
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    auto = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"


class Switch(str, Enum):
    """A tri-state switch; `true` / `false` on the command line are read as these (tokengap.models.config.compose)."""
    auto = "auto"
    true = "true"
    false = "false"


class ScheduleKind(str, Enum):
    wsd = "wsd"  # warmup, stable, decay
    cosine = "cosine"
    constant = "constant"


class DecayShape(str, Enum):
    linear = "linear"
    cosine = "cosine"
    sqrt = "sqrt"  # 1 - sqrt(x): the "1-sqrt" cooldown of Hägele et al. 2024


@dataclass
class OptimConfig:
    lr: float = 3e-3  # peak learning rate
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1  # on matrices only (dim >= 2); not on norms, biases, A_log, D, dt_bias
    grad_clip: float = 1.0  # max global grad norm; 0 disables


@dataclass
class ScheduleConfig:
    kind: ScheduleKind = ScheduleKind.wsd
    warmup_frac: float = 0.02  # of total steps
    decay_frac: float = 0.2  # WSD: final decay, as a fraction of total steps
    decay_shape: DecayShape = DecayShape.linear  # of the WSD decay and the anneal branches
    min_lr_ratio: float = 0.0


@dataclass
class EvalConfig:
    interval: int = 100  # steps between evaluations (and at step 0 and the end); 0 disables
    filters: Optional[str] = None  # filters.npz from `python -m tokengap.analysis label`; masks evaluated by name
    max_docs_per_domain: Optional[int] = None  # evaluate on a subset (None: the whole eval set)
    batch_size: int = 16
    # WSD-annealed evaluation points: at these fractions of training, branch a decay of
    # anneal_frac * total_steps steps from the stable-phase weights, evaluate it, and continue the stable run.
    anneal_at: List[float] = field(default_factory=list)
    anneal_frac: float = 0.05


@dataclass
class CheckpointConfig:
    interval: int = 200  # steps between checkpoints (and at the end); 0: only at the end
    keep_last: int = 2  # rolling checkpoints kept; milestones are never pruned
    milestones: List[float] = field(default_factory=list)  # fractions of training whose checkpoints are kept


@dataclass
class TrainConfig:
    seed: int = 0  # model init and data order (same seed => same data order for every architecture)
    seq_len: int = 256
    batch_size: int = 16  # global batch, in sequences of seq_len tokens
    micro_batch_size: Optional[int] = None  # per process and step; None: batch_size / world size (no accumulation)
    max_tokens: int = 2_000_000  # run length; total_steps = ceil(max_tokens / (batch_size * seq_len))
    device: Device = Device.auto
    dtype: Precision = Precision.auto  # autocast dtype
    compile: Switch = Switch.auto  # torch.compile around the custom kernels (auto: on CUDA)
    cuda_graph: Switch = Switch.auto  # forward + backward captured in one CUDA graph (auto: on CUDA, one process)
    threads: Optional[int] = None  # CPU threads for torch (None: torch's default)
    log_interval: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tensorboard: bool = True
    wandb: bool = False  # log to Weights & Biases too, if it is installed
    progress: bool = True  # progress bars (tqdm) when stderr is a terminal; redirected logs never get them
    new_run: bool = False  # start over even if run_dir holds a checkpoint of another config (moves it aside)


@dataclass
class RunConfig:
    name: str = "${model.name}-s${train.seed}"  # default set by load_run_config: <model>-<L>x<d>[-<digest>]-s<seed>
    run_dir: str = "runs/${name}"  # default runs/<name>; the digest appears when model.* overrides change the model
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def validate_run(cfg: RunConfig, world: int = 1) -> None:
    """Cheap checks that must fail before any compute, each naming its key."""
    validate(cfg.model)
    t = cfg.train
    positive = (("train.batch_size", t.batch_size), ("train.max_tokens", t.max_tokens),
                ("train.log_interval", t.log_interval), ("train.eval.batch_size", t.eval.batch_size),
                ("train.checkpoint.keep_last", t.checkpoint.keep_last + 1),
                ("train.threads", 1 if t.threads is None else t.threads),
                ("train.micro_batch_size", 1 if t.micro_batch_size is None else t.micro_batch_size))
    for key, val in positive:
        if val < 1:
            shown = val - 1 if key.endswith("keep_last") else val
            raise ConfigError(f"{key}: must be {'>= 0' if key.endswith('keep_last') else 'positive'}, got {shown}")
    if not t.optim.lr > 0:
        raise ConfigError(f"train.optim.lr: must be positive, got {t.optim.lr}")
    if t.optim.grad_clip < 0 or t.optim.weight_decay < 0 or t.optim.eps <= 0:
        raise ConfigError("train.optim: grad_clip and weight_decay must be >= 0, eps > 0")
    if len(t.optim.betas) != 2 or not all(0 <= b < 1 for b in t.optim.betas):
        raise ConfigError(f"train.optim.betas: two numbers in [0, 1), got {list(t.optim.betas)}")
    if t.eval.interval < 0 or t.checkpoint.interval < 0:
        raise ConfigError("train.eval.interval / train.checkpoint.interval: must be >= 0 (0 disables)")
    if t.eval.filters and not Path(t.eval.filters).is_file():
        raise ConfigError(f"train.eval.filters: no such file {t.eval.filters} "
                          "(python -m tokengap.analysis label ... --filters)")
    if t.seq_len < 2:
        raise ConfigError(f"train.seq_len: must be >= 2, got {t.seq_len}")
    if t.batch_size < 1 or t.batch_size % world:
        raise ConfigError(f"train.batch_size: {t.batch_size} is not divisible by the {world} processes")
    micro = t.micro_batch_size or t.batch_size // world
    if micro < 1 or (t.batch_size // world) % micro:
        raise ConfigError(f"train.micro_batch_size: {micro} does not divide the per-process batch {t.batch_size // world}")
    if t.max_tokens < t.batch_size * t.seq_len:
        raise ConfigError(f"train.max_tokens: {t.max_tokens} is less than one batch ({t.batch_size * t.seq_len} tokens)")
    s = t.schedule
    if not (0 <= s.warmup_frac < 1 and 0 <= s.decay_frac <= 1 and s.warmup_frac + (s.decay_frac if s.kind == "wsd" else 0) <= 1):
        raise ConfigError("train.schedule: warmup_frac and decay_frac must be fractions summing to <= 1")
    if not 0 <= s.min_lr_ratio <= 1:  # above 1 the decay would raise the learning rate
        raise ConfigError(f"train.schedule.min_lr_ratio: a fraction of the peak in [0, 1], got {s.min_lr_ratio}")
    if not 0 <= t.seed < 2 ** 32:  # numpy's generators (data order) take 32-bit seeds
        raise ConfigError(f"train.seed: must be in [0, 2**32), got {t.seed}")
    for f in t.eval.anneal_at:
        if not 0 < f < 1:
            raise ConfigError(f"train.eval.anneal_at: {f} is not a fraction of training in (0, 1)")
        if s.kind == "wsd" and f > 1 - s.decay_frac:
            raise ConfigError(f"train.eval.anneal_at: {f} falls in the final decay (starts at {1 - s.decay_frac:.2f})")
    if not 0 < t.eval.anneal_frac < 1:
        raise ConfigError(f"train.eval.anneal_frac: {t.eval.anneal_frac} is not in (0, 1)")
    for f in t.checkpoint.milestones:
        if not 0 < f <= 1:
            raise ConfigError(f"train.checkpoint.milestones: {f} is not a fraction of training in (0, 1]")


def resolve_defaults(cfg: RunConfig) -> None:
    """Fill in what the model config leaves to the run: the sliding window of `swa` layers (None: half of
    train.seq_len, as Olmo 3's 4096 of 8192). A window longer than the context is refused."""
    m = cfg.model
    if "swa" not in resolve_layers(m):
        return
    if m.window is None:
        m.window = max(1, cfg.train.seq_len // 2)
    elif m.window > cfg.train.seq_len:
        raise ConfigError(f"model.window: {m.window} is longer than the context train.seq_len={cfg.train.seq_len}")


def model_digest(m: ModelConfig) -> str:
    """Six hex digits of the model config (vocab_size left out: the tokenizer sets it)."""
    d = {k: v for k, v in to_dict(m).items() if k != "vocab_size"}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:6]


def default_name(cfg: RunConfig, overrides: list[str]) -> str:
    """<model>-<layers>x<d_model>-s<seed>; with the model config's digest after the shape when model.* overrides
    change it from what tokengap/conf/ gives for this model and size, so that e.g. `model.pattern=[...]` never lands in
    the run directory of the unmodified model."""
    m = cfg.model
    shape = f"{m.name}-{m.n_layers}x{m.d_model}"
    if any(o.lstrip("+~").startswith("model.") for o in overrides):
        base = compose("config", [o for o in overrides if not o.lstrip("+~").startswith("model.")], "run_schema",
                       RunConfig).model
        if model_digest(base) != model_digest(m):
            shape += f"-{model_digest(m)}"
    return f"{shape}-s{cfg.train.seed}"


def load_run_config(overrides: list[str]) -> RunConfig:
    cfg = compose("config", overrides, "run_schema", RunConfig)
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    if {"model.ratio", "model.pattern"} <= given and cfg.model.ratio is not None:  # ratio would ignore the pattern
        raise ConfigError(f"model.ratio={cfg.model.ratio} and model.pattern={list(cfg.model.pattern)}: give one of "
                          "the two (the ratio builds the pattern)")
    named = given & {"name", "run_dir"}
    if "name" not in named:
        cfg.name = default_name(cfg, overrides)
        if "run_dir" not in named:
            cfg.run_dir = f"runs/{cfg.name}"
    return cfg
