"""The training loop: `python -m tokengap.train model=hybrid data=tiny [overrides]`.

One process, or data-parallel under torchrun (DDP; NCCL on GPU, gloo on CPU). The data order is a pure
function of (seed, step), so every architecture sees the same batches, and a resumed run continues exactly
where it stopped. Evaluation runs the same per-token scorer as `analysis` and averages the losses overall,
per domain and under named boolean masks ("filters") produced by `python -m tokengap.analysis label`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

import numpy as np
import torch
import torch.distributed as dist

from tokengap.evaluation.evalset import EvalSet
from tokengap.evaluation.scorefile import code_version
from tokengap.evaluation.scoring import ZooScorer, masked_means, score
from tokengap.models import LM
from tokengap.models.config import ConfigError, to_plain
from tokengap.models.ops.gdn.fla import GDNKernelCheckError
from tokengap.models.atomic import atomic_write, atomic_write_text
from tokengap.models.ours import LOCK, MARKER, Refused, check_ours, check_unlocked, hold_lock, in_results, make_ours, move_aside
from tokengap.train.checkpoint import CheckpointError, latest, load_train_state, newest_verified, prune, save_checkpoint
from tokengap.train.config import RunConfig, load_run_config, resolve_defaults, validate_run
from tokengap.train.data.loader import PackedCorpus, TokenWindows
from tokengap.train.graphed import GraphedFwdBwd
from tokengap.train.schedule import anneal_lr, lr_at

log = logging.getLogger("tokengap.train")

# Keys that define the trajectory: a resumed run must agree on all of them.
TRAJECTORY_KEYS = ("model", "data", "train.seed", "train.seq_len", "train.batch_size", "train.max_tokens",
                   "train.optim", "train.schedule")


class NonFiniteLoss(RuntimeError):
    pass


# ---- processes and devices ------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    d = Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device_kind == "cuda":
        torch.cuda.set_device(d.local_rank)
    return d


def resolve_device(cfg: RunConfig, d: Dist) -> torch.device:
    kind = cfg.train.device
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    return torch.device(kind, d.local_rank) if kind == "cuda" else torch.device("cpu")


def _get(d: dict, dotted: str):
    for k in dotted.split("."):
        d = d[k]
    return d


def trajectory_mismatch(saved: dict, current: dict) -> Optional[str]:
    for key in TRAJECTORY_KEYS:
        a, b = _get(saved, key), _get(current, key)
        if a != b:
            if isinstance(a, dict):  # name the first differing leaf
                for k in sorted(set(a) | set(b)):
                    if a.get(k) != b.get(k):
                        return f"{key}.{k}: checkpoint has {a.get(k)!r}, this run asks {b.get(k)!r}"
            return f"{key}: checkpoint has {a!r}, this run asks {b!r}"
    return None


# ---- evaluation -------------------------------------------------------------------------------------------
class Evaluator:
    """Mean eval loss overall, per domain, and under each named filter mask."""

    def __init__(self, evalset: EvalSet, filters: dict[str, np.ndarray], context_len: int, batch_size: int,
                 device: torch.device, dtype: Optional[torch.dtype], whole: bool = True):
        self.evalset, self.context_len, self.batch_size, self.device, self.dtype = \
            evalset, context_len, batch_size, device, dtype
        self.whole = whole  # the whole eval set (not a subset): its per-token losses are worth keeping
        self.last = None  # (loss, correct) of the last call, per token
        doms = evalset.domains()
        self.masks = {f"eval/domain/{d}": doms == d for d in sorted(set(doms))}
        self.masks.update({f"eval/filter/{k}": v for k, v in sorted(filters.items())})

    def counts(self) -> dict[str, int]:
        return {"eval/all": self.evalset.n_tokens, **{k: int(m.sum()) for k, m in self.masks.items()}}

    @torch.no_grad()
    def __call__(self, model: LM, progress: bool = False, desc: str = "eval") -> dict[str, float]:
        was_training = model.training
        model.eval()
        loss, correct = score(ZooScorer(model), self.evalset, self.context_len, self.batch_size, self.device,
                              self.dtype, progress=progress, desc=desc)
        self.last = (loss, correct)
        model.train(was_training)
        return {"eval/all": float(loss.mean()), **masked_means(loss, self.masks)}


def load_filters(path: str, evalset: EvalSet, keep: Optional[np.ndarray]) -> dict[str, np.ndarray]:
    """Masks from a filters.npz; refuses a file made for another eval set, or no .npz at all."""
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"train.eval.filters: {path}: no such file") from None
    except Exception:  # a text file ("pickled data"), not a zip, truncated
        raise ConfigError(f"train.eval.filters: {path}: not a filters file (not a readable .npz archive)") from None
    with z:
        made_for = str(z["eval_hash"]) if "eval_hash" in z.files else None
        if made_for != evalset.eval_hash:
            raise ConfigError(f"train.eval.filters: {path} was made for eval set {str(made_for)[:16]}…, "
                              f"this run evaluates {evalset.eval_hash[:16]}…")
        masks = {k: z[k].astype(bool) for k in z.files if k != "eval_hash"}
    for k, m in masks.items():
        if m.shape != (evalset.n_tokens,):
            raise ConfigError(f"train.eval.filters: mask {k!r} has {m.shape[0]} entries, eval set {evalset.n_tokens}")
    return {k: m[keep] for k, m in masks.items()} if keep is not None else masks


CONSOLE_FILTERS = ("content_novel", "function_novel", "repeated_4", "open_delim", "close_delim")


def eval_line(rec: dict) -> str:
    """One console line of an evaluation record: overall loss and a few filters (all of them: metrics.jsonl)."""
    kind = "annealed eval" if rec.get("annealed") else "eval"
    parts = [f"all {rec['eval/all']:.4f}"] + [f"{k} {rec[f'eval/filter/{k}']:.4f}" for k in CONSOLE_FILTERS
                                              if f"eval/filter/{k}" in rec]
    return f"step {rec['step']} {kind}: " + ", ".join(parts) + f" ({rec['eval_seconds']:.1f} s)"


# ---- logging --------------------------------------------------------------------------------------------------
def _record_step(line: str) -> Optional[int]:
    """The step of one metrics.jsonl line, None for a line that is not a record (torn, garbage, blank)."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    step = rec.get("step", 0) if isinstance(rec, dict) else None
    return step if isinstance(step, int) else None


class MetricsLog:
    """metrics.jsonl (+ TensorBoard, + W&B). On resume, lines beyond the resumed step are dropped first."""

    def __init__(self, run_dir: Path, resume_step: Optional[int], tensorboard: bool, wandb_on: bool, config: dict):
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            keep, damaged = [], 0
            for ln in self.path.read_bytes().decode("utf-8", "replace").splitlines():
                step = _record_step(ln)
                if step is None:
                    damaged += ln.strip() != ""
                elif step <= resume_step:
                    keep.append(ln)
            if damaged:  # what a kill mid-write or a full disk leaves: the checkpoints hold the run, not the log
                log.warning("%s: dropped %d damaged line(s) (not a JSON record with a step)", self.path, damaged)
            atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))
        self.file = open(self.path, "a")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)
            except ImportError:
                log.warning("tensorboard is not installed: logging to metrics.jsonl only")
        self.wandb = None
        if wandb_on:
            try:
                import wandb
                self.wandb = wandb.init(project="tokengap", name=run_dir.name, config=config, resume="allow")
            except ImportError:
                log.warning("train.wandb=true but wandb is not installed")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k not in ("step",)}
        prefix = "annealed/" if record.get("annealed") else ""
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(prefix + k, v, record["step"])
        if self.wandb is not None:
            self.wandb.log({prefix + k: v for k, v in scalars.items()}, step=record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


# ---- the run ----------------------------------------------------------------------------------------------------
TRAIN_FILES = ("train.bin", "train_docs.npy", "tokenizer.json")


def check_corpus_files(corpus_dir) -> None:
    """The corpus's training files against the sha256s its manifest recorded when it was built, at start-up: a
    truncated or swapped train.bin otherwise fails deep in the embedding, or trains on other tokens without a word."""
    from tokengap.train.checkpoint import sha256_file
    try:
        files = json.loads((Path(corpus_dir) / "manifest.json").read_text()).get("files") or {}
    except (OSError, ValueError, AttributeError):
        return  # no manifest (a corpus made by hand): train.json's token count is still checked
    for rel in TRAIN_FILES:
        want = (files.get(rel) or {}).get("sha256") if isinstance(files.get(rel), dict) else None
        path = Path(corpus_dir) / rel
        if want and path.is_file() and sha256_file(path) != want:
            raise ConfigError(f"data: {path} does not match the sha256 in {Path(corpus_dir) / 'manifest.json'} "
                              f"({want[:16]}…): the corpus changed since it was built; rebuild or unpack it again")


class Trainer:
    def __init__(self, cfg: RunConfig):
        self.cfg, t = cfg, cfg.train
        self.dist = setup_distributed("cuda" if t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = resolve_device(cfg, self.dist)
        if t.threads:
            torch.set_num_threads(t.threads)
        check_corpus_files(cfg.data.corpus_dir())
        try:
            self.corpus = PackedCorpus(cfg.data.corpus_dir())
        except ValueError as exc:  # train.bin and train.json disagree
            raise ConfigError(f"data: {exc}") from None
        if cfg.model.vocab_size not in (0, self.corpus.vocab_size):
            raise ConfigError(f"model.vocab_size: {cfg.model.vocab_size}, but the corpus's tokenizer has "
                              f"{self.corpus.vocab_size} tokens (leave it 0: the tokenizer sets it)")
        cfg.model.vocab_size = self.corpus.vocab_size
        validate_run(cfg, self.dist.world)
        resolve_defaults(cfg)
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.resolved = to_plain(dataclasses.asdict(cfg))  # enums as their values: JSON and checkpoints
        self.tokens_per_step = t.batch_size * t.seq_len
        self.total_steps = math.ceil(t.max_tokens / self.tokens_per_step)
        self.micro = t.micro_batch_size or t.batch_size // self.dist.world
        self.accum = t.batch_size // self.dist.world // self.micro
        self.amp_dtype = torch.bfloat16 if (t.dtype == "bf16" or (t.dtype == "auto" and self.device.type == "cuda")) else None
        self.compile = t.compile == "true" or (t.compile == "auto" and self.device.type == "cuda")
        self.cuda_graph = t.cuda_graph == "true" or (t.cuda_graph == "auto" and self.device.type == "cuda"
                                                      and self.dist.world == 1)
        if self.cuda_graph and self.device.type != "cuda":
            raise ConfigError(f"train.cuda_graph: true needs a CUDA device, this run is on {self.device}")
        if self.cuda_graph and self.dist.world > 1:
            raise ConfigError(f"train.cuda_graph: true is not supported with DDP ({self.dist.world} processes)")
        s = t.schedule
        self.warmup = round(s.warmup_frac * self.total_steps)
        self.decay = round(s.decay_frac * self.total_steps) if s.kind == "wsd" else 0
        self.anneal_steps = {max(1, round(f * self.total_steps)) for f in t.eval.anneal_at}
        self.milestone_steps = {max(1, round(f * self.total_steps)) for f in t.checkpoint.milestones} | {self.total_steps}

        self._check_run_dir()
        if cfg.data.vocab_size and cfg.data.vocab_size != self.corpus.vocab_size:  # said, after every refusal
            logging.warning("data.vocab_size=%d is not the vocabulary of %s (its tokenizer has %d tokens): the "
                            "tokenizer decides; data.vocab_size only sizes a corpus being built", cfg.data.vocab_size,
                            cfg.data.corpus_dir(), self.corpus.vocab_size)
        self.start_over = False  # train.new_run=true over a run of another config: run() moves that one aside
        self.resume_from = self._find_resume()
        torch.manual_seed(t.seed)
        self.model = LM(cfg.model).to(self.device)
        try:  # resolve the kernels now: model.kernels=triton without them fails here, before the run directory exists
            self.model.kernel_paths(self.device)
        except RuntimeError as exc:
            raise ConfigError(f"model.kernels: {exc}") from None
        if self.dist.main:
            self._check_room()
        # before any step: each kernel that needs it checked on this device and dtype (fla's GDN backward)
        self.kernel_checks = self.model.check_kernels(self.device, self.amp_dtype or torch.float32)
        for line in self.kernel_checks:
            log.info(line)
        self.optimizer = self._make_optimizer()
        self.step = 0
        if self.resume_from is not None:
            self._load(self.resume_from)
        self.windows = TokenWindows(self.corpus.tokens, t.seq_len, t.seed)
        self.train_model = self.model
        if self.compile:
            self.train_model = torch.compile(self.model)
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.train_model = DDP(self.train_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.graphed = GraphedFwdBwd(self.train_model, self.model.parameters(), self.amp_dtype) if self.cuda_graph else None
        self.progress = t.progress and sys.stderr.isatty()  # no carriage-return lines in a redirected log
        self.bar = None
        wants_eval = t.eval.interval > 0 or bool(t.eval.anneal_at)
        self.evaluator = self._make_evaluator() if self.dist.main and wants_eval else None

    # -- setup --
    def _check_run_dir(self) -> None:
        """The refusals about run_dir that need no compute: the committed results/, a folder that is not one of our
        runs (a user's files: nothing of theirs is ever moved or written over), a run another process trains."""
        if in_results(self.run_dir):
            raise ConfigError(f"run_dir {self.run_dir}: inside the committed results/; pick another directory")
        check_ours(self.run_dir, "run", "run_dir")
        if self.dist.main:  # only rank 0 ever takes the lock (run())
            check_unlocked(self.run_dir)

    def _check_room(self) -> None:
        """A read-only folder or a full disk fails now, not at the first checkpoint hours in. One checkpoint holds
        the fp32 weights and AdamW's two moments: 12 bytes a parameter."""
        need = 12 * self.model.num_params(False)
        where = next(p for p in (self.run_dir.absolute(), *self.run_dir.absolute().parents) if p.exists())
        if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
            raise ConfigError(f"run_dir {self.run_dir}: {where} is not a writable folder")
        free = shutil.disk_usage(where).free
        if free < need:
            raise ConfigError(f"run_dir {self.run_dir}: {free / 2**20:,.0f} MiB free on its file system, one "
                              f"checkpoint needs about {need / 2**20:,.0f} MiB (weights and optimizer state)")

    def _find_resume(self) -> Optional[Path]:
        last, skipped = newest_verified(self.ckpt_root)  # none verifies: CheckpointError, never silently start over
        if self.dist.main:
            for why in skipped:
                log.warning("resume: skipped %s", why)
        if last is None:
            return None
        saved = load_train_state(last)
        why = trajectory_mismatch(saved["config"], self.resolved)
        if why is None and saved["tokenizer_sha256"] != self.corpus.tokenizer_sha256:
            why = f"tokenizer: checkpoint {saved['tokenizer_sha256'][:16]}…, corpus {self.corpus.tokenizer_sha256[:16]}…"
        if why is None:
            return last
        if not self.cfg.train.new_run:
            raise ConfigError(f"{self.run_dir}: cannot resume {last.name}: {why} "
                              f"(train.new_run=true starts a new run and moves the old one aside)")
        self.start_over = True
        return None

    def _claim(self, resumed: bool) -> IO:
        """The run directory made ours (the marker its first file) and locked for the run's life. A run this one
        does not continue (train.new_run=true, or logs without a checkpoint) is moved aside first, whole."""
        make_ours(self.run_dir, "run")
        lock = hold_lock(self.run_dir)
        stale = not resumed and any(p.name not in (MARKER, LOCK) for p in self.run_dir.iterdir())
        if self.start_over or stale:
            aside = move_aside(self.run_dir, "run")
            lock, old = hold_lock(make_ours(self.run_dir, "run")), lock
            old.close()
            print(f"train.new_run=true: moved the previous run to {aside}" if self.start_over else
                  f"{self.run_dir} held another run's files but no checkpoint to resume: moved them to {aside}")
        return lock

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.train.optim
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=fused)

    def _make_evaluator(self) -> Optional[Evaluator]:
        e = self.cfg.train.eval
        full = EvalSet.from_corpus(self.corpus.dir)
        ev, keep = full, None
        if e.max_docs_per_domain:
            ev, keep = full.subset(e.max_docs_per_domain)
        filters = load_filters(e.filters, full, keep) if e.filters else {}
        return Evaluator(ev, filters, self.cfg.train.seq_len, e.batch_size, self.device, self.amp_dtype,
                         whole=keep is None)

    def _load(self, path: Path) -> None:
        from safetensors.torch import load_model

        load_model(self.model, str(path / "model.safetensors"), device=str(self.device))
        state = load_train_state(path)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = state["step"]

    # -- one optimizer step --
    def lr(self, step: int) -> float:
        s, o = self.cfg.train.schedule, self.cfg.train.optim
        return lr_at(step, self.total_steps, o.lr, s.kind, self.warmup, self.decay, s.min_lr_ratio, s.decay_shape)

    def train_step(self, step: int, lr: float) -> tuple[float, float]:
        """Forward/backward over the global batch of `step` (with accumulation), clip, update. Returns (loss, grad norm)."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        x, y = self.windows.batch(step, self.cfg.train.batch_size, self.dist.rank, self.dist.world)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.graphed is not None:  # the same micro-batch loop, replayed from a CUDA graph
            total = self.graphed(x.reshape(self.accum, self.micro, -1), y.reshape(self.accum, self.micro, -1))
        else:
            autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
            total = torch.zeros((), device=self.device)
            for i, (xm, ym) in enumerate(zip(x.split(self.micro), y.split(self.micro))):
                last = i == self.accum - 1
                sync = nullcontext() if last or self.dist.world == 1 else self.train_model.no_sync()
                with sync, autocast:
                    loss = self.train_model(xm, ym) / self.accum
                with sync:
                    loss.backward()
                total += loss.detach()
        if self.dist.world > 1:
            dist.all_reduce(total, op=dist.ReduceOp.AVG)
        value = float(total)
        if not math.isfinite(value):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(f"non-finite loss ({value}) at step {step + 1}")
        clip = self.cfg.train.optim.grad_clip
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value, float(gnorm)

    # -- evaluation points --
    def evaluate(self, step: int, annealed: bool = False, **extra) -> Optional[dict]:
        if self.evaluator is None:
            return None
        t0 = time.perf_counter()
        metrics = self.evaluator(self.model, progress=self.progress, desc=f"eval at step {step}")
        rec = {"kind": "eval", "step": step, "tokens": extra.pop("tokens", step * self.tokens_per_step),
               "annealed": annealed, **extra, **metrics, "eval_seconds": time.perf_counter() - t0}
        self.log.write(rec)
        self._print(eval_line(rec))
        if annealed and self.evaluator.whole:
            self._save_annealed_scores(rec)
        return rec

    def _save_annealed_scores(self, rec: dict) -> None:
        """Per-token losses at an annealed point, a score file (docs/formats.md) in <run>/scores/, so that any
        analysis can be run at any annealed point afterwards."""
        from tokengap.evaluation.scorefile import save_scores
        ev, (loss, correct) = self.evaluator.evalset, self.evaluator.last
        meta = {"name": self.cfg.name, "model": str(self.run_dir), "arch": self.cfg.model.name, "step": rec["step"],
                "tokens": rec["tokens"], "annealed": True, "branch_steps": rec.get("branch_steps"),
                "tokenizer_sha256": ev.tokenizer_sha256, "eval_hash": ev.eval_hash,
                "tokenizer_content_sha256": ev.tokenizer_content_sha256, "eval_tokens_sha256": ev.eval_tokens_sha256,
                "context_len": self.cfg.train.seq_len, "n_tokens": ev.n_tokens, "mean_loss": float(loss.mean()),
                "code_version": self.code_version}
        save_scores(self.run_dir / "scores" / f"annealed-step{rec['step']:07d}.npz", loss, correct, meta)

    def _print(self, line: str) -> None:
        """A console line that does not break the progress bar."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def anneal_branch(self, step: int) -> None:
        """Decay from the stable-phase weights at `step`, evaluate, then restore and continue the stable run."""
        n = max(1, round(self.cfg.train.eval.anneal_frac * self.total_steps))
        saved_model = copy.deepcopy(self.model.state_dict())
        saved_opt = copy.deepcopy(self.optimizer.state_dict())
        from_lr = self.lr(step)
        min_lr = self.cfg.train.optim.lr * self.cfg.train.schedule.min_lr_ratio
        for i in range(n):  # the branch sees the batches the stable run sees next
            self.train_step(step + i, anneal_lr(i, n, from_lr, min_lr, self.cfg.train.schedule.decay_shape))
        if self.dist.main:
            self.evaluate(step, annealed=True, branch_steps=n, tokens=(step + n) * self.tokens_per_step)
        self.model.load_state_dict(saved_model)
        self.optimizer.load_state_dict(saved_opt)

    def save(self, step: int) -> Optional[Path]:
        path = None
        if self.dist.main:
            state = {"step": step, "tokens": step * self.tokens_per_step, "optimizer": self.optimizer.state_dict(),
                     "rng": {"torch": torch.get_rng_state(),
                             "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
                     "config": self.resolved, "tokenizer_sha256": self.corpus.tokenizer_sha256,
                     "data": {"seed": self.cfg.train.seed, "next_step": step}}
            extra = {"step": step, "tokens": step * self.tokens_per_step, "run": self.cfg.name,
                     "tokenizer_sha256": self.corpus.tokenizer_sha256, "code_version": self.code_version,
                     "context_len": self.cfg.train.seq_len}
            path = save_checkpoint(self.ckpt_root, step, self.model, state, extra, milestone=step in self.milestone_steps)
            prune(self.ckpt_root, self.cfg.train.checkpoint.keep_last)
        if self.dist.world > 1:
            dist.barrier()
        return path

    # -- main loop --
    def run(self) -> Path:
        d = self.dist
        self.code_version = code_version()
        resumed = self.resume_from is not None
        if resumed and self.step >= self.total_steps and (self.run_dir / "summary.json").is_file():
            if d.main:  # a finished run's records stay as they are
                print(f"run {self.cfg.name} finished at step {self.step} ({self.run_dir / 'summary.json'}); nothing "
                      "to do (train.new_run=true starts it over, moving this one aside)")
            return self.run_dir / "model"
        lock = self._claim(resumed) if d.main else None  # one writer: rank 0 writes everything the run keeps
        try:
            return self._train(resumed)
        finally:
            if lock is not None:
                lock.close()

    def _train(self, resumed: bool) -> Path:
        t, d = self.cfg.train, self.dist
        if d.world > 1:
            dist.barrier()
        if d.main:
            self._announce(resumed)
        self.log = MetricsLog(self.run_dir, self.step if resumed else None, t.tensorboard and d.main,
                              t.wandb and d.main, self.resolved) if d.main else None
        if d.main and not resumed and t.eval.interval > 0:
            self.evaluate(0)
        bar = None
        if d.main and self.progress:
            from tqdm import tqdm
            bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True, desc=self.cfg.name)
        self.bar = bar
        t_start, tok_timed, t_timed = time.perf_counter(), 0, 0.0
        try:
            while self.step < self.total_steps:
                step = self.step
                t0 = time.perf_counter()
                loss, gnorm = self.train_step(step, self.lr(step))
                dt = time.perf_counter() - t0
                self.step = step + 1
                if step > 0 or self.step == self.total_steps:  # the first step includes compilation
                    tok_timed, t_timed = tok_timed + self.tokens_per_step, t_timed + dt
                if step == 0 and d.main:
                    for line in self.model.kernel_report():
                        log.info(line)
                tps = tok_timed / t_timed if t_timed else 0.0
                if d.main and (self.step % t.log_interval == 0 or self.step == self.total_steps):
                    self.log.write({"kind": "train", "step": self.step, "tokens": self.step * self.tokens_per_step,
                                    "loss": loss, "lr": self.lr(step), "grad_norm": gnorm, "tokens_per_s": tps})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}")
                if self.step in self.anneal_steps:
                    self.anneal_branch(self.step)
                final = self.step == self.total_steps
                if t.eval.interval > 0 and (self.step % t.eval.interval == 0 or final) and d.main:
                    self.evaluate(self.step, annealed=final and t.schedule.kind == "wsd" and self.decay > 0)
                ck = t.checkpoint.interval
                if final or (ck > 0 and self.step % ck == 0) or self.step in self.milestone_steps:
                    self.save(self.step)
        except NonFiniteLoss as exc:
            last = latest(self.ckpt_root)
            raise NonFiniteLoss(f"{exc}; stopped. Last good checkpoint: {last or 'none'}") from None
        finally:
            if bar is not None:
                bar.close()
            if self.log is not None:
                self.log.close()
        wall = time.perf_counter() - t_start
        if d.main:
            return self._finish(wall, tok_timed / t_timed if t_timed else 0.0)
        return self.run_dir

    def _announce(self, resumed: bool) -> None:
        m = self.model
        layers = m.layer_types
        info = {"name": self.cfg.name, "layers": layers, "non_embedding_params": m.num_params(True),
                "params": m.num_params(False), "total_steps": self.total_steps, "tokens_per_step": self.tokens_per_step,
                "accumulation": self.accum, "world": self.dist.world, "device": str(self.device),
                "amp_dtype": str(self.amp_dtype), "compile": self.compile, "cuda_graph": self.cuda_graph, "config": self.resolved,
                "corpus": str(self.corpus.dir), "tokenizer_sha256": self.corpus.tokenizer_sha256,
                "code_version": self.code_version}
        atomic_write_text(self.run_dir / "run.json", json.dumps(info, indent=2))
        from omegaconf import OmegaConf
        atomic_write_text(self.run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(self.cfg)))
        print(f"run {self.cfg.name}: {'resuming at step ' + str(self.step) if resumed else 'new run'} in {self.run_dir}")
        print(f"  layers: {', '.join(f'{i}:{x}' for i, x in enumerate(layers))}")
        print(f"  non-embedding params {m.num_params(True):,}; total {m.num_params(False):,}")
        print(f"  {self.total_steps} steps x {self.tokens_per_step:,} tokens ({self.cfg.train.batch_size} x "
              f"{self.cfg.train.seq_len}, accumulation {self.accum}, {self.dist.world} process(es)) on {self.device}, "
              f"autocast {self.amp_dtype or 'off'}, compile {self.compile}, CUDA graph {self.cuda_graph}")

    def _finish(self, wall: float, tps: float) -> Path:
        from tokengap.models.io import save_pretrained

        model_dir = self.run_dir / "model"
        save_pretrained(self.model, model_dir, extra={"step": self.step, "run": self.cfg.name,
                                                       "tokenizer_sha256": self.corpus.tokenizer_sha256,
                                                       "code_version": self.code_version,
                                                       "context_len": self.cfg.train.seq_len})
        # the tokenizer beside the weights: scoring the user's own text with this model needs it (analysis score)
        atomic_write(model_dir / "tokenizer.json", lambda tmp: shutil.copyfile(self.corpus.dir / "tokenizer.json", tmp))
        summary = {"name": self.cfg.name, "steps": self.step, "tokens": self.step * self.tokens_per_step,
                   "wall_seconds": wall, "train_tokens_per_s": tps, "device": str(self.device),
                   "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                   "kernels": self.model.kernel_report(), "model_dir": str(model_dir)}
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        print(f"done: {self.step} steps in {wall:.0f}s ({tps:,.0f} train tokens/s)")
        print(f"  model (for `python -m tokengap.analysis score --model`): {model_dir}")
        print(f"  checkpoints: {self.ckpt_root}   logs: {self.run_dir / 'metrics.jsonl'}, {self.run_dir / 'tb'}")
        return model_dir


def main(argv: list[str]) -> int:
    from tokengap.models.console import setup_logging
    setup_logging()
    if any(a in ("-h", "--help") for a in argv):
        from tokengap.train.cli_help import help_text
        print(help_text())
        return 0
    dry = "--dry-run" in argv
    argv = [a for a in argv if a != "--dry-run"]
    try:
        cfg = load_run_config(argv)
        if dry:
            from tokengap.train.cli_help import dry_run
            print(dry_run(cfg))
            return 0
        trainer = Trainer(cfg)
        trainer.run()
    except (ConfigError, CheckpointError, Refused, FileNotFoundError, GDNKernelCheckError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLoss as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("error: interrupted; the same command resumes from the last checkpoint", file=sys.stderr)
        return 130
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
