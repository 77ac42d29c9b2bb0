"""GPU parity check: the CUDA kernel paths against the pure-PyTorch references, on random inputs and weights.

    python -m scripts.gpu_check [--json OUT.json] [--only STAGE ...]

(--only: run the stages whose name contains one of the words, e.g. `--only gdn`; the others are listed as not run.)

1. Our Mamba2 layer on the Triton path (mamba-ssm kernels) vs the same layer on the reference path.
2. Our Mamba2 layer vs mamba-ssm's stock `Mamba2` (use_mem_eff_path=False) loaded with the same state dict.
3. Attention: SDPA (flash / memory-efficient) vs the float32 math reference, with and without a window.
4. A whole hybrid LM: Triton path vs reference path; and a compiled train step vs the same step eager; a
   transformer_swa LM's compiled step (FlexAttention for the window) vs eager (SDPA with the mask).
5. The causal convs (ours, fla's) vs F.conv1d.
6. The training loss: our Triton linear cross-entropy vs lm_head + F.cross_entropy (loss, every gradient).
7. The residual add + RMSNorm: our Triton kernels vs x + y and nn.RMSNorm, in a hybrid train step (loss, every
   gradient).
8. Our GDN layer on fla's kernel (guard lifted behind our check) vs the same layer on the twin; fla's custom op
   under torch.library.opcheck; our GDN layer vs transformers' OlmoHybridGatedDeltaNet with the same weights
   (on fla's kernel, as transformers runs it on CUDA); a GDN hybrid LM's compiled train step vs eager.
(The CUDA-graphed train step against the plain one: tests/test_graphed.py, whose CUDA tests run on a GPU.)
Outputs and gradients (input and every parameter), fp32 and bf16. Error = ||a - b|| / ||b|| (relative L2),
the reference computed in float32 (float64 for the SSD scan where noted). Exits 1 if any error exceeds its
tolerance: fp32 5e-3 (the kernels use TF32), bf16 3e-2.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
from pathlib import Path

import torch

from tokengap.models import LM, ModelConfig
from tokengap.models.config import MambaConfig
from tokengap.models.kernels import KernelChoice
from tokengap.models.mixers.attention import Attention, apply_rope, attention_math_reference, rope_tables
from tokengap.models.mixers.gdn import GDNConfig, GatedDeltaNet, to_hf_state_dict
from tokengap.models.mixers.mamba2 import Mamba2
from tokengap.models.ops.gdn.reference import gdn_chunked_torch
from tokengap.models.ops.conv.external import wrap_fla_conv
from tokengap.models.ops.conv.reference import causal_conv1d_torch
from tokengap.models.ops.external import (causal_conv1d_cuda, fla_gated_delta_rule, fla_triton_conv, mamba_ssm_triton,
                                 tokengap_triton)

TOL = {torch.float32: 5e-3, torch.bfloat16: 3e-2}
rows: list[dict] = []
notes: list[dict] = []  # measured and reported, not judged (the JSON's "notes")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


T0 = time.perf_counter()


def stage(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def record(check: str, dtype, what: str, err: float, tol: float | None = None) -> None:
    """Keep the row and print it at once: a later stage that hangs or times out must not hide it. tol: the row's
    own tolerance (default TOL[dtype])."""
    tol = TOL[dtype] if tol is None else tol
    r = {"check": check, "dtype": str(dtype).removeprefix("torch."), "what": what, "rel_err": err,
         "tol": tol, "ok": bool(err <= tol)}
    rows.append(r)
    stage(f"{check} | {r['dtype']} | {what}: rel_err {err:.2e} (tol {tol:.0e}) {'ok' if r['ok'] else 'FAIL'}")


def first_call_note(what: str, first: dict, repeat: dict) -> None:
    """The gradients of a process's first call of fla's kernels against a repeat on the same inputs. On the H100
    (2026-12-07) the same GDN rows gave dt_bias / A_log errors of 5e-2 in a process where the shapes were new
    and 6e-3 in one where the Triton autotuner's choices were cached on disk (results/gpu/gpu_check_gdn_*h100*):
    a first call that autotunes looked different. The measured rows below use the repeat, as training uses the
    kernels after the CUDA graph's warm-up (whose gradients are dropped); this note says what the first call gave.
    For a per-head vector (dt_bias, A_log, or dg summed over batch and time) the relative L2 difference."""
    def sums(t):
        return t.sum(tuple(range(t.ndim - 1))) if t.ndim > 2 else t
    diffs = {n: rel(first[n], repeat[n]) for n in repeat if n in first}
    diffs.update({f"{n} head-sum": rel(sums(first[n]), sums(repeat[n])) for n in ("dg", "dbeta") if n in first})
    notes.append({"what": f"{what}: first call vs repeat", "rel_diff": diffs})
    worst = sorted(diffs, key=diffs.get, reverse=True)[:4]
    stage(f"{what}: first call vs repeat (the largest): " + ", ".join(f"{n} {diffs[n]:.1e}" for n in worst))


def run_layer(layer, x, dtype):
    """Forward + backward of sum(y * g) under autocast(dtype); returns y and grads {name: grad}."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        y = layer(x)
    # randn, not randn_like: randn_like keeps a transposed y's strides, giving the two sides different g
    g = torch.randn(y.shape, device=y.device, dtype=y.dtype, generator=torch.Generator(device=y.device).manual_seed(1))
    (y.float() * g.float()).sum().backward()
    grads = {"input": x.grad.float()}
    grads.update({n.removeprefix("mixer."): p.grad.float() for n, p in layer.named_parameters() if p.grad is not None})
    return y.float(), grads


def record_step(check, dtype, got, ref):
    """got, ref: (loss, {parameter name: gradient}); records the loss and the worst single parameter's gradient
    (per parameter: none hides in a sum)."""
    record(check, dtype, "loss", rel(got[0], ref[0]))
    errs = {n: rel(got[1][n], ref[1][n]) for n in ref[1]}
    worst = max(errs, key=errs.get)
    record(check, dtype, f"grad (worst: {worst})", errs[worst])


def compare(check, dtype, a, b):
    (ya, ga), (yb, gb) = a, b
    record(check, dtype, "output", rel(ya, yb))
    worst = max(((rel(ga[k], gb[k]), k) for k in gb if k in ga), default=(0.0, "-"))
    record(check, dtype, f"grad (worst: {worst[1]})", worst[0])
    print("    every gradient: " + ", ".join(f"{k} {rel(ga[k], gb[k]):.1e}" for k in gb if k in ga), flush=True)
    missing = set(gb) ^ set(ga)
    if missing:
        record(check, dtype, f"grads missing {sorted(missing)}", float("inf"))


def compare_to_floor(check, dtype, got, ref, floor):
    """compare(), each value held to max(TOL, FLOOR_MULT x the floor's error for it): the floor is an
    implementation of the same math with the kernel's rounding (got, ref, floor: (output, {name: grad}))."""
    from tokengap.models.ops.gdn.fla import FLOOR_MULT
    (yg, gg), (yr, gr), (yf, gf) = got, ref, floor
    record(check, dtype, "output", rel(yg, yr), max(TOL[dtype], FLOOR_MULT * rel(yf, yr)))
    tols = {k: max(TOL[dtype], FLOOR_MULT * rel(gf[k], gr[k])) for k in gr}
    errs = {k: rel(gg[k], gr[k]) for k in gr if k in gg}
    worst = max(errs, key=lambda k: errs[k] / tols[k])
    record(check, dtype, f"grad (worst vs its tol: {worst})", errs[worst], tols[worst])
    print("    every gradient (error / tol): " + ", ".join(f"{k} {errs[k]:.1e}/{tols[k]:.0e}" for k in errs), flush=True)


def mamba_layers(device):
    cfg = ModelConfig(d_model=512, n_heads=8, pattern=["mamba2"], n_layers=1,
                      mamba=MambaConfig(d_state=128, headdim=64, chunk_size=256), vocab_size=16)
    torch.manual_seed(0)
    ours = Mamba2(cfg).to(device)
    with torch.no_grad():  # non-trivial values for every parameter
        ours.norm.weight.uniform_(0.5, 1.5)
        ours.D.uniform_(0.5, 1.5)
    return cfg, ours


class WithOps(torch.nn.Module):
    """A mixer run with the ops of `choice` on `device` (what the LM resolves and hands in)."""

    def __init__(self, mixer, needs, choice, device="cuda", **swap):
        super().__init__()
        from tokengap.models.kernels import mixer_ops
        # swap: ops to replace (e.g. conv=the twin's), to tell one kernel's error from another's
        self.mixer, self.ops = mixer, dataclasses.replace(mixer_ops(choice, torch.device(device), needs), **swap)

    def forward(self, x):
        return self.mixer(x, None, self.ops)


def check_mamba(device, x):
    cfg, layer = mamba_layers(device)
    needs = ("ssd", "gated_norm", "conv")
    ours = WithOps(layer, needs, KernelChoice(scans="triton"))
    ref = WithOps(layer, needs, KernelChoice(scans="reference"))
    ns, why = mamba_ssm_triton()
    stock = None
    if ns is not None:
        from mamba_ssm.modules.mamba2 import Mamba2 as StockMamba2
        m = cfg.mamba
        stock = StockMamba2(cfg.d_model, d_state=m.d_state, d_conv=m.d_conv, expand=m.expand, headdim=m.headdim,
                            ngroups=m.ngroups, chunk_size=m.chunk_size, use_mem_eff_path=False).to(device)
        stock.load_state_dict(layer.state_dict())  # same names and shapes: strict load
    ref_out = run_layer(ref, x, torch.float32)  # the reference, in fp32
    stage("mamba2 reference path done")
    for dtype in (torch.bfloat16, torch.float32):  # bf16 first: the kernels the training runs
        stage(f"mamba2 triton path, {dtype}")
        triton_out = run_layer(ours, x, dtype)
        compare("mamba2: ours triton vs ours reference(fp32)", dtype, triton_out, ref_out)
        if stock is not None:
            stock_out = run_layer(stock, x, dtype)
            compare("mamba2: ours triton vs mamba_ssm.Mamba2", dtype, triton_out, stock_out)
    print("paths:", ours.ops.names, "|", ref.ops.names)
    return why


def check_conv(device):
    """The Triton causal convs (ours, what Mamba2 layers run on CUDA without causal-conv1d; fla's, the
    alternative) vs F.conv1d, on the strided (b, l, c) view that in_proj's split hands them; conv_dim 1280 as
    at `small`."""
    impls = {}
    for label, (fn, why) in (("ours triton", tokengap_triton("conv.kernel", "causal_conv1d_triton")),
                             ("fla triton", fla_triton_conv())):
        if fn is None:
            print(f"{label} conv unavailable ({why}): skipped")
            continue
        impls[label] = wrap_fla_conv(fn) if label == "fla triton" else fn

    class Conv(torch.nn.Module):
        def __init__(self, impl):
            super().__init__()
            torch.manual_seed(0)
            self.weight = torch.nn.Parameter(torch.randn(1280, 4, device=device) * 0.5)
            self.bias = torch.nn.Parameter(torch.randn(1280, device=device) * 0.1)
            self.impl = impl

        def forward(self, u):  # u: (b, l, 2304) -> conv over the middle 1280 channels
            if torch.is_autocast_enabled("cuda"):  # in the model the conv gets in_proj's bf16 output
                u = u.to(torch.get_autocast_dtype("cuda"))
            return self.impl(u[..., 512:1792], self.weight, self.bias)

    u = torch.randn(2, 1000, 2304, device=device)
    ref = run_layer(Conv(causal_conv1d_torch), u, torch.float32)
    for label, impl in impls.items():
        for dtype in (torch.bfloat16, torch.float32):
            compare(f"conv: {label} vs F.conv1d(fp32)", dtype, run_layer(Conv(impl), u, dtype), ref)


def check_attention(device):
    cfg = ModelConfig(d_model=512, n_heads=8, n_kv_heads=4, pattern=["attention"], n_layers=1, vocab_size=16)
    torch.manual_seed(0)
    for window in (None, 256):
        attn = Attention(cfg, window=window).to(device)
        x = torch.randn(2, 1024, 512, device=device)
        cos, sin = rope_tables(1024, cfg.head_dim, cfg.rope_theta, device)

        def math_ref(u):
            q, k, v = attn.wqkv(u).split([8 * 64, 4 * 64, 4 * 64], dim=-1)
            q = apply_rope(q.view(2, 1024, 8, 64), cos, sin).transpose(1, 2)
            k = apply_rope(k.view(2, 1024, 4, 64), cos, sin).transpose(1, 2)
            v = v.view(2, 1024, 4, 64).transpose(1, 2)
            return attn.wo(attention_math_reference(q, k, v, window).transpose(1, 2).reshape(2, 1024, 512))

        class Wrap(torch.nn.Module):
            def __init__(self, fn):
                super().__init__()
                self.fn, self.attn = fn, attn

            def forward(self, u):
                return self.fn(u)

        ref = run_layer(Wrap(math_ref), x, torch.float32)
        for dtype in (torch.float32, torch.bfloat16):
            out = run_layer(Wrap(lambda u: attn(u, (cos, sin))), x, dtype)
            compare(f"attention sdpa vs math (window={window}, gqa 8/4)", dtype, out, ref)


HYBRID = dict(name="hybrid", n_layers=4, d_model=512, n_heads=8, pattern=["mamba2"] * 3 + ["attention"],
              mlp_ratio=2.75, vocab_size=1024)


def _hybrid_lm(device) -> LM:
    torch.manual_seed(0)
    return LM(ModelConfig(**HYBRID, mamba=MambaConfig(chunk_size=256))).to(device)


def check_lm(device):
    fast = _hybrid_lm(device)
    slow = LM(fast.cfg, kernels=KernelChoice(scans="reference")).to(device)
    slow.load_state_dict(fast.state_dict())
    ids = torch.randint(0, 1024, (2, 1000), device=device)  # not a multiple of the chunk size
    for dtype in (torch.float32, torch.bfloat16):
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            a, b = fast(ids).float(), slow(ids).float()
        record("hybrid LM logits: triton vs reference", dtype, "logits", rel(a, b))
    return fast.kernel_report()


def _step(model, ids, targets, dtype, fwd=None):
    """(loss, {parameter name: gradient}) of one forward + backward of `fwd` (default: model) under autocast(dtype)."""
    model.zero_grad(set_to_none=True)
    with torch.autocast(ids.device.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = (model if fwd is None else fwd)(ids, targets)  # not `fwd or model`: a compiled module has no bool()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def check_compiled_step(device):
    """A train step of the compiled hybrid (inductor traces the gated-norm twin, RoPE over q and k together)
    against the same model eager (mamba-ssm's norm kernel): loss and every parameter's gradient."""
    model = _hybrid_lm(device)
    ids = torch.randint(0, 1024, (2, 1025), device=device)
    compiled = torch.compile(model)
    for dtype in (torch.float32, torch.bfloat16):
        eager, comp = (_step(model, ids[:, :-1], ids[:, 1:], dtype, fwd) for fwd in (model, compiled))
        record_step("hybrid LM train step: compiled vs eager", dtype, comp, eager)


def check_swa_compiled_step(device):
    """A transformer_swa LM's train step compiled (swa layers on FlexAttention with a block mask) vs the same step
    eager (SDPA with the boolean window mask): loss and every parameter's gradient. Window 256 of 1024 tokens."""
    torch.manual_seed(0)
    model = LM(ModelConfig(name="transformer_swa", n_layers=4, d_model=512, n_heads=8, n_kv_heads=4,
                           pattern=["swa"] * 3 + ["attention"], window=256, mlp_ratio=3.5, vocab_size=1024)).to(device)
    ids = torch.randint(0, 1024, (2, 1025), device=device)
    compiled = torch.compile(model)
    for dtype in (torch.float32, torch.bfloat16):
        eager, comp = (_step(model, ids[:, :-1], ids[:, 1:], dtype, fwd) for fwd in (model, compiled))
        record_step("swa LM train step: compiled (flex) vs eager (sdpa mask)", dtype, comp, eager)


def _with_and_without(check, off: KernelChoice, model, ids, targets):
    """record_step of the model with the default kernels (ours) against `off` (the twin), fp32 and bf16."""
    for dtype in (torch.float32, torch.bfloat16):
        outs = []
        for choice in (KernelChoice(), off):
            model.set_kernels(choice)
            outs.append(_step(model, ids, targets, dtype))
        model.set_kernels(KernelChoice())
        record_step(check, dtype, outs[0], outs[1])


def check_loss(device):
    model = _hybrid_lm(device)
    ids = torch.randint(0, 1024, (2, 1025), device=device)
    targets = ids[:, 1:].clone()
    targets[0, :100] = -100  # ignored positions
    _with_and_without("training loss: triton vs F.cross_entropy", KernelChoice(fused_loss=False), model,
                      ids[:, :-1], targets)


def check_add_norm(device):
    model = _hybrid_lm(device)
    ids = torch.randint(0, 1024, (2, 1025), device=device)
    _with_and_without("add + RMSNorm: triton vs x + y, nn.RMSNorm", KernelChoice(fused_add_norm=False), model,
                      ids[:, :-1], ids[:, 1:])


# A 4-layer hybrid_gdn at `small`'s width, with the zoo's GDN head dims (tokengap/conf/model/hybrid_gdn.yaml: K 96, V
# 192, 4 heads at d_model 512; tests/test_gpu_check_helpers.py holds the two equal)
GDN_LM = dict(name="hybrid_gdn", n_layers=4, d_model=512, n_heads=8, pattern=["gdn"] * 3 + ["attention"],
              mlp_ratio=3.0, vocab_size=1024, gdn=GDNConfig(head_dim=96))


# fla's GDN backward against the recurrence, per (key, value) head dim: K 48, what 0.75 d_model / model.n_heads gives
# at `small` and `base` (the zoo's GDN head dims until 2026-12-07; fla tiles it with BK = 64, the tile fla #640
# reports miscompiled on Hopper with triton >= 3.4), and Olmo Hybrid's K 96 (BK = 128), the zoo's since.
GDN_DG_SHAPES = ((48, 96), (96, 192))

def check_gdn_dg(device, shapes=GDN_DG_SHAPES, b: int = 4, l: int = 1000, h: int = 8, seeds=(0, 1)):
    """fla's chunk_gated_delta_rule (bf16, guard lifted) and a bf16 floor that is not fla's (our twin with every
    product's operands rounded to bf16: `gdn_chunked_torch(mm_dtype=bfloat16)`) against the token-by-token
    recurrence in float64 on the same bf16-rounded inputs: relative L2 error of dq, dk, dv, dg, dbeta and of the
    per-head sums of dg and dbeta over batch and time, the sums that dt_bias and A_log receive (a small bias per
    token that the whole-tensor error hides adds up there). Decays and write strengths as a GDN layer has them at
    initialisation: A ~ U(1, 16), softplus(dt_bias) log-uniform in [1e-3, 0.1], beta = 2 sigmoid(.). Two seeds,
    the worse of the two per row; B 4, T 1000 (not a multiple of the chunk), 8 heads."""
    from tokengap.models.ops.gdn import fla
    from tokengap.models.ops.gdn.naive import gdn_recurrent_naive
    from tokengap.models.ops.gdn.reference import gdn_chunked_torch
    ns, why = fla_gated_delta_rule()
    if ns is None:
        print(f"fla unavailable ({why}): GDN dg rows skipped")
        return
    names = ("dq", "dk", "dv", "dg", "dbeta", "dg head-sum", "dbeta head-sum")
    m = ns.guard_module
    for dk, dv in shapes:
        errs: dict[str, dict[str, list]] = {"fla": {n: [] for n in names}, "floor": {n: [] for n in names}}
        for seed in seeds:
            gen = torch.Generator(device=device).manual_seed(seed)

            def r(*shape):
                return torch.randn(*shape, device=device, generator=gen)
            q, k = fla.l2_normalize(r(b, l, h, dk)), fla.l2_normalize(r(b, l, h, dk))
            A = 1 + 15 * torch.rand(h, device=device, generator=gen)
            dt = torch.exp(torch.rand(h, device=device, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            g = -A * torch.nn.functional.softplus(r(b, l, h) + torch.log(torch.expm1(dt)))
            beta = 2 * torch.sigmoid(r(b, l, h))
            inputs = [t.bfloat16() for t in (q, k, r(b, l, h, dv))] + [g, beta.bfloat16()]
            do = r(b, l, h, dv).bfloat16()

            def grads(fn, dtype):
                leaves = [t.detach().to(dtype if i != 3 else torch.float32).requires_grad_(True)
                          for i, t in enumerate(inputs)]
                fn(*leaves).double().mul(do.double()).sum().backward()
                return [t.grad.double() for t in leaves]
            ref = grads(lambda *a: gdn_recurrent_naive(*(t.double() for t in a)), torch.float64)
            before, m.TRITON_ABOVE_3_7_1 = m.TRITON_ABOVE_3_7_1, True
            try:  # twice: the first call of a process at a new autotune key autotunes (see first_call_note)
                first = grads(lambda *a: fla.chunk_gdn_fla(*a), torch.bfloat16)
                got = {"fla": grads(lambda *a: fla.chunk_gdn_fla(*a), torch.bfloat16)}
            finally:
                m.TRITON_ABOVE_3_7_1 = before
            first_call_note(f"gdn dg K {dk} V {dv} seed {seed}", dict(zip(("dq", "dk", "dv", "dg", "dbeta"), first)),
                            dict(zip(("dq", "dk", "dv", "dg", "dbeta"), got["fla"])))
            got["floor"] = grads(lambda *a: gdn_chunked_torch(*(t.float() for t in a), mm_dtype=torch.bfloat16),
                                 torch.bfloat16)
            for impl, gr in got.items():
                e = errs[impl]
                for n, a, want in zip(names, gr, ref):
                    e[n].append(rel(a, want))
                e["dg head-sum"].append(rel(gr[3].sum((0, 1)), ref[3].sum((0, 1))))
                e["dbeta head-sum"].append(rel(gr[4].sum((0, 1)), ref[4].sum((0, 1))))
        for impl in ("floor", "fla"):
            print(f"    K {dk} V {dv} {impl} per seed: " + ", ".join(f"{n} {' '.join(f'{e:.2e}' for e in errs[impl][n])}"
                                                            for n in names), flush=True)
        for n in names:  # the worse seed, fla's row held to FLOOR_MULT x the floor's (as fla.check_backward does)
            floor = max(errs["floor"][n])
            record(f"gdn dg: bf16 floor (twin, bf16 operands) vs recurrence(fp64), K {dk} V {dv}", torch.bfloat16,
                   n, floor)
            record(f"gdn dg: fla chunk vs recurrence(fp64), K {dk} V {dv}", torch.bfloat16, n, max(errs["fla"][n]),
                   tol=fla.FLOOR_MULT * floor)


def check_gdn(device, x):
    """Our GDN layer (GDN_LM's: the zoo's head dims at `small`; T = 1000, not a multiple of the 64-token chunk) on
    fla's kernel vs on the twin (fp32); opcheck of the custom op; vs transformers' layer."""
    from tokengap.models.ops.gdn import fla
    ns, why = fla_gated_delta_rule()
    if ns is None:
        print(f"fla unavailable ({why}): GDN rows skipped")
        return why
    cfg = ModelConfig(**{**GDN_LM, "n_layers": 1, "pattern": ["gdn"]})
    torch.manual_seed(0)
    layer = GatedDeltaNet(cfg).to(device)
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
    needs = ("gdn", "gated_norm", "conv")
    K, V = layer.head_dim, layer.v_head_dim
    what = f"gdn: fla backward check (K {K}, V {V}, T 300)"
    kernel, twin = WithOps(layer, needs, KernelChoice(scans="triton")), WithOps(layer, needs, KernelChoice(scans="reference"))
    passed = []
    for dtype in (torch.bfloat16, torch.float32):  # the Trainer's check, in a child process: a crash is a refusal
        try:
            errs = fla.check_backward(layer.head_dim, layer.v_head_dim, dtype, device)
            worst = max(errs, key=errs.get)
            record(what, dtype, f"worst: {worst}", errs[worst])
            passed.append(dtype)
        except fla.GDNKernelCheckError as exc:
            print(f"refused: {exc}")
            why = "the kernel crashed" if "crashed" in str(exc) else "off tolerance"
            record(what, dtype, f"refused: {why}", float("inf"))
    ref = run_layer(twin, x, torch.float32)
    for dtype in passed:  # a dtype the check refused would stop the process here, as it stops training
        first = run_layer(kernel, x, dtype)
        repeat = run_layer(kernel, x, dtype)
        first_call_note(f"gdn layer {str(dtype).removeprefix('torch.')}", first[1], repeat[1])
        if dtype == torch.float32:
            # fla's dots read float32 operands as TF32: the floor is the twin with TF32-rounded operands (the conv
            # and norm on their twins). dt_bias and A_log receive sums of dg over every token, where TF32's
            # rounding adds up; each gradient is held to FLOOR_MULT x its floor where that exceeds TOL (the rule of
            # check_backward, fixed 2026-12-07 before this row was measured with the floor)
            tf32 = WithOps(layer, needs, KernelChoice(scans="reference"),
                           gdn=functools.partial(gdn_chunked_torch, mm_dtype="tf32"))
            floor = run_layer(tf32, x, torch.float32)
            compare("gdn: ours twin tf32 operands vs ours twin(fp32) [floor]", dtype, floor, ref)
            compare_to_floor("gdn: ours fla-triton vs ours twin(fp32)", dtype, repeat, ref, floor)
        else:
            compare("gdn: ours fla-triton vs ours twin(fp32)", dtype, repeat, ref)
    if torch.bfloat16 in passed:
        # what bf16 costs without any kernel (the floor the row above is read against), and fla's op alone
        # (conv and gated norm on their twins): the layer row's error is fla's only if this one carries it
        compare("gdn: ours twin bf16 vs ours twin(fp32) [floor]", torch.bfloat16, run_layer(twin, x, torch.bfloat16), ref)
        fla_only = WithOps(layer, needs, KernelChoice(scans="triton"), conv=twin.ops.conv, gated_norm=twin.ops.gated_norm)
        compare("gdn: fla op only (conv, norm twins) vs twin(fp32)", torch.bfloat16,
                run_layer(fla_only, x, torch.bfloat16), ref)
    # the custom op's schema, fake and autograd registration against the real kernel
    q = fla.l2_normalize(torch.randn(2, 200, 4, K, device=device)).bfloat16()
    k = fla.l2_normalize(torch.randn(2, 200, 4, K, device=device)).bfloat16()
    v = torch.randn(2, 200, 4, V, device=device).bfloat16()
    g, beta = -torch.rand(2, 200, 4, device=device) * 0.1, torch.rand(2, 200, 4, device=device).bfloat16()
    try:
        torch.library.opcheck(torch.ops.tokengap.gdn_fwd.default, (q, k, v, g, beta, K ** -0.5, 64),
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))
        record("gdn: torch.library.opcheck of tokengap::gdn_fwd", torch.float32, "schema, fake, aot", 0.0)
    except Exception as exc:
        print(f"opcheck failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        record("gdn: torch.library.opcheck of tokengap::gdn_fwd", torch.float32, "schema, fake, aot", float("inf"))
    check_gdn_vs_transformers(device, x, layer, ns, passed)
    return ""


def check_gdn_vs_transformers(device, x, layer, ns, passed):
    """transformers' OlmoHybridGatedDeltaNet with our weights (mapped by from_hf_state_dict), on fla's kernel with
    the guard lifted (transformers calls fla's own op; our check above passed for these head dims)."""
    try:
        from transformers import OlmoHybridConfig
        from transformers.models.olmo_hybrid.modeling_olmo_hybrid import OlmoHybridGatedDeltaNet
    except ImportError as exc:
        print(f"transformers has no OlmoHybrid ({exc}): skipped")
        return
    hc = OlmoHybridConfig(hidden_size=512, num_attention_heads=8, num_hidden_layers=4, vocab_size=1024,
                          intermediate_size=1536, pad_token_id=None, eos_token_id=None,
                          linear_num_key_heads=layer.n_heads, linear_num_value_heads=layer.n_v_heads,
                          linear_key_head_dim=layer.head_dim, linear_value_head_dim=layer.v_head_dim)
    theirs = OlmoHybridGatedDeltaNet(hc, layer_idx=0).to(device)
    theirs.load_state_dict(to_hf_state_dict(layer))
    ours = WithOps(layer, ("gdn", "gated_norm", "conv"), KernelChoice(scans="triton"))
    m = ns.guard_module
    before, m.TRITON_ABOVE_3_7_1 = m.TRITON_ABOVE_3_7_1, True
    try:
        for dtype in passed:
            a, b = run_layer(ours, x, dtype), run_layer(theirs, x, dtype)
            # the two layers' parameters have different names: compare the input's gradient
            compare("gdn: ours vs transformers OlmoHybridGatedDeltaNet", dtype,
                    (a[0], {"input": a[1]["input"]}), (b[0], {"input": b[1]["input"]}))
    finally:
        m.TRITON_ABOVE_3_7_1 = before


def check_gdn_lm_compiled_step(device):
    """A GDN hybrid LM's train step compiled (the fla custom ops in the graph) vs the same step eager."""
    if fla_gated_delta_rule()[0] is None:
        return
    torch.manual_seed(0)
    from tokengap.models.ops.gdn.fla import GDNKernelCheckError
    model = LM(ModelConfig(**GDN_LM)).to(device)
    passed = []
    for dtype in (torch.bfloat16, torch.float32):
        try:
            model.check_kernels(device, dtype)
            passed.append(dtype)
        except GDNKernelCheckError as exc:
            print(f"skipping {dtype}: {exc}")
    ids = torch.randint(0, 1024, (2, 1025), device=device)
    compiled = torch.compile(model)
    # the floor: each step's distance from the truth (every op on its twin, float32, no TF32). dt_bias and A_log
    # receive sums of dg over every token, so two correct implementations that round differently (compiled: other
    # fusions, the gated norm's traced twin) differ there far more than in the loss: each parameter's difference is
    # held to FLOOR_MULT x the eager step's own error against the truth where that exceeds TOL (the rule of
    # check_backward, fixed 2026-12-07 before these rows were measured with the floor). A miscompile gives order 1.
    model.set_kernels(KernelChoice(scans="reference", conv="torch", fused_loss=False, fused_add_norm=False))
    truth = _step(model, ids[:, :-1], ids[:, 1:], torch.float32)
    model.set_kernels(KernelChoice())
    for dtype in passed:
        first = _step(model, ids[:, :-1], ids[:, 1:], dtype, model)  # the first call of new shapes: see first_call_note
        eager, comp = (_step(model, ids[:, :-1], ids[:, 1:], dtype, fwd) for fwd in (model, compiled))
        first_call_note(f"gdn hybrid LM step {str(dtype).removeprefix('torch.')}", first[1], eager[1])
        record_step_to_floor("gdn hybrid LM train step: compiled vs eager", dtype, comp, eager, truth)
    return model.kernel_report()


def record_step_to_floor(check, dtype, got, ref, truth):
    """record_step with each value held to max(TOL, FLOOR_MULT x ref's own error against `truth`) (see
    check_gdn_lm_compiled_step); got, ref, truth: (loss, {parameter name: gradient})."""
    from tokengap.models.ops.gdn.fla import FLOOR_MULT
    record(check, dtype, "loss", rel(got[0], ref[0]), max(TOL[dtype], FLOOR_MULT * rel(ref[0], truth[0])))
    tols = {n: max(TOL[dtype], FLOOR_MULT * rel(ref[1][n], truth[1][n])) for n in ref[1]}
    errs = {n: rel(got[1][n], ref[1][n]) for n in ref[1]}
    worst = max(errs, key=lambda n: errs[n] / tols[n])
    record(check, dtype, f"grad (worst vs its tol: {worst})", errs[worst], tols[worst])
    big = sorted(errs, key=errs.get, reverse=True)[:4]
    print("    largest differences (difference / tol; eager's error vs truth): " + ", ".join(
        f"{n} {errs[n]:.1e}/{tols[n]:.0e} ({rel(ref[1][n], truth[1][n]):.1e})" for n in big), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", nargs="*", default=None, metavar="WORD",
                    help="run only the stages whose name contains one of these words")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this script checks the GPU kernels against the references", file=sys.stderr)
        return 2
    import triton
    device = torch.device("cuda")
    env = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
           "mamba_ssm": (mamba_ssm_triton()[0].version if mamba_ssm_triton()[0] else mamba_ssm_triton()[1]),
           "causal_conv1d": "present" if causal_conv1d_cuda()[0] else causal_conv1d_cuda()[1],
           "fla": fla_triton_conv()[1], "fla_gdn": fla_gated_delta_rule()[0].version if fla_gated_delta_rule()[0]
           else fla_gated_delta_rule()[1]}
    print(json.dumps(env))
    x = torch.randn(2, 1000, 512, device=device)  # seqlen not a multiple of the chunk
    report: list[str] = []
    skipped: list[str] = []

    def run(name, fn, *a):
        """One stage; an exception is a failed row (and its message), never the end of the other stages."""
        if args.only is not None and not any(w in name for w in args.only):
            print(f"stage {name!r}: not run (--only {' '.join(args.only)})")
            skipped.append(name)
            return None
        stage(name)
        try:
            return fn(*a)
        except Exception as exc:
            print(f"stage {name!r} failed: {type(exc).__name__}: {exc}", flush=True)
            record(f"{name}: raised {type(exc).__name__}", torch.float32, str(exc).splitlines()[0][:60], float("inf"))
    run("attention", check_attention, device)
    run("causal conv", check_conv, device)
    why = run("mamba2 layer", check_mamba, device, x)
    if why:
        print(f"mamba-ssm unavailable ({why}): stock-Mamba2 comparison skipped")
    report += run("hybrid LM", check_lm, device) or []
    run("compiled train step", check_compiled_step, device)
    run("swa compiled train step", check_swa_compiled_step, device)
    run("training loss", check_loss, device)
    run("add + RMSNorm", check_add_norm, device)
    run("gdn dg sums", check_gdn_dg, device)
    run("gdn layer", check_gdn, device, x)
    report += run("gdn hybrid LM compiled train step", check_gdn_lm_compiled_step, device) or []
    print("\n".join(report))
    w = max((len(r["check"]) for r in rows), default=5)
    print(f"\n{'check':{w}}  dtype     {'what':38} rel_err    tol     ok")
    for r in rows:
        print(f"{r['check']:{w}}  {r['dtype']:8}  {r['what']:38} {r['rel_err']:.2e}  {r['tol']:.0e}  {'yes' if r['ok'] else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows, "notes": notes, "kernel_report": report,
                                               "not_run": skipped}, indent=2))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
