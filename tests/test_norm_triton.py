"""The fused residual add + RMSNorm (tokengap/models/ops/add_norm/kernel.py) against its twin add_rms_norm_torch, in float64: s, h
and the gradients of x, y and the weight. On CPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set
before triton is imported, hence a subprocess); on CUDA the compiled kernels run too."""
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
    import torch.nn as nn
    from tokengap.models.ops.add_norm.reference import add_rms_norm_torch
    from tokengap.models.ops.add_norm.kernel import add_rms_norm_triton

    def rel(a, r):
        return ((a.double() - r).abs().max() / (r.abs().max() + 1e-12)).item()

    def check(device, shape, x_dtype, y_dtype, out_dtype, use_s, tile, tol, tol_w=1e-5, fn=None, x_grad=True):
        '''y_dtype None: no y (the first norm). use_s: s feeds on (an upstream gradient for s), else only h.
        x_grad False: only y and the weight need gradients.'''
        fn = fn or add_rms_norm_triton
        d = shape[-1]
        g = torch.Generator().manual_seed(sum(shape) * 7 + d)
        rnd = lambda dt: torch.randn(*shape, generator=g, dtype=torch.float64).to(device, dt)
        x = rnd(x_dtype)
        y = rnd(y_dtype) * 0.5 if y_dtype is not None else None
        w = (1 + 0.3 * torch.randn(d, generator=g, dtype=torch.float64)).to(device, torch.float32)
        gh, gs = rnd(out_dtype or torch.float32), rnd(torch.float32)
        xi, wi = x.clone().requires_grad_(x_grad), w.clone().requires_grad_(True)
        yi = y.clone().requires_grad_(True) if y is not None else None
        s, h = fn(xi, yi, wi, 1e-5, out_dtype, tile=tile)
        s_dtype = torch.promote_types(x_dtype, y_dtype) if y_dtype is not None else x_dtype
        assert s.dtype == s_dtype and h.dtype == (out_dtype or s_dtype) and s.shape == h.shape == x.shape, (s.dtype, h.dtype)
        loss = (h.double() * gh.double()).sum() + ((s.double() * gs.double()).sum() if use_s else 0)
        loss.backward()
        xr, wr = x.double().requires_grad_(True), w.double().requires_grad_(True)
        yr = y.double().requires_grad_(True) if y is not None else None
        norm = nn.RMSNorm(d, eps=1e-5, dtype=torch.float64, device=device)
        norm.weight = nn.Parameter(wr)
        sr, hr = add_rms_norm_torch(xr, yr, norm)
        ((hr * gh.double()).sum() + ((sr * gs.double()).sum() if use_s else 0)).backward()
        assert wi.grad.dtype == torch.float32 and (xi.grad is not None) == x_grad
        pairs = [("s", s, sr), ("h", h, hr), ("dw", wi.grad, norm.weight.grad)]
        if x_grad:
            pairs.append(("dx", xi.grad, xr.grad))
        if y is not None:  # dy: dx in y's dtype (rounded to bf16 for a bf16 branch)
            assert yi.grad.dtype == y_dtype
            pairs.append(("dy", yi.grad, yr.grad))
        for name, a, r in pairs:
            err = rel(a, r)
            t = tol_w if name == "dw" else max(tol, 1e-2) if name == "dy" and y_dtype == torch.bfloat16 else tol
            assert err < t, f"{name}: relative error {err:.2e} >= {t} (shape={shape} x={x_dtype} y={y_dtype} out={out_dtype} use_s={use_s})"

    def run(device, tile):
        f32, bf16 = torch.float32, torch.bfloat16
        for shape in [(2, 9, 20), (37, 48), (3, 64)]:  # d not a power of two; rows not a multiple of the block
            for y_dtype, out_dtype, use_s in [(f32, None, True), (bf16, None, True), (None, None, True), (f32, None, False),
                                              (None, None, False)]:
                check(device, shape, f32, y_dtype, out_dtype, use_s, tile, 1e-5)
        # autocast's case: float32 stream, bf16 branch, h in bf16; dy is dx rounded to bf16 (written separately)
        check(device, (2, 9, 20), f32, bf16, bf16, True, tile, 1e-2, 1e-5)
        # a bf16 stream: s and the gradients rounded to bf16
        check(device, (3, 11, 24), bf16, bf16, None, True, tile, 2e-2, 2e-2)
        # only the branch needs a gradient (the stream is a constant)
        check(device, (2, 9, 20), f32, bf16, bf16, True, tile, 1e-2, 1e-5, x_grad=False)

    def check_bwd_dtypes(device):
        '''The backward op writes dy in the branch's dtype (autograd would cast a wrong one back silently).'''
        s, dh, ds = (torch.randn(5, 20, device=device) for _ in range(3))
        rstd, w = torch.rand(5, device=device) + 0.5, torch.rand(20, device=device) + 0.5
        for dy_dtype in (torch.bfloat16, None):
            dx, dy, dw = torch.ops.tokengap.add_rms_norm_bwd(s, rstd, w, dh.bfloat16(), ds, torch.float32, dy_dtype, 64, 4)
            assert dx.dtype == torch.float32 and dx.shape == s.shape and dw.shape == w.shape, (dx.dtype, dx.shape)
            assert (dy.dtype, dy.shape) == ((torch.bfloat16, s.shape) if dy_dtype else (torch.float32, (0,))), (dy.dtype, dy.shape)
            if dy_dtype:  # within one bf16 ulp: the interpreter truncates to bf16, torch (and the GPU) round
                torch.testing.assert_close(dy.float(), dx.bfloat16().float(), rtol=2 ** -7, atol=0)
""")


def _run_interpreted(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", CASES + code], env=env, capture_output=True, text=True, timeout=300)


def test_triton_add_norm_matches_torch_twin_in_interpreter():
    pytest.importorskip("triton")
    # tile 64: 2 rows a block at d=20/24 (one at 48, 64), more blocks than the 4 programs of a CPU run, so each
    # program sums dweight over several blocks; tile 4096: one block
    r = _run_interpreted("run('cpu', 64)\nrun('cpu', 4096)\ncheck_bwd_dtypes('cpu')\nprint('ok')")
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-2000:] + r.stderr[-4000:]


def test_interpreter_test_catches_a_dropped_upstream_gradient():
    """The check above can fail: if the gradient that arrived for s is not added into dx, it must say so."""
    pytest.importorskip("triton")
    r = _run_interpreted(textwrap.dedent("""
        def no_ds(x, y, w, eps, out, tile=None):  # s's gradient cut off: only h's reaches x and y
            s, h = add_rms_norm_triton(x, y, w, eps, out, tile=tile)
            return s.detach(), h
        try:
            check('cpu', (2, 9, 20), torch.float32, torch.bfloat16, None, True, 64, 1e-5, fn=no_ds)
        except AssertionError as e:
            print('caught', e)
    """))
    assert r.returncode == 0 and "caught dx: relative error" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]


def test_add_norm_custom_ops_pass_opcheck_and_a_model_matches_its_twin():
    """opcheck (schema, fake tensors, autograd registration); a fullgraph compile matches eager; and a tiny
    hybrid LM with the fused norm gives the twin's loss and gradients (the block wiring), in the interpreter."""
    pytest.importorskip("triton")
    r = _run_interpreted(textwrap.dedent("""
        import tokengap.models.lm as lm
        from tokengap.models.config import MambaConfig, ModelConfig
        x, y, w = torch.randn(2, 5, 20), torch.randn(2, 5, 20).bfloat16(), torch.rand(20) + 0.5
        for args in [(x, y, w, 1e-5, torch.bfloat16, 64, 4), (x, None, w, 1e-5, torch.float32, 64, 4)]:
            torch.library.opcheck(torch.ops.tokengap.add_rms_norm_fwd.default, args)
        s, rstd = x + y, torch.rand(10) + 0.5
        torch.library.opcheck(torch.ops.tokengap.add_rms_norm_bwd.default,
                              (s, rstd, w, y, x, torch.float32, torch.bfloat16, 64, 4))
        # compiled = eager: a bf16 branch (dy written separately), and s used or not (ds None in the backward)
        for use_s in (True, False):
            def fused(x, y, w):
                s, h = add_rms_norm_triton(x, y, w, 1e-5, torch.bfloat16, tile=64)
                return (h.float() * 3).sum() + ((s * 2).sum() if use_s else 0)
            f = torch.compile(fused, backend="aot_eager", fullgraph=True)
            outs = []
            for fn in (f, fused):
                xi, yi, wi = (t.clone().requires_grad_(True) for t in (x, y, w))
                fn(xi, yi, wi).backward()
                outs.append([xi.grad, yi.grad, wi.grad])
            assert outs[0][1].dtype == torch.bfloat16
            for a, r in zip(*outs):
                torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
        # the point of the kernel: the branch's bf16 gradient comes out of it, autograd casts nothing afterwards
        from torch.utils._python_dispatch import TorchDispatchMode
        class Ops(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.names = []
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                self.names.append(str(func))
                return func(*args, **(kwargs or {}))
        xi, yi, wi = (t.clone().requires_grad_(True) for t in (x, y, w))
        s, h = add_rms_norm_triton(xi, yi, wi, 1e-5, torch.bfloat16, tile=64)
        loss = h.float().sum() + s.sum()
        with Ops() as ops:
            loss.backward()
        after = ops.names[ops.names.index('tokengap.add_rms_norm_bwd.default'):]
        assert 'aten._to_copy.default' not in after, after
        s_g, h_g = add_rms_norm_triton(x, y, w.clone().requires_grad_(True), 1e-5, None, tile=64)
        with torch.inference_mode():  # scoring: no autograd, the same values
            s_i, h_i = add_rms_norm_triton(x, y, w, 1e-5, None, tile=64)
        assert h_g.requires_grad and not h_i.requires_grad
        torch.testing.assert_close((s_i, h_i), (s_g.detach(), h_g.detach()), rtol=0, atol=0)

        cfg = ModelConfig(n_layers=4, d_model=32, n_heads=2, pattern=['mamba2', 'attention'], vocab_size=50,
                          mamba=MambaConfig(d_state=8, headdim=8, chunk_size=4))
        torch.manual_seed(0)
        model = lm.LM(cfg)  # float32: the kernels compute in float32
        ids = torch.randint(0, 50, (2, 12))
        grads = []
        for fused_on in (False, True):
            lm.norm_kernel = (lambda c, d, n: (add_rms_norm_triton, 'fused')) if fused_on else (lambda c, d, n: (None, 'twin'))
            model.zero_grad()
            loss = model(ids[:, :-1], ids[:, 1:])
            loss.backward()
            grads.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
        for (name, _), a, r in zip([('loss', 0)] + list(model.named_parameters()), grads[1], grads[0]):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-6, msg=lambda m: f'{name}: {m}')
        print('ok')
    """))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-2000:] + r.stderr[-4000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_add_norm_matches_torch_twin_on_cuda():
    ns: dict = {}
    exec(CASES, ns)
    from tokengap.models.ops.add_norm.kernel import TILE
    ns["run"]("cuda", 64)
    ns["run"]("cuda", TILE)  # the production tiles
    # the transformer `base` row (768 columns, one masked quarter), autocast's dtypes, many persistent blocks
    ns["check"]("cuda", (4, 2048, 768), torch.float32, torch.bfloat16, torch.bfloat16, True, TILE, 1e-2, 1e-4)
