"""The Triton causal conv (tokengap/models/ops/conv/kernel.py) against its twin causal_conv1d_torch: values and all
three gradients. On CPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set before triton is imported,
hence a subprocess); on CUDA the compiled kernels run too."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Small blocks so that several time tiles, a partial last tile and two channel tiles are all exercised.
CASES = textwrap.dedent("""
    import torch
    from tokengap.models.ops.conv.kernel import causal_conv1d_triton
    from tokengap.models.ops.conv.reference import causal_conv1d_torch

    def check(device, dtype, b, l, c, k, bias, act, strided, bl, bc, tol, tol_w=None):
        g = torch.Generator().manual_seed(b * 1000 + l * 10 + c)
        wide = torch.randn(b, l, c + 7 if strided else c, generator=g, dtype=torch.float64).to(device, dtype)
        x = wide[..., 3:3 + c] if strided else wide  # strided: a view with an offset, as in_proj's split gives
        assert x.is_contiguous() != strided
        w = torch.randn(c, k, generator=g, dtype=torch.float64).to(device, torch.float32)
        bvec = torch.randn(c, generator=g, dtype=torch.float64).to(device, torch.float32) if bias else None
        dy = torch.randn(b, l, c, generator=g, dtype=torch.float64).to(device, dtype)
        if strided:  # a non-contiguous upstream gradient too (time-major storage)
            dy = dy.transpose(0, 1).contiguous().transpose(0, 1)
        xi, wi = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
        bi = bvec.detach().clone().requires_grad_(True) if bias else None
        y = causal_conv1d_triton(xi, wi, bi, act, block_l=bl, block_c=bc)
        y.backward(dy)
        ours = [y, xi.grad, wi.grad] + ([bi.grad] if bias else [])
        xr, wr = x.double().requires_grad_(True), w.double().requires_grad_(True)  # the twin, in float64
        br = bvec.double().requires_grad_(True) if bias else None
        yr = causal_conv1d_torch(xr, wr, br, act)
        yr.backward(dy.double())
        ref = [yr, xr.grad, wr.grad] + ([br.grad] if bias else [])
        assert y.dtype == x.dtype and y.shape == x.shape and y.is_contiguous(), (y.dtype, y.shape)
        assert xi.grad.dtype == x.dtype and wi.grad.dtype == w.dtype
        for name, a, r in zip(["y", "dx", "dw", "db"], ours, ref):
            err = ((a.double() - r).abs().max() / (r.abs().max() + 1e-12)).item()
            t = tol_w if tol_w is not None and name in ("dw", "db") else tol
            assert err < t, f"{name}: relative error {err:.2e} >= {t} (b={b} l={l} c={c} k={k} bias={bias} act={act} strided={strided})"

    def run(device, bl, bc):
        for args in [(2, 37, 20, 4, True, True, True), (2, 37, 20, 4, False, True, False), (2, 37, 20, 1, True, True, True),
                     (1, 16, 16, 4, True, False, False), (3, 5, 33, 3, True, True, True),
                     (1, 70, 8, 2, False, False, True)]:
            check(device, torch.float32, *args, bl, bc, 1e-5)
""")


def _run_interpreted(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", CASES + code], env=env, capture_output=True, text=True, timeout=300)


def test_triton_conv_matches_torch_twin_in_interpreter():
    pytest.importorskip("triton")
    # bf16 in and out: y and dx carry bf16 rounding (g is stored in bf16 between the passes), dw and db are
    # summed from the float32 g, so they must stay near float32 accuracy
    r = _run_interpreted("run('cpu', 16, 16)\n"
                         "check('cpu', torch.bfloat16, 2, 100, 80, 4, True, True, True, 32, 32, 2e-2, 1e-5)\n"
                         "print('ok')")
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-2000:] + r.stderr[-4000:]


def test_interpreter_test_catches_a_wrong_tap():
    """The check above can fail: with the weight taps reversed, it must report a mismatch."""
    pytest.importorskip("triton")
    r = _run_interpreted(textwrap.dedent("""
        import tokengap.models.ops.conv.kernel as ct
        orig = ct.causal_conv1d_triton
        ct_flip = lambda x, w, b=None, act=True, **kw: orig(x, w.flip(-1), b, act, **kw)
        causal_conv1d_triton = ct_flip
        try:
            run('cpu', 16, 16)
        except AssertionError as e:
            print('caught', e)
    """))
    assert r.returncode == 0 and "caught y: relative error" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_conv_matches_torch_twin_on_cuda():
    ns: dict = {}
    exec(CASES, ns)
    ns["run"]("cuda", 16, 16)
    from tokengap.models.ops.conv.kernel import BLOCK_C, BLOCK_L
    ns["run"]("cuda", BLOCK_L, BLOCK_C)  # the production blocks
    # bf16 in and out, float32 inside but g (dy * silu') stored in bf16, as the twin's: rounding of y, g and dx only
    ns["check"]("cuda", torch.bfloat16, 4, 300, 1280, 4, True, True, True, BLOCK_L, BLOCK_C, 2e-2)


def test_conv_custom_ops_pass_opcheck_and_compile_without_graph_break():
    """The conv is registered as custom ops so torch.compile keeps it in the graph: opcheck (schema, fake
    tensors, autograd registration) and a fullgraph compile whose gradients match eager, in the interpreter."""
    pytest.importorskip("triton")
    r = _run_interpreted(textwrap.dedent("""
        x = torch.randn(2, 40, 30, dtype=torch.float64)[..., 3:23].float()
        w, b = torch.randn(20, 4), torch.randn(20)
        torch.library.opcheck(torch.ops.tokengap.causal_conv1d_fwd.default, (x, w, b, True, 16, 16, 2))
        torch.library.opcheck(torch.ops.tokengap.causal_conv1d_fwd.default, (x, w, None, True, 16, 16, 2))
        f = torch.compile(lambda x, w, b: causal_conv1d_triton(x, w, b, True, 16, 16) * 2.0, backend="aot_eager",
                          fullgraph=True)
        outs = []
        for fn in (f, lambda x, w, b: causal_conv1d_torch(x, w, b, True) * 2.0):
            xi, wi, bi = (t.clone().requires_grad_(True) for t in (x, w, b))
            fn(xi, wi, bi).sum().backward()
            outs.append([xi.grad, wi.grad, bi.grad])
        for a, r in zip(*outs):
            torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
        print('ok')
    """))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-2000:] + r.stderr[-4000:]
