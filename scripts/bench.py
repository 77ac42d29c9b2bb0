"""Training and scoring throughput: our zoo vs the reference implementations, same shapes, same GPU, one run.

    python -m scripts.bench [--sizes small base] [--models ...] [--json OUT.json] [--repeats 2]
    python -m scripts.bench --cpu          # the CPU reference path (tiny models), on this machine

Per model and size: full train step (forward, backward, fused AdamW) at T = 2048, bf16 autocast, vocab 32768
untied. Timed with CUDA events after warm-up; median over steps; the whole measurement repeated (--repeats)
to show the run-to-run spread. `swa` layers get a window of T / 2 (what a run at this context sets).

References (same shapes): mamba-ssm `MambaLMHeadModel` (Mamba2 layers, attention at the same layer indices via
attn_layer_idx, GatedMLP with the same hidden size, fused add+norm) for hybrid and recurrent; transformers
`LlamaForCausalLM` (SDPA), eager and compiled, for the transformer; transformers `OlmoHybridForCausalLM` (its GDN
on fla, with fla's Hopper guard lifted once our check has passed for its head dims, as for ours) for hybrid_gdn.
mamba-ssm's attention needs flash-attn for rotary embeddings, which is not installable offline: its attention
layers run without RoPE (slightly less work). transformers' OlmoHybrid requires an attention layer, so
recurrent_gdn has no reference.

MFU = model FLOPs per token x tokens/s / 989e12 (H100/H200 SXM dense bf16), with model FLOPs per token
(tokengap.models.config.flops_per_token) = 6 x (matmul parameters, lm_head included, embedding lookup excluded) + each
mixer's own FLOPs from the registry (tokengap/models/mixers/: attention's QK^T and AV over the keys each query attends,
the SSD's and GDN's chunked products). Also reported against the GEMM ceiling measured in the same run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tokengap.models import LM
from tokengap.models import mixers
from tokengap.models.__main__ import ZOO, load
from tokengap.models.config import flops_per_token as model_flops
from tokengap.models.kernels import KernelChoice
from tokengap.train.graphed import GraphedFwdBwd

PEAK = 989e12
SIZES = {"small": dict(batch=32), "base": dict(batch=16)}
VOCAB, T = 32768, 2048


def zoo_cfg(name: str, size: str, **over):
    cfg = load([f"model={name}", f"size={size}"])
    cfg.vocab_size = VOCAB
    if cfg.window is None:
        cfg.window = T // 2
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def flops_per_token(cfg, matmul_params: int) -> float:
    return model_flops(cfg, T, matmul_params)


def recurrent(cfg) -> bool:
    return any(mixers.get(m).recurrent for m in cfg.layers())


def matmul_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n)


@dataclass
class Result:
    impl: str
    model: str
    size: str
    batch: int
    step_ms: float
    tokens_per_s: float
    peak_mem_gb: float
    mfu: float
    spread_pct: float
    note: str = ""


def cuda_times_ms(fn, n: int) -> list[float]:
    """Milliseconds of each of n calls of fn, timed with CUDA events (synchronised after each call)."""
    times = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return times


def time_train_steps(model, step_fn, params, batch, steps=10, warmup=3, repeats=2, graph=False):
    """graph: forward + backward replayed from a CUDA graph (train.cuda_graph), the optimizer step outside it."""
    params = list(params)
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    ids = torch.randint(0, VOCAB, (batch, T + 1), device="cuda")
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    graphed = GraphedFwdBwd(step_fn, params, torch.bfloat16) if graph else None
    torch.cuda.reset_peak_memory_stats()  # this model's peak, not the previous one's

    def one():
        if graphed is not None:  # the first call warms up and captures
            graphed(x[None], y[None])
            opt.step()
            return
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_fn(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one()
    torch.cuda.synchronize()
    if graphed is None:  # a graph's memory is allocated once, at capture: keep warm-up and capture in its peak
        torch.cuda.reset_peak_memory_stats()
    medians = [statistics.median(cuda_times_ms(one, steps)) for _ in range(repeats)]
    peak = torch.cuda.max_memory_allocated() / 1e9
    return statistics.median(medians), 100 * (max(medians) - min(medians)) / min(medians), peak


# change the recurrent layers only: not run for models without them
RECURRENT_VARIANTS = ("torch-conv", "fla-conv", "kernel-norm")
# what training runs (compiled + CUDA graph: the default on one GPU); the rows with a [variant] are experiments
PRODUCT = ("tokengap", "tokengap compiled + CUDA graph")
VARIANTS = {  # experiments on top of the compiled, graphed model: name -> what it changes (BENCHMARKS.md)
    "no-graph": "forward + backward launched from Python every step, no CUDA graph (train.cuda_graph=false; DDP)",
    "torch-conv": "the recurrent layers' conv through F.conv1d instead of our Triton conv",
    "fla-conv": "the recurrent layers' conv through fla's Triton causal_conv1d instead of ours",
    "kernel-norm": "the gated norm through mamba-ssm's Triton kernel (a graph break) instead of the traced twin",
    "fla-ce": "loss through fla's FusedLinearCrossEntropyLoss (bf16 inputs, 8 chunks) instead of our Triton loss",
    "max-autotune": "torch.compile(mode='max-autotune-no-cudagraphs')",
    "cd-tune": "inductor's coordinate-descent tuning of its Triton kernels' block sizes (longer compile)",
    "torch-ce": "loss through lm_head + F.cross_entropy (traced) instead of our Triton linear cross-entropy",
    "torch-norm": "residual add + RMSNorm traced (x + y, nn.RMSNorm; inductor fuses them) instead of our Triton kernels",
    "no-mix-order": "inductor's mix-order reductions off (the RMSNorm backward's row and column sums in two kernels)",
    "pdl": "inductor's Triton kernels with programmatic dependent launch (Hopper: the next kernel's prologue "
           "overlaps the previous one's tail)",
}
KERNEL_VARIANTS = {  # the KernelChoice of each variant that swaps an op
    "torch-conv": KernelChoice(conv="torch"), "fla-conv": KernelChoice(conv="fla"),
    "kernel-norm": KernelChoice(compiled_gated_norm_twin=False), "torch-ce": KernelChoice(fused_loss=False),
    "torch-norm": KernelChoice(fused_add_norm=False),
}
INDUCTOR_TRITON_KNOBS = {"no-mix-order": ("mix_order_reduction", False), "pdl": ("enable_pdl", True)}


def bench_ours(name, size, batch, compile_mode, repeats, variant=None):
    """compile_mode: False (eager, no CUDA graph) or True (compiled + CUDA graph); variant: None or a key of
    VARIANTS (compiled only)."""
    import torch._inductor.config as inductor_config
    torch._dynamo.reset()  # a fresh compile per variant: no cache entries or dynamic shapes from the previous one
    knob = INDUCTOR_TRITON_KNOBS.get(variant)
    saved_knob = getattr(inductor_config.triton, knob[0]) if knob else None  # AttributeError: not in this torch
    try:  # every inductor switch below is restored in `finally`, whatever fails
        inductor_config.coordinate_descent_tuning = variant == "cd-tune"
        if knob:
            setattr(inductor_config.triton, knob[0], knob[1])
        cfg = zoo_cfg(name, size)
        torch.manual_seed(0)
        model = LM(cfg, kernels=KERNEL_VARIANTS.get(variant)).cuda()
        checks = model.check_kernels(torch.device("cuda"), torch.bfloat16)  # fla's GDN backward, as the Trainer
        if variant == "fla-ce":
            from fla.modules import FusedLinearCrossEntropyLoss
            flce, hidden = FusedLinearCrossEntropyLoss(), torch.compile(model.hidden_states)

            def step(x, y):  # the residual stream is fp32 under autocast: hand the kernel bf16 as the GEMMs get
                return flce(hidden(x).bfloat16(), y, model.lm_head.weight.bfloat16())
        else:
            fwd = model
            if compile_mode:
                fwd = torch.compile(model, mode="max-autotune-no-cudagraphs" if variant == "max-autotune" else None)
            step = lambda x, y: fwd(x, y)  # noqa: E731
        graph = bool(compile_mode) and variant != "no-graph"
        ms, spread, mem = time_train_steps(model, step, model.parameters(), batch, repeats=repeats, graph=graph)
    finally:
        inductor_config.coordinate_descent_tuning = False
        if knob:
            setattr(inductor_config.triton, knob[0], saved_knob)
    tps = batch * T / ms * 1e3
    mfu = flops_per_token(cfg, matmul_params(model)) * tps / PEAK
    recurrent_names = set(mixers.names(recurrent=True))
    paths = {line.split(None, 3)[-1] for line in model.kernel_report()  # "layer  0 gdn  gdn=... conv=..."
             if line.startswith("layer") and line.split()[2] in recurrent_names}
    note = "; ".join(sorted(paths) + checks)
    impl = f"tokengap{' compiled' if compile_mode else ''}{' + CUDA graph' if graph else ''}{f' [{variant}]' if variant else ''}"
    return Result(impl, name, size, batch, ms, tps, mem, mfu, spread, note)


def _llama(cfg):
    from transformers import LlamaConfig, LlamaForCausalLM
    lc = LlamaConfig(vocab_size=VOCAB, hidden_size=cfg.d_model, intermediate_size=cfg.ffn_dim,
                     num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                     num_key_value_heads=cfg.kv_heads, max_position_embeddings=T, tie_word_embeddings=False,
                     attn_implementation="sdpa", torch_dtype=torch.float32)
    return LlamaForCausalLM(lc).cuda()


def _olmo_hybrid(cfg):
    """transformers' OlmoHybridForCausalLM at our shapes: our pattern's gdn layers as its linear_attention layers,
    our GDN head dims, RoPE on the attention layers (its released checkpoints run NoPE)."""
    from transformers import OlmoHybridConfig, OlmoHybridForCausalLM
    from tokengap.models.mixers.gdn import dims
    h, hv, dk, dv = dims(cfg)
    oc = OlmoHybridConfig(vocab_size=VOCAB, hidden_size=cfg.d_model, intermediate_size=cfg.ffn_dim,
                          num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                          num_key_value_heads=cfg.kv_heads, max_position_embeddings=T, tie_word_embeddings=False,
                          layer_types=["linear_attention" if m == "gdn" else "full_attention" for m in cfg.layers()],
                          linear_num_key_heads=h, linear_num_value_heads=hv, linear_key_head_dim=dk,
                          linear_value_head_dim=dv, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
                          pad_token_id=None, eos_token_id=None, attn_implementation="sdpa")
    return OlmoHybridForCausalLM(oc).cuda(), (dk, dv)


def bench_reference(name, size, batch, repeats, compiled=False):
    """The reference implementation of `name` at `size` (None where there is none); compiled: torch.compile."""
    cfg = zoo_cfg(name, size)
    torch.manual_seed(0)
    torch._dynamo.reset()
    lifted = None
    if name == "transformer":
        model = _llama(cfg)
        impl = f"transformers Llama (sdpa){' compiled' if compiled else ''}"
        fwd = torch.compile(model) if compiled else model
        step = lambda x, y: fwd(input_ids=x, labels=y).loss  # noqa: E731  (shifts internally: fine for timing)
    elif name == "hybrid_gdn":
        from tokengap.models.ops.external import fla_gated_delta_rule
        from tokengap.models.ops.gdn.fla import check_backward
        ns, why = fla_gated_delta_rule()
        if ns is None:
            print(f"no OlmoHybrid reference: {why}")
            return None
        model, (dk, dv) = _olmo_hybrid(cfg)
        print(check_backward(dk, dv, torch.bfloat16, torch.device("cuda")))  # raises if fla's backward is off here
        lifted = (ns.guard_module, ns.guard_module.TRITON_ABOVE_3_7_1)
        ns.guard_module.TRITON_ABOVE_3_7_1 = True  # transformers calls fla's own op, which reads the flag
        impl = f"transformers OlmoHybrid (fla {ns.version}){' compiled' if compiled else ''}"
        fwd = torch.compile(model) if compiled else model
        step = lambda x, y: fwd(input_ids=x, labels=y).loss  # noqa: E731
    elif name in ("hybrid", "recurrent") and not compiled:
        from tokengap.models.ops.external import mamba_ssm_triton
        if mamba_ssm_triton()[0] is None:
            return None
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
        layers = cfg.layers()
        m = cfg.mamba
        mc = MambaConfig(d_model=cfg.d_model, d_intermediate=cfg.ffn_dim, n_layer=cfg.n_layers, vocab_size=VOCAB,
                         ssm_cfg={"layer": "Mamba2", "d_state": m.d_state, "headdim": m.headdim, "expand": m.expand,
                                  "chunk_size": m.chunk_size, "use_mem_eff_path": False},
                         attn_layer_idx=[i for i, x in enumerate(layers) if x == "attention"],
                         attn_cfg={"num_heads": cfg.n_heads, "causal": True, "rotary_emb_dim": 0},
                         rms_norm=True, residual_in_fp32=True, fused_add_norm=True, tie_embeddings=False,
                         pad_vocab_size_multiple=8)
        model = MambaLMHeadModel(mc).cuda()
        ce = torch.nn.functional.cross_entropy

        def step(x, y):
            logits = model(x).logits
            return ce(logits.float().flatten(0, 1), y.flatten())
        impl = "mamba_ssm MambaLMHeadModel"
    else:
        return None
    try:
        ms, spread, mem = time_train_steps(model, step, model.parameters(), batch, repeats=repeats)
    finally:
        if lifted is not None:
            lifted[0].TRITON_ABOVE_3_7_1 = lifted[1]
    tps = batch * T / ms * 1e3
    mfu = flops_per_token(cfg, matmul_params(model)) * tps / PEAK
    return Result(impl, name, size, batch, ms, tps, mem, mfu, spread)


def gemm_ceiling() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(20):
        a @ b
    e1.record()
    torch.cuda.synchronize()
    return 2 * 8192 ** 3 * 20 / (e0.elapsed_time(e1) / 1e3)


def scoring_set(n_tokens=1_000_000, vocab=16384):
    """A synthetic eval set of random tokens (throughput only): documents of 500-6000 tokens, n_tokens in all."""
    import numpy as np
    from tokengap.evaluation.evalset import EvalSet
    rng = np.random.default_rng(0)
    lens = rng.integers(500, 6000, size=400)
    lens = lens[: np.searchsorted(np.cumsum(lens), n_tokens)]
    toks = rng.integers(1, vocab, size=int(lens.sum())).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    docs = [{"id": str(i), "domain": "x", "source": "x", "text": ""} for i in range(len(lens))]
    return EvalSet(docs, toks, np.repeat(np.arange(len(lens), dtype=np.int32), lens),
                   np.zeros((len(toks), 2), np.int32), starts, 0, "synthetic")


def bench_scoring(size="small", batch=32, models=("transformer", "hybrid", "recurrent")):
    """Scoring tokens/s of a small model on scoring_set(), eager bf16: {model: {"first_pass": ...,
    "second_pass": ...}}, two passes over the same set after a 5-document warm-up."""
    from tokengap.evaluation.scoring import ZooScorer, score
    out = {}
    ev = scoring_set()
    for name in models:
        model = LM(zoo_cfg(name, size, vocab_size=16384)).cuda().eval()
        score(ZooScorer(model), ev.subset(5)[0], T, batch, "cuda", torch.bfloat16, progress=False)  # warm-up
        rates = []
        for _ in range(2):  # the first pass may meet shapes the warm-up did not have; the second meets none
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            score(ZooScorer(model), ev, T, batch, "cuda", torch.bfloat16, progress=False)
            torch.cuda.synchronize()
            rates.append(ev.n_tokens / (time.perf_counter() - t0))
        out[name] = {"first_pass": rates[0], "second_pass": rates[1]}
    return out


def profile(name: str, size: str, compile_mode: bool, rows: int = 30) -> str:
    """Top CUDA kernels of one full train step (after warm-up), by total device time."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    torch._dynamo.reset()
    cfg = zoo_cfg(name, size)
    model = LM(cfg).cuda()
    fwd = torch.compile(model) if compile_mode else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(0, VOCAB, (SIZES[size]["batch"], T + 1), device="cuda")

    def one():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(ids[:, :-1], ids[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        one()
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(2):
            one()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=70)


def bench_cpu() -> None:
    torch.manual_seed(0)
    print(f"CPU reference path, torch {torch.__version__}, {torch.get_num_threads()} threads; tiny models, "
          f"batch 8 x 256, fp32, forward+backward+AdamW")
    for name in ZOO:
        cfg = zoo_cfg(name, "tiny", vocab_size=8192, window=128)  # half the 256-token context, as a run sets it
        model = LM(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        ids = torch.randint(0, 8192, (8, 257))
        times = []
        for i in range(8):
            t0 = time.perf_counter()
            model(ids[:, :-1], ids[:, 1:]).backward()
            opt.step()
            opt.zero_grad()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        print(f"  {name:12s} {8 * 256 / statistics.median(times):8,.0f} tokens/s (median of {len(times)} steps)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["small", "base"])
    ap.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--compiled-reference", nargs="*", default=["transformer"], choices=["transformer", "hybrid_gdn"],
                    help="models whose reference is also timed under torch.compile (default: transformer)")
    ap.add_argument("--no-scoring", action="store_true")
    ap.add_argument("--eager-only", action="store_true")
    ap.add_argument("--no-eager", action="store_true", help="time our models compiled only")
    ap.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS),
                    help="also time these experiments (compiled): " + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()))
    ap.add_argument("--json", default=None)
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--profile", nargs="*", default=[], metavar="MODEL:SIZE[:compiled]",
                    help="print the top CUDA kernels of a train step, e.g. hybrid:small transformer:base:compiled")
    args = ap.parse_args()
    if args.cpu:
        bench_cpu()
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device (use --cpu for the CPU reference path)", file=sys.stderr)
        return 2
    import triton
    env = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
           "date": datetime.date.today().isoformat()}
    env["gemm_tflops"] = gemm_ceiling() / 1e12
    print(json.dumps(env))
    results: list[Result] = []
    for size in args.sizes:
        batch = SIZES[size]["batch"]
        for name in args.models:
            runs = [(False, None)] if args.eager_only else [(False, None)] * (not args.no_eager) + [(True, None)]
            runs += [(True, v) for v in args.variants if recurrent(zoo_cfg(name, size)) or v not in RECURRENT_VARIANTS]
            for mode, variant in runs:
                try:
                    results.append(bench_ours(name, size, batch, mode, args.repeats, variant))
                    print(results[-1], flush=True)
                except Exception as exc:  # report, keep going: one failing variant must not hide the others
                    print(f"FAILED tokengap {name} {size} compile={mode} variant={variant}: {type(exc).__name__}: {exc}",
                          flush=True)
                torch.cuda.empty_cache()
            for compiled in (False, True) if not args.no_reference else ():
                if compiled and name not in args.compiled_reference:
                    continue
                try:
                    r = bench_reference(name, size, batch, args.repeats, compiled)
                    if r:
                        results.append(r)
                        print(r, flush=True)
                except Exception as exc:
                    print(f"FAILED reference {name} {size} compiled={compiled}: {type(exc).__name__}: {exc}")
                torch.cuda.empty_cache()
    for spec in args.profile:
        name, size, *rest = spec.split(":")
        print(f"\n== profile {spec} (2 train steps) ==\n" + profile(name, size, bool(rest)), flush=True)
    scoring = {} if args.no_scoring else bench_scoring(models=args.models)
    hdr = f"{'impl':42} {'model':12} {'size':6} {'batch':>5} {'step ms':>8} {'tok/s':>10} {'mem GB':>7} {'MFU':>6} {'MFU/gemm':>8} {'spread':>7}"
    print("\n" + hdr)
    for r in results:
        print(f"{r.impl:42} {r.model:12} {r.size:6} {r.batch:5d} {r.step_ms:8.1f} {r.tokens_per_s:10,.0f} "
              f"{r.peak_mem_gb:7.1f} {100 * r.mfu:5.1f}% {100 * r.mfu * PEAK / env['gemm_tflops'] / 1e12:7.1f}% "
              f"{r.spread_pct:6.1f}%")
    print("\nbest ours / each reference (tokens/s; variants are experiments and do not count):")
    for size in args.sizes:
        for name in args.models:
            ours = [r for r in results if r.model == name and r.size == size and r.impl in PRODUCT]
            refs = [r for r in results if r.model == name and r.size == size and not r.impl.startswith("tokengap")]
            if ours:
                best = max(ours, key=lambda r: r.tokens_per_s)
                for ref in refs:
                    print(f"  {name:15} {size:6} {best.tokens_per_s / ref.tokens_per_s:5.2f}x  ({best.impl} / {ref.impl})")
    for size in args.sizes:
        step = {n: min((r.step_ms for r in results if r.model == n and r.size == size and r.impl in PRODUCT),
                       default=None) for n in args.models}
        for hyb, tr in (("hybrid", "transformer"), ("hybrid_gdn", "transformer_swa")):
            if step.get(hyb) and step.get(tr):
                print(f"{hyb} / {tr} step time at {size}: {step[hyb] / step[tr]:.3f}x")
    if scoring:
        print("scoring tokens/s (small, bf16, T=2048), first / second pass: "
              + ", ".join(f"{k} {v['first_pass']:,.0f} / {v['second_pass']:,.0f}" for k, v in scoring.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "results": [r.__dict__ for r in results],
                                               "scoring_tokens_per_s": scoring}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
