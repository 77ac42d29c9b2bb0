"""Where fla's float32 GDN backward loses its per-head dg sums (#27 §1; README's guard section, 2026-12-08 rerun).

    python -m scripts.gdn_fp32_probe --json probe.json                                   # (a), (b), floors
    TRITON_F32_DEFAULT=ieee TRITON_CACHE_DIR=$(mktemp -d) python -m scripts.gdn_fp32_probe --json ieee.json  # (c)

On the H100 the float32 GDN layer's A_log / dt_bias gradients were 13x the floor of a twin on TF32-rounded operands
while every other gradient stayed within 3x. Two arithmetic causes are suspected from fla 0.6.0's code (nothing
miscompiled): (1) `chunk_bwd_kernel_dqkwg` forms dg as sum(dq * q) - sum(dk * k) with the full-float32 q, k,
while dq, dk came out of dots that read q, k as TF32, so the row and column sums no longer cancel (before fla PR
#823 one matrix gave both); (2) Hopper's wgmma truncates float32 operands to TF32 (PTX ISA), a bias toward zero
that does not average out over tokens. Each row is fla's op (float32 inputs, guard lifted) against the float64
token-by-token recurrence on the same inputs: the relative L2 error of dg, of its per-head sums, and of
A_log's gradient (sum over batch and time of dg * g, per head), B 2, T 1000, 4 heads, K 96, V 192, decays as a GDN
layer has them at initialisation, three seeds:
  (a) fla as it runs;
  (b) fla on q, k already truncated to TF32 (the reference gets the same values): removes cause (1);
  (c) this script under TRITON_F32_DEFAULT=ieee in a fresh Triton cache: fla's dots in IEEE float32 — if the
      error does not collapse there, suspect a miscompile rather than rounding;
and the floors: the twin on TF32 operands rounded to nearest and truncated (`gdn_chunked_torch(mm_dtype=...)`).
Measured, not judged: it prints and writes numbers, and exits 0.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch


def inputs(seed: int, device, b=2, l=1000, h=4, dk=96, dv=192):
    from tokengap.models.ops.gdn.reference import l2_normalize

    gen = torch.Generator(device=device).manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, device=device, generator=gen)
    q, k = l2_normalize(r(b, l, h, dk)), l2_normalize(r(b, l, h, dk))
    A = 1 + 15 * torch.rand(h, device=device, generator=gen)
    dt = torch.exp(torch.rand(h, device=device, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    g = -A * torch.nn.functional.softplus(r(b, l, h) + torch.log(torch.expm1(dt)))
    beta = 2 * torch.sigmoid(r(b, l, h))
    return [q, k, r(b, l, h, dv), g, beta], r(b, l, h, dv)


def grads(fn, xs, do, dtype):
    """[dq, dk, dv, dg, dbeta] (float64) of sum(fn(*xs) * do), leaves in `dtype` (g stays float32 unless float64)."""
    leaves = [t.detach().to(dtype if (i != 3 or dtype == torch.float64) else torch.float32).requires_grad_(True)
              for i, t in enumerate(xs)]
    fn(*leaves).double().mul(do.double()).sum().backward()
    return [t.grad.double() for t in leaves]


def errors(got, ref, g) -> dict:
    def rel(a, b):
        return float((a - b).norm() / b.norm().clamp_min(1e-300))
    g = g.double()
    return {"dg": rel(got[3], ref[3]), "dg head-sum": rel(got[3].sum((0, 1)), ref[3].sum((0, 1))),
            "A_log grad": rel((got[3] * g).sum((0, 1)), (ref[3] * g).sum((0, 1))),
            "dq": rel(got[0], ref[0]), "dk": rel(got[1], ref[1])}


def probe(device, seeds=(0, 1, 2), fla_fn=None) -> dict:
    """{row: {measure: [per-seed error]}}; fla_fn: fla's op (default: tokengap's custom op, guard lifted)."""
    from tokengap.models.ops.external import fla_gated_delta_rule
    from tokengap.models.ops.gdn import fla
    from tokengap.models.ops.gdn.naive import gdn_recurrent_naive
    from tokengap.models.ops.gdn.reference import gdn_chunked_torch, round_tf32

    ns = fla_gated_delta_rule()[0]
    m = ns.guard_module if ns is not None else None
    fla_fn = fla_fn or (lambda *a: fla.chunk_gdn_fla(*a))
    rows: dict = {}
    for seed in seeds:
        xs, do = inputs(seed, device)
        trunc = [round_tf32(t, truncate=True).detach() if i < 2 else t for i, t in enumerate(xs)]
        todo = {"(a) fla": (fla_fn, xs), "(b) fla on TF32-truncated q, k": (fla_fn, trunc),
                "floor: twin, TF32 rounded to nearest": (lambda *a: gdn_chunked_torch(*a, mm_dtype="tf32"), xs),
                "floor: twin, TF32 truncated": (lambda *a: gdn_chunked_torch(*a, mm_dtype="tf32-trunc"), xs)}
        refs = {}
        for name, (fn, x) in todo.items():
            key = id(x)
            if key not in refs:  # the recurrence in float64 on exactly the inputs this row gets
                refs[key] = grads(lambda *a: gdn_recurrent_naive(*a), x, do, torch.float64)
            if m is not None:
                before, m.TRITON_ABOVE_3_7_1 = m.TRITON_ABOVE_3_7_1, True
            try:
                if fn is fla_fn:
                    grads(fn, x, do, torch.float32)  # once first: a first call autotunes (gpu_check first_call_note)
                got = grads(fn, x, do, torch.float32)
            finally:
                if m is not None:
                    m.TRITON_ABOVE_3_7_1 = before
            for k, e in errors(got, refs[key], x[3]).items():
                rows.setdefault(name, {}).setdefault(k, []).append(e)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this probe measures fla's kernels on the GPU", file=sys.stderr)
        return 2
    env = {"gpu": torch.cuda.get_device_name(0), "TRITON_F32_DEFAULT": os.environ.get("TRITON_F32_DEFAULT"),
           "torch": torch.__version__}
    print(json.dumps(env))
    rows = probe(torch.device("cuda"))
    for name, ms in rows.items():
        print(f"{name:40s} " + "  ".join(f"{k} {' '.join(f'{e:.1e}' for e in v)}" for k, v in ms.items()), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
