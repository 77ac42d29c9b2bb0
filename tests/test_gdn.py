"""Gated DeltaNet: the chunked twin against the token-by-token recurrence (float64, values and every gradient),
the recurrence against transformers' own, our layer against transformers' OlmoHybridGatedDeltaNet with the same
weights, and the fla custom ops and their backward check wired to a twin-backed stand-in (CPU)."""
from __future__ import annotations

import concurrent.futures
import importlib.util
import types

import pytest
import torch
import torch.nn.functional as F

from tokengap.models import ModelConfig
from tokengap.models.mixers.gdn import GatedDeltaNet, from_hf_state_dict, to_hf_state_dict
from tokengap.models.ops.gdn.naive import gdn_recurrent_naive
from tokengap.models.ops.gdn.reference import gdn_chunked_torch, l2_normalize


def _inputs(b, l, h, dk, dv, neg_eigval=True, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    q, k = l2_normalize(r(b, l, h, dk)), l2_normalize(r(b, l, h, dk))
    g = -F.softplus(r(b, l, h))  # log decay, some near 0 and some strong
    beta = torch.sigmoid(r(b, l, h)) * (2.0 if neg_eigval else 1.0)
    return dict(q=q, k=k, v=r(b, l, h, dv), g=g, beta=beta)


@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
@pytest.mark.parametrize("seqlen", [1, 13, 64, 100])
@pytest.mark.parametrize("neg_eigval", [False, True])
def test_chunked_equals_naive_recurrence(chunk, seqlen, neg_eigval):
    a = _inputs(2, seqlen, 3, 5, 7, neg_eigval, seed=seqlen * 7 + chunk)
    s0 = torch.randn(2, 3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want, S_want = gdn_recurrent_naive(**a, initial_state=s0, return_final_state=True)
    got, S_got = gdn_chunked_torch(**a, chunk_size=chunk, initial_state=s0, return_final_state=True)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S_got, S_want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk,seqlen,neg_eigval", [(8, 21, True), (16, 16, False), (64, 37, True)])
def test_chunked_gradients_equal_naive(chunk, seqlen, neg_eigval):
    a = _inputs(1, seqlen, 2, 4, 6, neg_eigval, seed=3)
    dy = torch.randn(1, seqlen, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = []
    for fn in (gdn_recurrent_naive, lambda **kw: gdn_chunked_torch(**kw, chunk_size=chunk)):
        leaves = {n: t.clone().requires_grad_(True) for n, t in a.items()}
        (fn(**leaves) * dy).sum().backward()
        grads.append({n: t.grad for n, t in leaves.items()})
    for n in a:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-9, atol=1e-9, msg=f"grad of {n}")


def test_naive_recurrence_equals_transformers_own():
    """An independent reference: transformers' torch_recurrent_gated_delta_rule (it L2-normalises inside)."""
    pytest.importorskip("transformers")
    from transformers.models.olmo_hybrid.modeling_olmo_hybrid import torch_recurrent_gated_delta_rule
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 30, 3, 8, generator=gen), torch.randn(2, 30, 3, 8, generator=gen)
    v, g = torch.randn(2, 30, 3, 16, generator=gen), -torch.rand(2, 30, 3, generator=gen)
    beta = 2 * torch.rand(2, 30, 3, generator=gen)
    want, _ = torch_recurrent_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm_in_kernel=True)
    got = gdn_recurrent_naive(l2_normalize(q), l2_normalize(k), v, g, beta)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _gdn_cfg(**gdn) -> ModelConfig:
    cfg = ModelConfig(d_model=64, n_heads=4, n_layers=1, pattern=["gdn"], vocab_size=16)
    for k, v in gdn.items():
        setattr(cfg.gdn, k, v)
    return cfg


def test_layer_dims_follow_olmo_hybrid_ratios():
    layer = GatedDeltaNet(_gdn_cfg())
    assert (layer.n_heads, layer.n_v_heads, layer.head_dim, layer.v_head_dim) == (4, 4, 12, 24)  # 0.75 * 64 / 4
    assert layer.conv1d.bias is None and layer.conv1d.kernel_size == (4,)


@pytest.mark.skipif(importlib.util.find_spec("fla") is not None,
                    reason="transformers' layer would call fla's Triton kernels, which need CUDA")
@pytest.mark.parametrize("neg_eigval", [True, False])
def test_layer_equals_transformers_olmo_hybrid_layer_with_the_same_weights(neg_eigval):
    """Our GDN layer and transformers' OlmoHybridGatedDeltaNet (its torch path) map x to the same output and
    gradients once from_hf_state_dict has mapped the weights: the parameterisations agree."""
    pytest.importorskip("transformers")
    from transformers import OlmoHybridConfig
    from transformers.models.olmo_hybrid.modeling_olmo_hybrid import OlmoHybridGatedDeltaNet
    hc = OlmoHybridConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=16,
                          intermediate_size=128, linear_allow_neg_eigval=neg_eigval)
    torch.manual_seed(0)
    theirs = OlmoHybridGatedDeltaNet(hc, layer_idx=0).double()
    with torch.no_grad():
        for p in theirs.parameters():  # non-trivial values everywhere (the norm weight is ones at init)
            p.add_(0.05 * torch.randn_like(p))
    ours = GatedDeltaNet(_gdn_cfg(allow_neg_eigval=neg_eigval, chunk_size=16)).double()
    ours.load_state_dict(from_hf_state_dict(theirs.state_dict()))
    back = to_hf_state_dict(ours)  # and back: the two mappings are inverses
    assert back.keys() == theirs.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in theirs.state_dict().items())
    x = torch.randn(2, 37, 64, dtype=torch.float64)
    outs = []
    for layer in (theirs, ours):
        xi = x.clone().requires_grad_(True)
        y = layer(xi)
        y.square().sum().backward()
        outs.append((y.detach(), xi.grad))
    # transformers' chunked rule and gated norm compute in float32 whatever the input dtype: compare at that level
    # (a parameterisation difference, e.g. the gate before the norm or beta not doubled, is of order 1e-1)
    for what, ours_t, theirs_t in (("output", outs[1][0], outs[0][0]), ("dx", outs[1][1], outs[0][1])):
        rel = float((ours_t - theirs_t).norm() / theirs_t.norm())
        assert rel < 1e-5, (what, rel)


def test_grouped_value_heads_repeat_each_key_head():
    """n_v_heads = 2 n_heads: value heads 2i and 2i+1 read key head i (as transformers' repeat_interleave)."""
    layer = GatedDeltaNet(_gdn_cfg(n_v_heads=8)).double()
    assert (layer.n_heads, layer.n_v_heads) == (4, 8)
    x = torch.randn(1, 9, 64, dtype=torch.float64)
    seen = {}

    def spy(q, k, v, g, beta, chunk_size):
        seen["q"] = q
        return gdn_chunked_torch(q, k, v, g, beta, chunk_size=chunk_size)
    ops = types.SimpleNamespace(gdn=spy, conv=__import__("tokengap.models.ops.conv.reference", fromlist=["x"]).causal_conv1d_torch,
                                gated_norm=__import__("tokengap.models.ops.gated_norm.reference", fromlist=["x"]).gated_rms_norm_torch)
    layer(x, None, ops)
    q = seen["q"]
    assert q.shape[2] == 8 and torch.equal(q[:, :, 0], q[:, :, 1]) and not torch.equal(q[:, :, 1], q[:, :, 2])


# ---- the fla custom ops, wired to a twin-backed stand-in ------------------------------------------------------
def _stand_in(guard_flag: bool, bug: float = 0.0, dg_shift: float = 0.0):
    """fla's namespace (fwd, bwd, guard_module, version) computed by the twin, with fla's return layout; `bug`
    scales dk by (1 + bug) in the backward (a planted miscompile); `dg_shift` adds dg_shift x mean |dg| to every
    token's dg (a small bias that the whole tensor's error hides and a sum over tokens shows)."""
    def cum(g, C):
        b, l, h = g.shape
        pad = (-l) % C
        return F.pad(g, (0, 0, 0, pad)).reshape(b, -1, C, h).cumsum(2).reshape(b, -1, h)[:, :l]

    def fwd(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size=64):
        o = gdn_chunked_torch(q, k, v, g, beta, scale, chunk_size)
        A = torch.zeros(*k.shape[:3], chunk_size, dtype=k.dtype)
        return cum(g.float(), chunk_size), o, A, None, None, None

    def grads(q, k, v, g_cum, beta, scale, do, chunk_size):
        b, l, h = g_cum.shape
        pad = (-l) % chunk_size
        gc = F.pad(g_cum, (0, 0, 0, pad)).reshape(b, -1, chunk_size, h)
        g = torch.cat([gc[:, :, :1], gc.diff(dim=2)], dim=2).reshape(b, -1, h)[:, :l]
        leaves = [t.detach().requires_grad_(True) for t in (q, k, v, g, beta)]
        o = gdn_chunked_torch(*leaves, scale, chunk_size)
        dq, dk, dv, dg, db = torch.autograd.grad(o, leaves, do)
        return dq, dk * (1 + bug), dv, db, dg + dg_shift * dg.abs().mean()

    def bwd(q, k, v, g_cum, beta, A, scale, initial_state, do, dht, chunk_size=64):
        # a custom op's body runs below the autograd dispatch key (thread-local): differentiate in a fresh thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            dq, dk, dv, db, dg = pool.submit(grads, q, k, v, g_cum, beta, scale, do, chunk_size).result()
        return dq, dk, dv, db, dg, None, None, None

    guard = types.SimpleNamespace(TRITON_ABOVE_3_7_1=guard_flag, IS_NVIDIA_HOPPER=True, TRITON_ABOVE_3_4_0=True)
    return types.SimpleNamespace(fwd=fwd, bwd=bwd, guard_module=guard, version="0.fake")


@pytest.fixture
def fla_stand_in(monkeypatch):
    from tokengap.models.ops.gdn import fla
    monkeypatch.setattr(fla, "_passed", {})

    def install(guard_flag=False, bug=0.0, dg_shift=0.0):
        ns = _stand_in(guard_flag, bug, dg_shift)
        monkeypatch.setattr(fla, "fla_gated_delta_rule", lambda: (ns, ""))
        return ns
    return fla, install


def test_fla_custom_op_matches_twin_passes_opcheck_and_compiles_in_one_graph(fla_stand_in):
    fla, install = fla_stand_in
    install(guard_flag=True)  # no guard in force: the backward runs unchecked, as on a GPU fla does not guard
    a = _inputs(2, 40, 3, 8, 16, seed=5, dtype=torch.float32)
    dy = torch.randn(2, 40, 3, 16)

    def run(fn):
        leaves = [t.clone().requires_grad_(True) for t in a.values()]
        y = fn(*leaves)
        y.backward(dy)
        return [y] + [t.grad for t in leaves]

    twin = run(lambda *x: gdn_chunked_torch(*x, chunk_size=16))
    op = run(lambda *x: fla.chunk_gdn_fla(*x, chunk_size=16))
    compiled = run(torch.compile(lambda *x: fla.chunk_gdn_fla(*x, chunk_size=16) * 2.0, backend="aot_eager",
                                 fullgraph=True))
    for name, o, c, r in zip("o dq dk dv dg dbeta".split(), op, compiled, twin):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5, msg=f"op {name}")
        torch.testing.assert_close(c, 2.0 * r, rtol=1e-5, atol=1e-5, msg=f"compiled {name}")
    q, k, v, g, beta = a.values()
    torch.library.opcheck(torch.ops.tokengap.gdn_fwd.default, (q, k, v, g, beta, 8 ** -0.5, 16))


def test_guarded_backward_runs_only_after_the_check_and_restores_the_flag(fla_stand_in):
    fla, install = fla_stand_in
    ns = install(guard_flag=False)  # fla would refuse: Hopper and triton < 3.7.1
    a = _inputs(1, 20, 2, 8, 16, seed=6, dtype=torch.float32)
    leaves = [t.clone().requires_grad_(True) for t in a.values()]
    out = fla.chunk_gdn_fla(*leaves, chunk_size=16)
    with pytest.raises(fla.GDNKernelCheckError, match="check_backward has not passed"):
        out.sum().backward()
    errs = fla.check_backward(8, 16, torch.float32, torch.device("cpu"), chunk_size=16)
    assert set(errs) == {"output", "dq", "dk", "dv", "dg", "dbeta"} and max(errs.values()) < 1e-5
    leaves = [t.clone().requires_grad_(True) for t in a.values()]
    fla.chunk_gdn_fla(*leaves, chunk_size=16).sum().backward()
    assert all(t.grad is not None for t in leaves)
    assert ns.guard_module.TRITON_ABOVE_3_7_1 is False  # lifted only around our call
    # another head dim has not been checked
    b = _inputs(1, 20, 2, 4, 16, seed=6, dtype=torch.float32)
    leaves = [t.clone().requires_grad_(True) for t in b.values()]
    with pytest.raises(fla.GDNKernelCheckError):
        fla.chunk_gdn_fla(*leaves, chunk_size=16).sum().backward()


def test_check_refuses_a_wrong_backward_in_one_line(fla_stand_in):
    fla, install = fla_stand_in
    install(guard_flag=False, bug=0.05)  # dk 5% off: the kind of error fla #640 reported
    with pytest.raises(fla.GDNKernelCheckError) as err:
        fla.check_backward(8, 16, torch.float32, torch.device("cpu"), chunk_size=16)
    msg = str(err.value)
    assert "dk is off" in msg and "\n" not in msg and "K=8, V=16" in msg
    assert not fla.checks_passed()


@pytest.mark.parametrize("dg_shift", [0.0, 0.01])
def test_check_in_bf16_refuses_a_dg_bias_that_only_the_head_sums_show(fla_stand_in, dg_shift):
    """A 1% shift of every token's dg passes the whole-tensor tolerance (2e-2) but not the per-head sums, which
    must stay within FLOOR_MULT x the bf16 floor measured in the same check; an exact kernel passes."""
    fla, install = fla_stand_in
    install(guard_flag=False, dg_shift=dg_shift)
    if dg_shift == 0:
        errs = fla.check_backward(8, 16, torch.bfloat16, torch.device("cpu"), chunk_size=16)
        assert errs["dg"] < 2e-2 and {"dg head-sum", "dbeta head-sum"} <= set(errs)
        return
    with pytest.raises(fla.GDNKernelCheckError) as err:
        fla.check_backward(8, 16, torch.bfloat16, torch.device("cpu"), chunk_size=16)
    msg = str(err.value)
    assert "dg head-sum is off" in msg and "x the bf16 floor" in msg and "\n" not in msg
    assert not fla.checks_passed()


def test_isolated_check_turns_a_crash_or_a_refusal_into_one_line():
    """On CUDA the check runs in a child process: a kernel that kills it (as fla's float32 path did on the H200)
    or a refusal printed by it is a one-line GDNKernelCheckError here; a pass comes back with its errors."""
    import sys
    from tokengap.models.ops.gdn import fla
    args = {"dk": 8, "dv": 16, "dtype": "float32", "chunk_size": 16}
    with pytest.raises(fla.GDNKernelCheckError, match=r"crashed the check process \(exit -6") as err:
        fla.run_isolated(args, [sys.executable, "-c", "import os; os.abort()"])
    assert "\n" not in str(err.value)
    with pytest.raises(fla.GDNKernelCheckError, match="^dk is off$"):
        fla.run_isolated(args, [sys.executable, "-c", "print('REFUSE dk is off'); raise SystemExit(3)"])
    ok = 'import json; print("PASS " + json.dumps({"errors": {"dq": 1e-3}, "summary": "s"}))'
    assert fla.run_isolated(args, [sys.executable, "-c", ok]) == ({"dq": 1e-3}, "s")


def test_lm_check_kernels_runs_the_check_once_per_shape(fla_stand_in, monkeypatch):
    """LM.check_kernels asks each GDN layer's check; with the fla path resolved (here: forced), one check for the
    shared head dims of all layers, reported in one line."""
    from tokengap.models import LM
    from tokengap.models.kernels import MixerOps
    from tokengap.models.mixers import gdn as gdn_mixer
    fla, install = fla_stand_in
    install(guard_flag=False)
    cfg = ModelConfig(d_model=64, n_heads=4, n_layers=3, pattern=["gdn", "gdn", "attention"], vocab_size=16)
    cfg.gdn.chunk_size = 16
    model = LM(cfg)
    ops = MixerOps(gdn=fla.chunk_gdn_fla, names=(("gdn", "fla-triton 0.fake"),))
    monkeypatch.setattr("tokengap.models.lm.mixer_ops", lambda *a: ops)
    calls = []
    real = fla.check_backward
    monkeypatch.setattr(fla, "check_backward", lambda *a, **k: calls.append(a) or real(*a, **k))
    lines = model.check_kernels(torch.device("cpu"), torch.float32)
    assert len(lines) == 1 and "gdn kernel check" in lines[0]
    assert [c[:2] for c in calls] == [(12, 24), (12, 24)]  # asked per layer, computed once (cached)
    assert gdn_mixer.check(model.blocks[0].mixer, None, torch.device("cpu"), torch.float32) is None


def test_bf16_operands_cost_the_twin_a_bf16_sized_error():
    """gdn_chunked_torch(mm_dtype=bfloat16), the floor fla's kernel is read against on the GPU: every product's
    operands rounded to bf16 moves the output and the gradients by bf16's order, neither 0 nor more."""
    a = _inputs(2, 100, 2, 16, 32, seed=7)
    dy = torch.randn(2, 100, 2, 32, dtype=torch.float64)

    def run(**kw):
        leaves = [t.clone().requires_grad_(True) for t in a.values()]
        y = gdn_chunked_torch(*leaves, chunk_size=16, **kw)
        y.backward(dy)
        return [y] + [t.grad for t in leaves]
    exact, rounded = ([t.detach() for t in run(**kw)] for kw in ({}, {"mm_dtype": torch.bfloat16}))
    for name, e, r in zip("o dq dk dv dg dbeta".split(), exact, rounded):
        err = float((r - e).norm() / e.norm())
        assert 1e-4 < err < 3e-2, (name, err)


def test_round_tf32_known_answers():
    """TF32 keeps 10 mantissa bits: 1 + 2^-10 survives, 1 + 2^-12 rounds down, a tie (1 + 2^-11) rounds away from
    zero; the relative rounding error is at most 2^-11; inf stays inf."""
    from tokengap.models.ops.gdn.reference import round_tf32
    x = torch.tensor([1.0, 1 + 2 ** -10, 1 + 2 ** -11, 1 + 2 ** -12, -1 - 2 ** -11, float("inf")])
    assert round_tf32(x).tolist() == [1.0, 1 + 2 ** -10, 1 + 2 ** -10, 1.0, -1 - 2 ** -10, float("inf")]
    y = torch.randn(10000, generator=torch.Generator().manual_seed(0))
    r = round_tf32(y)
    assert bool(((r.view(torch.int32) & 0x1FFF) == 0).all())
    assert 2 ** -13 < float(((r - y).abs() / y.abs()).max()) <= 2 ** -11
    t = round_tf32(x, truncate=True)  # toward zero: every tie and every remainder dropped
    assert t.tolist() == [1.0, 1 + 2 ** -10, 1.0, 1.0, -1.0, float("inf")]
    rt = round_tf32(y, truncate=True)
    assert bool((rt.abs() <= y.abs()).all()) and float(((rt - y).abs() / y.abs()).max()) <= 2 ** -10


def test_tf32_operands_cost_the_twin_a_tf32_sized_error():
    """gdn_chunked_torch(mm_dtype="tf32"), the floor of fla's float32 path: between float32 and bf16's errors."""
    a = _inputs(2, 100, 2, 16, 32, seed=7)
    dy = torch.randn(2, 100, 2, 32, dtype=torch.float64)

    def run(**kw):
        leaves = [t.float().clone().requires_grad_(True) for t in a.values()]
        y = gdn_chunked_torch(*leaves, chunk_size=16, **kw)
        y.backward(dy.float())
        return [y] + [t.grad for t in leaves]
    exact, rounded = ([t.detach().double() for t in run(**kw)] for kw in ({}, {"mm_dtype": "tf32"}))
    for name, e, r in zip("o dq dk dv dg dbeta".split(), exact, rounded):
        err = float((r - e).norm() / e.norm())
        assert 1e-5 < err < 4e-3, (name, err)


@pytest.mark.parametrize("dg_shift", [0.0, 0.05])
def test_gpu_check_dg_rows_pass_an_exact_kernel_and_refuse_a_dg_bias(fla_stand_in, monkeypatch, dg_shift):
    """scripts/gpu_check.py's `gdn dg sums` stage on the stand-in (exact float32): every fla row within
    fla.FLOOR_MULT x the bf16 floor; a 5% shift of dg per token (whole-tensor error ~5%, head sums far more) fails
    the dg rows."""
    import scripts.gpu_check as gc
    fla, install = fla_stand_in
    ns = install(dg_shift=dg_shift)
    monkeypatch.setattr(gc, "fla_gated_delta_rule", lambda: (ns, ""))
    monkeypatch.setattr(gc, "rows", [])
    gc.check_gdn_dg("cpu", shapes=((8, 16),), b=2, l=100, h=3, seeds=(0,))
    bad = {r["what"] for r in gc.rows if not r["ok"]}
    assert len(gc.rows) == 14
    assert bad == (set() if dg_shift == 0 else {"dg", "dg head-sum"}), bad


@pytest.mark.slow
def test_gpu_check_gdn_lm_step_rows_run_on_cpu(fla_stand_in, monkeypatch):
    """The plumbing of scripts/gpu_check.py's GDN LM step stage (compiled vs eager, held to the eager step's error
    against the all-twin float32 truth), on the CPU with compile off: two rows per dtype, all within tolerance."""
    import scripts.gpu_check as gc
    fla, install = fla_stand_in
    ns = install()
    monkeypatch.setattr(gc, "fla_gated_delta_rule", lambda: (ns, ""))
    monkeypatch.setattr(gc, "rows", [])
    monkeypatch.setattr(gc, "notes", [])
    monkeypatch.setattr(gc, "GDN_LM", {**gc.GDN_LM, "n_layers": 2, "d_model": 64, "n_heads": 2,
                                       "pattern": ["gdn", "attention"], "gdn": gc.GDNConfig(head_dim=16)})
    monkeypatch.setattr(torch, "compile", lambda m, **k: m)
    gc.check_gdn_lm_compiled_step("cpu")
    assert [r["what"].split(" (")[0] for r in gc.rows] == ["loss", "grad"] * 2
    assert all(r["ok"] for r in gc.rows) and len(gc.notes) == 2
