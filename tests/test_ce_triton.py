"""The Triton linear cross-entropy (tokengap/models/ops/ce/kernel.py) against its twin, lm_head + F.cross_entropy: the
loss and both gradients, with ignored targets, a vocabulary that is not a multiple of the block, and an upstream
gradient other than 1. On CPU the kernel runs in Triton's interpreter (TRITON_INTERPRET=1, set before triton is
imported, hence a subprocess); on CUDA the compiled kernel runs too."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

CASES = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from tokengap.models.ops.ce.kernel import linear_cross_entropy_triton

    def check(device, dtype, n, d, v, n_ignored, upstream, block, tol):
        g = torch.Generator().manual_seed(n * 100 + v)
        h = torch.randn(2, n, d, generator=g, dtype=torch.float64).to(device, torch.float32)
        w = (torch.randn(v, d, generator=g, dtype=torch.float64) / d ** 0.5).to(device, torch.float32)
        t = torch.randint(0, v, (2, n), generator=g)
        t.view(-1)[torch.randperm(2 * n, generator=g)[:n_ignored]] = -100
        t = t.to(device)
        hi, wi = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
        loss = linear_cross_entropy_triton(hi, wi, t, dtype, block)
        (loss * upstream).backward()
        # the twin: the GEMM in `dtype` (as autocast runs lm_head), the loss in float64
        hr, wr = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
        logits = (hr.to(dtype) @ wr.to(dtype).T).double()
        ref = F.cross_entropy(logits.flatten(0, 1), t.flatten(), ignore_index=-100)
        (ref * upstream).backward()
        assert loss.dtype == torch.float32 and loss.shape == (), (loss.dtype, loss.shape)
        assert hi.grad.dtype == h.dtype and wi.grad.dtype == w.dtype
        for name, a, r in (("loss", loss, ref), ("dh", hi.grad, hr.grad), ("dw", wi.grad, wr.grad)):
            err = ((a.double() - r.double()).abs().max() / (r.double().abs().max() + 1e-12)).item()
            assert err < tol, f"{name}: relative error {err:.2e} >= {tol} (n={n} v={v} ignored={n_ignored} up={upstream})"

    def run(device, block):
        for args in [(7, 16, 50, 0, 1.0), (9, 8, 37, 5, 3.0), (4, 12, 16, 1, -0.5), (3, 4, 300, 2, 1.0)]:
            check(device, torch.float32, *args, block, 1e-5)
""")


def _run_interpreted(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", CASES + code], env=env, capture_output=True, text=True, timeout=300)


def test_triton_ce_matches_torch_twin_in_interpreter():
    pytest.importorskip("triton")
    r = _run_interpreted(textwrap.dedent("""
        run('cpu', 16)  # several blocks per row and a partial last one
        run('cpu', 512)  # one tile per row, partly masked
        # every target ignored: nan, as F.cross_entropy's mean over nothing
        h, w = torch.randn(3, 8), torch.randn(20, 8)
        for block in (16, 32):  # two passes; one tile
            assert torch.isnan(linear_cross_entropy_triton(h, w, torch.full((3,), -100), torch.float32, block))
        # a target outside [0, vocab) that is not -100 is refused, as F.cross_entropy does
        for bad in (20, -1):
            try:
                linear_cross_entropy_triton(h, w, torch.tensor([0, bad, 3]), torch.float32, 16)
            except RuntimeError as e:
                assert "outside [0, vocab)" in str(e), e
            else:
                raise AssertionError(f"target {bad} accepted")
        print('ok')
    """))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-2000:] + r.stderr[-4000:]


def test_interpreter_test_catches_a_wrong_target():
    """The check above can fail: with targets shifted by one class, it must report a mismatch."""
    pytest.importorskip("triton")
    r = _run_interpreted(textwrap.dedent("""
        orig = linear_cross_entropy_triton
        def linear_cross_entropy_triton(h, w, t, dtype, block):
            return orig(h, w, torch.where(t >= 0, (t + 1) % w.shape[0], t), dtype, block)
        for block in (16, 512):
            try:
                run('cpu', block)
            except AssertionError as e:
                print('caught', e)
    """))
    assert r.returncode == 0 and r.stdout.count("caught loss: relative error") == 2, r.stdout[-2000:] + r.stderr[-4000:]


def test_ce_custom_op_passes_opcheck_and_compiles_without_graph_break():
    pytest.importorskip("triton")
    r = _run_interpreted(textwrap.dedent("""
        h, w = torch.randn(10, 8), torch.randn(37, 8)
        t = torch.randint(0, 37, (10,)); t[3] = -100
        torch.library.opcheck(torch.ops.tokengap.linear_cross_entropy_fwd.default, (h, w, t, torch.float32, 16))
        f = torch.compile(lambda h, w, t: linear_cross_entropy_triton(h, w, t, torch.float32, 16) * 2.0,
                          backend="aot_eager", fullgraph=True)
        outs = []
        for fn in (f, lambda h, w, t: F.cross_entropy(h @ w.T, t, ignore_index=-100) * 2.0):
            hi, wi = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
            loss = fn(hi, wi, t)
            loss.backward()
            outs.append([loss, hi.grad, wi.grad])
        for a, r in zip(*outs):
            torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-6)
        print('ok')
    """))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-2000:] + r.stderr[-4000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_ce_matches_torch_twin_on_cuda():
    ns: dict = {}
    exec(CASES, ns)
    ns["run"]("cuda", 16)
    ns["run"]("cuda", 512)  # one tile, partly masked
    from tokengap.models.ops.ce.kernel import MAX_BLOCK
    # a vocabulary like the zoo's, bf16 GEMMs (as under autocast), both paths: the row in registers (the
    # default up to MAX_ONE_TILE columns) and two passes of MAX_BLOCK. The rounding of the bf16 gradient of
    # the logits, written in place, is the difference
    for v, block in ((32768, None), (32768, MAX_BLOCK), (32000, None)):  # 32000: one tile with masked columns
        ns["check"]("cuda", torch.bfloat16, 300, 64, v, 30, 1.0, block, 2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lm_loss_on_cuda_matches_the_twin_under_autocast():
    """LM.forward on CUDA runs the Triton loss; with it switched off, the twin. Same loss and gradients."""
    from tokengap.models import LM
    from tokengap.models.__main__ import load
    from tokengap.models.kernels import KernelChoice
    cfg = load(["model=transformer", "size=tiny", "model.vocab_size=1000"])
    torch.manual_seed(0)
    model = LM(cfg).cuda()
    x = torch.randint(0, 1000, (4, 64), device="cuda")
    y = torch.randint(0, 1000, (4, 64), device="cuda")
    y[0, :10] = -100
    outs = []
    for fused in (False, True):
        model.set_kernels(KernelChoice(fused_loss=fused))
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x, y)
        loss.backward()
        outs.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    assert "tokengap-triton" in model.kernel_report()[-1]
    for a, r in zip(*outs):
        torch.testing.assert_close(a, r, rtol=2e-2, atol=1e-4)
