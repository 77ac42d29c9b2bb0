"""fla's chunked gated delta rule (Triton, fla 0.6) as torch.library custom ops, behind a check of our own.

`chunk_gdn_fla(q, k, v, g, beta, scale, chunk_size)` has the signature of the twin `reference.gdn_chunked_torch`
(q, k L2-normalised by the caller; g the log decay; beta the write strength) and runs fla's
`chunk_gated_delta_rule_fwd` / `_bwd` as the custom ops tokengap::gdn_fwd / tokengap::gdn_bwd: fla's public
`chunk_gated_delta_rule` is `@torch.compiler.disable`, which would break a compiled step in every GDN layer and
keep it out of the CUDA graph; custom ops stay in the graph as opaque calls.

The Hopper guard. fla refuses this backward on Hopper with 3.4 <= triton < 3.7.1 (fla issue #640: a transposed
store miscompiled in `chunk_bwd_dqkwg`, wrong dk / dbeta / dg at some shapes), by reading the module flag
`fla.ops.common.chunk_o.TRITON_ABOVE_3_7_1` at call time. The GPU machine has triton 3.6. We lift the guard only
for our own backward call (the flag is set and restored around it) and only for a (key head dim, value head
dim, dtype, chunk, device) whose backward passed `check_backward`: one small forward + backward on that GPU
against the twin, the relative L2 error of the output and of every gradient within CHECK_TOL. The Trainer runs the
check before the first step (`LM.check_kernels`) and logs what it measured; a failed check is a one-line error, and
an unchecked backward under the guard raises instead of running.
"""
from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from typing import Optional

import torch
from torch import Tensor

from tokengap.models.ops.external import fla_gated_delta_rule
from tokengap.models.ops.gdn.reference import gdn_chunked_torch, l2_normalize

log = logging.getLogger("tokengap.models")
_T = Tensor

# Relative L2 error allowed in check_backward, against the twin in float32 (fla's kernels use TF32). Measured on
# the H200 with the guard lifted, at K 64-128, V 64-256: at most 1.9e-3 (fp32), 4.2e-3 (bf16); the miscompile of
# #640 gives errors of order 1.
CHECK_TOL = {torch.float32: 5e-3, torch.bfloat16: 2e-2, torch.float16: 2e-2}
# In 16 bits the check also holds the per-head sums of dg and dbeta over batch and time (what dt_bias and A_log
# receive: a small bias per token that the whole tensor's error hides adds up there) to this multiple of a floor
# measured in the same check on the same GPU: the twin with every product's operands rounded to the dtype
# (`gdn_chunked_torch(mm_dtype=...)`, a bf16 kernel's precision without its code). Fixed before the first GPU
# measurement (2026-12-07): summation order and rounding points move an error by a small factor, not a multiple.
FLOOR_MULT = 3.0


class GDNKernelCheckError(RuntimeError):
    """fla's GDN backward disagrees with the twin on this GPU (one-line message)."""


def guard_applies(device: torch.device) -> bool:
    """Whether fla refuses the backward here (a Hopper GPU with 3.4 <= triton < 3.7.1): fla's own condition."""
    ns, _ = fla_gated_delta_rule()
    if ns is None or device.type != "cuda":
        return False
    m = ns.guard_module
    return bool(getattr(m, "IS_NVIDIA_HOPPER", False) and getattr(m, "TRITON_ABOVE_3_4_0", False)
                and not m.TRITON_ABOVE_3_7_1)


_passed: dict[tuple, dict] = {}  # check key -> the errors measured


def _key(dk: int, dv: int, dtype: torch.dtype, chunk_size: int, device: torch.device) -> tuple:
    device = torch.device(device)
    return dk, dv, str(dtype).removeprefix("torch."), chunk_size, \
        torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


@contextlib.contextmanager
def _guard_lifted(ns, key: tuple):
    m = ns.guard_module
    before = m.TRITON_ABOVE_3_7_1
    if not before:
        if key not in _passed:
            raise GDNKernelCheckError(
                f"fla GDN backward (K={key[0]}, V={key[1]}, {key[2]}, chunk {key[3]}) on {key[4]}: fla refuses it "
                "with this triton (fla #640) and check_backward has not passed for these shapes "
                "(LM.check_kernels runs it; the Trainer calls it before the first step)")
        m.TRITON_ABOVE_3_7_1 = True
    try:
        yield
    finally:
        m.TRITON_ABOVE_3_7_1 = before


@torch.library.custom_op("tokengap::gdn_fwd", mutates_args=())
def _gdn_fwd(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: float,
             chunk_size: int) -> tuple[_T, _T, _T]:
    """(o, A, g_cumsum): the output and what the backward needs (the solved WY matrix, the chunk-local cumsum
    of g); shapes (b, l, h, V) in q.dtype, (b, l, h, chunk) in k.dtype, (b, l, h) float32."""
    g_cum, o, A, *_ = fla_gated_delta_rule()[0].fwd(q, k, v, g, beta, scale, None, False, chunk_size=chunk_size)
    return o.to(q.dtype).contiguous(), A.contiguous(), g_cum.contiguous()  # what the fake promises


@_gdn_fwd.register_fake
def _(q, k, v, g, beta, scale, chunk_size):
    b, l, h, _ = k.shape
    return (v.new_empty(v.shape, dtype=q.dtype), k.new_empty(b, l, h, chunk_size),
            g.new_empty(g.shape, dtype=torch.float32))


@torch.library.custom_op("tokengap::gdn_bwd", mutates_args=())
def _gdn_bwd(do: Tensor, q: Tensor, k: Tensor, v: Tensor, g_cum: Tensor, beta: Tensor, A: Tensor, scale: float,
             chunk_size: int, g_dtype: torch.dtype) -> tuple[_T, _T, _T, _T, _T]:
    """(dq, dk, dv, dg, dbeta), contiguous, each in its input's dtype (g's: g_dtype)."""
    ns = fla_gated_delta_rule()[0]
    with _guard_lifted(ns, _key(q.shape[-1], v.shape[-1], q.dtype, chunk_size, q.device)):
        dq, dk, dv, db, dg, *_ = ns.bwd(q, k, v, g_cum, beta, A, scale, None, do.contiguous(), None,
                                        chunk_size=chunk_size)
    return (dq.to(q.dtype).contiguous(), dk.to(k.dtype).contiguous(), dv.to(v.dtype).contiguous(),
            dg.to(g_dtype).contiguous(), db.to(beta.dtype).contiguous())


@_gdn_bwd.register_fake
def _(do, q, k, v, g_cum, beta, A, scale, chunk_size, g_dtype):
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), g_cum.new_empty(g_cum.shape, dtype=g_dtype),
            beta.new_empty(beta.shape))


def _setup(ctx, inputs, output):
    q, k, v, g, beta, ctx.scale, ctx.chunk_size = inputs
    o, A, g_cum = output
    ctx.g_dtype = g.dtype
    ctx.save_for_backward(q, k, v, g_cum, beta, A)


def _backward(ctx, do, _dA, _dg_cum):
    q, k, v, g_cum, beta, A = ctx.saved_tensors
    dq, dk, dv, dg, db = _gdn_bwd(do, q, k, v, g_cum, beta, A, ctx.scale, ctx.chunk_size, ctx.g_dtype)
    return dq, dk, dv, dg, db, None, None


_gdn_fwd.register_autograd(_backward, setup_context=_setup)


def chunk_gdn_fla(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: Optional[float] = None,
                  chunk_size: int = 64) -> Tensor:
    """fla's chunked gated delta rule; same arguments and result as reference.gdn_chunked_torch (no state in or
    out). q, k, v in one dtype (bf16 under autocast: custom ops are not autocast); g float32; chunk 16, 32 or 64."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    dtype = v.dtype
    q, k, beta = (t.to(dtype).contiguous() for t in (q, k, beta))
    return _gdn_fwd(q, k, v.contiguous(), g.float().contiguous(), beta, float(scale), chunk_size)[0]


def check_backward(dk: int, dv: int, dtype: torch.dtype, device: torch.device, chunk_size: int = 64,
                   seed: int = 0, isolate: Optional[bool] = None) -> dict:
    """Forward + backward of fla's op (guard lifted) against the twin in float32 on `device`, at the layer's head
    dims: batch 2, 8 heads, 300 tokens (not a multiple of the chunk), decays and write strengths as in training
    (beta up to 2: negative eigenvalues). Records the pass for these shapes and returns {what: relative L2 error};
    raises GDNKernelCheckError (one line) if any error exceeds CHECK_TOL[dtype], if in 16 bits a per-head sum of dg
    or dbeta is off by more than FLOOR_MULT x the bf16 floor's, or if the kernel crashes.

    isolate (default: on CUDA): run the check in a child process. A miscompiled kernel can do worse than give wrong
    numbers: on the H200 with triton 3.6, fla's float32 path at K 48, V 96 stopped with "an illegal instruction"
    (results/gpu/gdn_check_h200.log), which leaves the CUDA context unusable. In a child the crash is a one-line
    refusal here; the Triton caches on disk carry the compiled and autotuned kernels over to this process."""
    device = torch.device(device)
    key = _key(dk, dv, dtype, chunk_size, device)
    if key in _passed:
        return _passed[key]
    ns, why = fla_gated_delta_rule()
    if ns is None:
        raise GDNKernelCheckError(f"fla GDN check: {why}")
    isolate = device.type == "cuda" if isolate is None else isolate
    args = {"dk": dk, "dv": dv, "dtype": str(dtype).removeprefix("torch."), "device": str(device),
            "chunk_size": chunk_size, "seed": seed}
    errs, summary = run_isolated(args) if isolate else _check_here(**args)
    log.info("%s: ok", summary)
    _passed[key] = errs
    return errs


def _check_here(dk, dv, dtype, device, chunk_size, seed) -> tuple[dict, str]:
    """The check itself, in this process: ({what: error}, one-line summary), or GDNKernelCheckError."""
    dtype, device = getattr(torch, dtype) if isinstance(dtype, str) else dtype, torch.device(device)
    ns = fla_gated_delta_rule()[0]
    key = _key(dk, dv, dtype, chunk_size, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    b, l, h = 2, 300, 8

    def r(*shape):
        return torch.randn(*shape, device=device, generator=gen)
    q, k = l2_normalize(r(b, l, h, dk)), l2_normalize(r(b, l, h, dk))
    v = r(b, l, h, dv)
    g = -torch.nn.functional.softplus(r(b, l, h) - 3.0)  # log decay in (-inf, 0), mostly near 0
    beta = 2 * torch.sigmoid(r(b, l, h))
    do = r(b, l, h, dv)

    def run(fn, inputs_dtype):  # fresh leaves each time (.to() of the same dtype would return the same tensor)
        leaves = [t.detach().clone().to(inputs_dtype if i < 3 else torch.float32).requires_grad_(True)
                  for i, t in enumerate((q, k, v, g, beta))]
        o = fn(*leaves)
        o.float().mul(do).sum().backward()
        return [o.detach().float()] + [t.grad.float() for t in leaves]

    ref = run(lambda *a: gdn_chunked_torch(*a, chunk_size=chunk_size), torch.float32)
    m = ns.guard_module
    before = m.TRITON_ABOVE_3_7_1
    m.TRITON_ABOVE_3_7_1 = True  # only here, for the check itself
    try:
        # once before the measured call: the first call at a new autotune key autotunes, and on the H100 a process's
        # first calls gave dg-derived gradients off by 5e-2 where repeats gave 6e-3 (scripts/gpu_check.py,
        # first_call_note); training applies no first-call gradient either (the CUDA graph's warm-up is dropped)
        run(lambda *a: chunk_gdn_fla(*a, chunk_size=chunk_size), dtype)
        got = run(lambda *a: chunk_gdn_fla(*a, chunk_size=chunk_size), dtype)
    finally:
        m.TRITON_ABOVE_3_7_1 = before
    def rel(a, e):
        return float((a.double() - e.double()).norm() / e.double().norm().clamp_min(1e-30))

    def head_sums(gr):  # dg, dbeta summed over batch and time: (h,) each
        return {n: (gr[i].sum((0, 1)), ref[i].sum((0, 1))) for n, i in (("dg head-sum", 4), ("dbeta head-sum", 5))}
    errs = {name: rel(a, e) for name, a, e in zip(("output", "dq", "dk", "dv", "dg", "dbeta"), got, ref)}
    tol = CHECK_TOL[dtype]
    worst = max(errs, key=errs.get)
    floor = {}
    if dtype != torch.float32:
        low = run(lambda *a: gdn_chunked_torch(*a, chunk_size=chunk_size, mm_dtype=dtype), dtype)
        errs.update({n: rel(a, e) for n, (a, e) in head_sums(got).items()})
        floor = {n: rel(a, e) for n, (a, e) in head_sums(low).items()}
    summary = (f"fla {ns.version} chunk_gated_delta_rule check on {key[4]} (K={dk}, V={dv}, {key[2]}, chunk "
               f"{chunk_size}, guard {'lifted for the check' if not before else 'not in force'}): relative L2 error "
               + ", ".join(f"{n} {e:.1e}" for n, e in errs.items()) + f" (tol {tol:.0e}"
               + "".join(f"; {n} floor {e:.1e}" for n, e in floor.items()) + (f", x{FLOOR_MULT:g}" if floor else "")
               + ")")
    if not errs[worst] <= tol:  # also catches NaN
        raise GDNKernelCheckError(f"{summary}: {worst} is off; refusing to train on fla's GDN backward here")
    for n, f in floor.items():
        if not errs[n] <= FLOOR_MULT * f:
            raise GDNKernelCheckError(f"{summary}: {n} is off ({errs[n]:.1e} > {FLOOR_MULT:g} x the bf16 floor "
                                      f"{f:.1e}); refusing to train on fla's GDN backward here")
    return errs, summary


def run_isolated(args: dict, command: Optional[list] = None, timeout: float = 900) -> tuple[dict, str]:
    """_check_here(**args) in a child Python (`python -m tokengap.models.ops.gdn.fla ARGS_JSON`); its crash, timeout or
    refusal becomes a GDNKernelCheckError of one line. command: the child's argv (tests)."""
    cmd = command or [sys.executable, "-m", "tokengap.models.ops.gdn.fla", json.dumps(args)]
    what = f"fla GDN check (K={args['dk']}, V={args['dv']}, {args['dtype']}, chunk {args['chunk_size']})"
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GDNKernelCheckError(f"{what}: the check process did not finish in {timeout:.0f}s") from None
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("PASS ", "REFUSE "))]
    if r.returncode == 0 and lines and lines[-1].startswith("PASS "):
        out = json.loads(lines[-1][5:])
        return out["errors"], out["summary"]
    if lines and lines[-1].startswith("REFUSE "):
        raise GDNKernelCheckError(lines[-1][7:])
    last = next((ln.strip() for ln in reversed(r.stderr.splitlines()) if ln.strip()), "no output")
    raise GDNKernelCheckError(f"{what}: the kernel crashed the check process (exit {r.returncode}: {last[:200]}); "
                              "refusing to train on fla's GDN kernels here")


def checks_passed() -> dict[tuple, dict]:
    """The (K, V, dtype, chunk, GPU) keys whose backward passed check_backward in this process, with their errors."""
    return dict(_passed)


if __name__ == "__main__":  # the isolated check (run_isolated): one JSON argument, one PASS / REFUSE line out
    try:
        errs, summary = _check_here(**json.loads(sys.argv[1]))
        print("PASS " + json.dumps({"errors": errs, "summary": summary}), flush=True)
    except GDNKernelCheckError as exc:
        print(f"REFUSE {exc}", flush=True)
        sys.exit(3)
