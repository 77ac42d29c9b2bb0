"""Model zoo: reference ops vs naive definitions, causality, shapes, parameter matching, save/load, dispatch."""
from __future__ import annotations

import concurrent.futures
import itertools
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from tokengap.models import LM, ModelConfig
from tokengap.models.__main__ import SIZES, ZOO, load
from tokengap.models.config import count_params_formula
from tokengap.models.io import from_pretrained, save_pretrained
from tokengap.models import kernels
from tokengap.models.kernels import KernelChoice, mixer_ops
from tokengap.models.mixers.attention import Attention, apply_rope, attention_math_reference, rope_tables
from tokengap.models.ops import external
from tokengap.models.ops.conv.external import wrap_fla_conv
from tokengap.models.ops.conv.reference import causal_conv1d_torch
from tokengap.models.ops.external import mamba_ssm_triton
from tokengap.models.ops.gated_norm.mamba_ssm import wrap_mamba_norm
from tokengap.models.ops.gated_norm.reference import gated_rms_norm_torch
from tokengap.models.ops.ssd.naive import ssd_recurrent_naive
from tokengap.models.ops.ssd.reference import ssd_chunked_torch


def tiny(name: str, vocab: int = 97, **over) -> ModelConfig:
    cfg = load([f"model={name}", "size=tiny"])
    cfg.vocab_size = vocab
    cfg.window = 32  # what a run sets from its context (half of it) for `swa` layers
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


# ---- SSD reference vs the naive recurrence -----------------------------------------------------------
def _ssd_inputs(b, l, h, p, g, n, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    return dict(x=r(b, l, h, p), dt=r(b, l, h), A=-torch.rand(h, generator=gen, dtype=dtype) * 3,
                B=r(b, l, g, n), C=r(b, l, g, n), D=r(h), dt_bias=r(h))


@pytest.mark.parametrize("chunk", [1, 8, 16, 64])
@pytest.mark.parametrize("seqlen", [1, 13, 64, 100])
@pytest.mark.parametrize("groups", [1, 2])
def test_ssd_chunked_equals_naive_recurrence(chunk, seqlen, groups):
    a = _ssd_inputs(2, seqlen, 4, 3, groups, 5, seed=seqlen * 7 + chunk)
    ref = ssd_recurrent_naive(**a, dt_softplus=True)
    out = ssd_chunked_torch(**{k: v for k, v in a.items() if k not in ("D", "dt_bias")}, chunk_size=chunk,
                            D=a["D"], dt_bias=a["dt_bias"], dt_softplus=True)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_ssd_chunked_gradients_equal_naive():
    a = _ssd_inputs(1, 21, 2, 3, 1, 4, seed=3)
    leaves = {k: v.clone().requires_grad_(True) for k, v in a.items()}
    ssd_recurrent_naive(**leaves, dt_softplus=True).square().sum().backward()
    ref = {k: v.grad.clone() for k, v in leaves.items()}
    leaves2 = {k: v.clone().requires_grad_(True) for k, v in a.items()}
    kw = {k: v for k, v in leaves2.items() if k not in ("D", "dt_bias")}
    ssd_chunked_torch(**kw, chunk_size=8, D=leaves2["D"], dt_bias=leaves2["dt_bias"],
                      dt_softplus=True).square().sum().backward()
    for k in a:
        torch.testing.assert_close(leaves2[k].grad, ref[k], rtol=1e-9, atol=1e-9, msg=f"grad of {k}")


def test_ssd_final_state_matches_recurrence():
    a = _ssd_inputs(1, 30, 2, 3, 1, 4, seed=5)
    _, final = ssd_chunked_torch(a["x"], a["dt"], a["A"], a["B"], a["C"], chunk_size=8, dt_bias=a["dt_bias"],
                                 dt_softplus=True, return_final_states=True)
    dt = F.softplus(a["dt"] + a["dt_bias"])
    state = torch.zeros(1, 2, 3, 4, dtype=torch.float64)
    for t in range(30):
        state = state * torch.exp(dt[:, t] * a["A"])[..., None, None] + \
            torch.einsum("bh,bn,bhp->bhpn", dt[:, t], a["B"][:, t, 0], a["x"][:, t])
    torch.testing.assert_close(final, state)


def test_causal_conv_and_gated_norm_match_definitions():
    gen = torch.Generator().manual_seed(0)
    x, w, bias = torch.randn(2, 9, 5, generator=gen), torch.randn(5, 4, generator=gen), torch.randn(5, generator=gen)
    out = causal_conv1d_torch(x, w, bias)
    ref = torch.zeros_like(x)
    for t in range(9):
        for k in range(4):  # weight[:, -1] multiplies the current step
            if t - (3 - k) >= 0:
                ref[:, t] += w[:, k] * x[:, t - (3 - k)]
    torch.testing.assert_close(out, F.silu(ref + bias))
    y, z, wt = torch.randn(3, 8, generator=gen), torch.randn(3, 8, generator=gen), torch.randn(8, generator=gen)
    got = gated_rms_norm_torch(y, z, wt, eps=1e-5, group_size=4)
    g = (y * F.silu(z)).view(3, 2, 4)
    want = (g / torch.sqrt(g.pow(2).mean(-1, keepdim=True) + 1e-5)).view(3, 8) * wt
    torch.testing.assert_close(got, want)


# ---- attention ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window,kv_heads", [(None, 4), (None, 2), (5, 4), (5, 1)])
def test_sdpa_matches_math_reference(window, kv_heads):
    torch.manual_seed(0)
    cfg = tiny("transformer", n_kv_heads=kv_heads, window=window)
    attn = Attention(cfg, window=window).double()
    x = torch.randn(2, 23, cfg.d_model, dtype=torch.float64)
    cos, sin = rope_tables(23, cfg.head_dim, cfg.rope_theta, x.device, torch.float64)
    q, k, v = attn.wqkv(x).split([4 * 32, kv_heads * 32, kv_heads * 32], dim=-1)
    q = apply_rope(q.view(2, 23, 4, 32), cos, sin).transpose(1, 2)
    k = apply_rope(k.view(2, 23, kv_heads, 32), cos, sin).transpose(1, 2)
    v = v.view(2, 23, kv_heads, 32).transpose(1, 2)
    ref = attn.wo(attention_math_reference(q, k, v, window).transpose(1, 2).reshape(2, 23, 128))
    torch.testing.assert_close(attn(x, (cos, sin)), ref)


@pytest.mark.parametrize("seqlen,window", [(300, 64), (256, 128), (40, 7)])
def test_flex_attention_window_equals_the_sdpa_mask(seqlen, window):
    """What compiled CUDA training runs for `swa` (FlexAttention with a block mask) equals the eager SDPA mask path
    (forward here: FlexAttention has no CPU backward; scripts/gpu_check.py compares the compiled train step)."""
    from tokengap.models.mixers.attention import window_block_mask
    torch.manual_seed(0)
    cfg = tiny("transformer", n_kv_heads=2, window=window)
    attn = Attention(cfg, window=window)
    x = torch.randn(2, seqlen, cfg.d_model)
    cos, sin = rope_tables(seqlen, cfg.head_dim, cfg.rope_theta, x.device)
    with torch.no_grad():
        flex = attn(x, (cos, sin, window_block_mask(seqlen, window, x.device)))
        masked = attn(x, (cos, sin))
    torch.testing.assert_close(flex, masked, rtol=1e-5, atol=1e-5)


def test_qk_norm_attention_matches_separate_norms_and_ropes():
    """Attention ropes q and k as one tensor (and normalises them as one with qk_norm); the result must equal
    normalising and roping each separately."""
    torch.manual_seed(0)
    cfg = tiny("transformer", n_kv_heads=2, qk_norm=True)
    attn = Attention(cfg).double()
    for norm in (attn.q_norm, attn.k_norm):  # non-trivial weights, different for q and k
        torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
    x = torch.randn(2, 23, cfg.d_model, dtype=torch.float64)
    cos, sin = rope_tables(23, cfg.head_dim, cfg.rope_theta, x.device, torch.float64)
    q, k, v = attn.wqkv(x).split([4 * 32, 2 * 32, 2 * 32], dim=-1)
    q = apply_rope(attn.q_norm(q.view(2, 23, 4, 32)), cos, sin).transpose(1, 2)
    k = apply_rope(attn.k_norm(k.view(2, 23, 2, 32)), cos, sin).transpose(1, 2)
    v = v.view(2, 23, 2, 32).transpose(1, 2)
    ref = attn.wo(attention_math_reference(q, k, v).transpose(1, 2).reshape(2, 23, 128))
    torch.testing.assert_close(attn(x, (cos, sin)), ref)


def test_rope_is_relative():
    """<R_m q, R_n k> depends on m - n only."""
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    cos, sin = rope_tables(20, 8, 10000.0, "cpu", torch.float64)
    dot = lambda m, n: (apply_rope(q, cos[m:m + 1], sin[m:m + 1]) * apply_rope(k, cos[n:n + 1], sin[n:n + 1])).sum()  # noqa
    torch.testing.assert_close(dot(7, 3), dot(15, 11))
    assert not torch.allclose(dot(7, 3), dot(7, 4))


# ---- causality ------------------------------------------------------------------------------------------
def _assert_causal(fn, x, t):
    y0 = fn(x)
    x2 = x.clone()
    x2[:, t] = x2[:, t] + torch.randn_like(x2[:, t])
    y1 = fn(x2)
    torch.testing.assert_close(y1[:, :t], y0[:, :t], rtol=0, atol=1e-6)
    assert (y1[:, t] - y0[:, t]).abs().max() > 1e-4, "perturbing token t should change output t"


@pytest.mark.parametrize("mixer", ["attention", "swa", "mamba2", "gdn"])
def test_mixer_causality(mixer):
    from tokengap.models import mixers
    torch.manual_seed(0)
    cfg = tiny("hybrid", window=4)
    mod = mixers.get(mixer).build(cfg, 0)
    x = torch.randn(2, 70, cfg.d_model)
    rope = rope_tables(70, cfg.head_dim, cfg.rope_theta, x.device)
    for t in (0, 31, 64, 69):  # 64: the first token of the second GDN chunk
        _assert_causal(lambda u: mod(u, rope), x, t)


@pytest.mark.parametrize("name", ZOO)
def test_model_causality(name):
    torch.manual_seed(0)
    model = LM(tiny(name)).eval()
    ids = torch.randint(0, 97, (2, 80))
    with torch.no_grad():
        y0 = model(ids)
        for t in (0, 40, 79):
            ids2 = ids.clone()
            ids2[:, t] = (ids2[:, t] + 1) % 97
            y1 = model(ids2)
            torch.testing.assert_close(y1[:, :t], y0[:, :t], rtol=0, atol=1e-5)
            assert (y1[:, t] - y0[:, t]).abs().max() > 1e-4


# ---- shapes, dtypes, training step ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ZOO)
def test_shapes_dtypes_and_backward(name):
    torch.manual_seed(0)
    model = LM(tiny(name))
    ids = torch.randint(0, 97, (3, 33))
    logits = model(ids)
    assert logits.shape == (3, 33, 97) and logits.dtype == torch.float32
    loss = model(ids[:, :-1], ids[:, 1:])
    assert abs(loss.item() - torch.log(torch.tensor(97.0)).item()) < 0.5  # near-uniform at init
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # matmuls in bf16, norms in fp32 (autocast's lists)
        out = model(ids)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_token_losses_equal_full_cross_entropy():
    torch.manual_seed(0)
    model = LM(tiny("hybrid")).eval()
    ids, tgt = torch.randint(0, 97, (2, 40)), torch.randint(0, 97, (2, 40))
    tgt[0, :5] = -100
    with torch.no_grad():
        full = F.cross_entropy(model(ids).flatten(0, 1), tgt.flatten(), ignore_index=-100, reduction="none")
        chunked = model.token_losses(ids, tgt, chunk_tokens=7)
    torch.testing.assert_close(chunked.flatten(), full)
    assert (chunked[0, :5] == 0).all()


def test_tied_embeddings_share_storage_and_reduce_params():
    untied, tied = LM(tiny("transformer")), LM(tiny("transformer", tie_embeddings=True))
    assert tied.lm_head.weight.data_ptr() == tied.embed.weight.data_ptr()
    assert untied.num_params(False) - tied.num_params(False) == 97 * 128
    assert untied.num_params(True) == tied.num_params(True)


# ---- configs and parameter matching ---------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
def test_zoo_non_embedding_params_match_within_5_percent(size):
    counts = {}
    for name in ZOO:
        cfg = load([f"model={name}", f"size={size}"])
        cfg.vocab_size, cfg.window = 1000, 64
        with torch.device("meta"):  # no memory: count only
            model = LM(cfg)
        counts[name] = model.num_params(non_embedding=True)
        assert counts[name] == count_params_formula(cfg)["non_embedding"]
    for a, b in itertools.combinations(ZOO, 2):
        assert abs(counts[a] / counts[b] - 1) <= 0.05, (size, a, b, counts)


def test_composition_and_pattern_spellings():
    cfg = load(["model=hybrid", "size=small"])
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads) == (8, 512, 8)
    assert cfg.layers() == ["mamba2", "mamba2", "mamba2", "attention"] * 2
    assert load(["model=transformer", "size=small", "model.ratio=3:1"]).layers() == cfg.layers()
    explicit = ["attention", "mamba2", "mamba2", "swa"]
    got = load(["model=recurrent", f"model.pattern=[{','.join(explicit)}]", "model.window=16"]).layers()
    assert got == explicit
    assert load(["model=hybrid", "model.pattern=[mamba2,attention]"]).layers() == ["mamba2", "attention"] * 2
    assert load(["model=recurrent", "size=base"]).layers() == ["mamba2"] * 12


@pytest.mark.parametrize("overrides,key", [
    (["model.foo=1"], "model.foo"),
    (["model.mamba.dstate=3"], "model.mamba.dstate"),
    (["model.pattern=[mamba2,lstm]"], "model.pattern"),
    (["model.pattern=[mamba2,mamba2,attention]"], "model.pattern"),
    (["model.ratio=2:1"], "model.ratio"),
    (["model.n_heads=5"], "model.n_heads"),
    (["model.n_kv_heads=3"], "model.n_kv_heads"),
    (["model.pattern=[swa]", "model.window=0"], "model.window"),
    (["model.mamba.headdim=48"], "model.mamba.headdim"),
    (["model.n_layers=x"], "model.n_layers"),
    (["model.kernels=fast"], "model.kernels"),
    (["model.pattern=[gdn,attention]", "model.n_heads=8", "model.d_model=120"], "model.gdn.head_dim"),
    (["model.pattern=[gdn]", "model.gdn.n_v_heads=6"], "model.gdn.n_v_heads"),
    (["model.pattern=[gdn]", "model.gdn.chunk_size=48"], "model.gdn.chunk_size"),
    (["model.pattern=[gdn]", "model.gdn.head_dim=300"], "model.gdn.head_dim"),
    (["model.pattern=[gdn]", "model.gdn.heads=2"], "model.gdn.heads"),
    (["model.recurrent_mixer=attention", "model.ratio=3:1"], "model.recurrent_mixer"),
])
def test_bad_config_fails_with_one_line_naming_the_key(overrides, key):
    from tokengap.models.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load(["model=hybrid", *overrides]).layers()
    msg = str(err.value)
    assert key in msg and "\n" not in msg, msg


def test_composition_of_the_study_pair():
    swa = load(["model=transformer_swa", "size=small"])
    gdn = load(["model=hybrid_gdn", "size=small"])
    assert swa.layers() == ["swa", "swa", "swa", "attention"] * 2 and swa.window is None  # a run sets it
    assert gdn.layers() == ["gdn", "gdn", "gdn", "attention"] * 2
    assert load(["model=hybrid_gdn", "model.ratio=3:1", "model.recurrent_mixer=gdn"]).layers() == \
        ["gdn", "gdn", "gdn", "attention"]
    assert load(["model=recurrent_gdn", "size=base"]).layers() == ["gdn"] * 12


def test_a_mixer_registered_in_a_test_builds_a_model():
    """The registry is the one place a mixer is known: a toy mixer (a causal running mean + a projection) registered
    here is accepted by model.pattern and ratio, counted by the closed form, built, trained a step, described and
    reported, and unknown again once unregistered."""
    from tokengap.models import mixers
    from tokengap.models.config import ConfigError, flops_per_token

    class RunningMean(torch.nn.Module):
        def __init__(self, cfg, layer_idx):
            super().__init__()
            self.proj = torch.nn.Linear(cfg.d_model, cfg.d_model, bias=False)

        def forward(self, x, rope=None, ops=None):
            n = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)[None, :, None]
            return self.proj(x.cumsum(1) / n)

    spec = mixers.MixerSpec("toy_mean", RunningMean, num_params=lambda cfg: cfg.d_model ** 2,
                            flops_per_token=lambda cfg, T: 7.0, describe=lambda m, ops: "torch cumsum",
                            recurrent=True)
    with mixers.registered(spec):
        cfg = tiny("hybrid", pattern=["toy_mean", "toy_mean", "toy_mean", "attention"])
        assert cfg.layers() == ["toy_mean"] * 3 + ["attention"]
        model = LM(cfg)
        assert model.num_params() == count_params_formula(cfg)["non_embedding"]
        ids = torch.randint(0, 97, (2, 17))
        model(ids[:, :-1], ids[:, 1:]).backward()
        assert "toy_mean  torch cumsum" in model.kernel_report()[0]
        # three toy layers' own FLOPs + one attention layer's QK^T and AV over 8.5 keys on average at T = 16
        assert flops_per_token(cfg, 16, 0) == 3 * 7.0 + 3 * 4 * 128 * 8.5
        assert load(["model=hybrid", "model.ratio=3:1", "model.recurrent_mixer=toy_mean"]).layers()[0] == "toy_mean"
    with pytest.raises(ConfigError, match="unknown mixer 'toy_mean'"):
        tiny("hybrid", pattern=["toy_mean"]).layers()


def test_cli_prints_layers_and_fails_in_one_line():
    import subprocess

    ok = subprocess.run([sys.executable, "-m", "tokengap.models", "model=hybrid", "size=small"], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "layer  3: attention" in ok.stdout and "non-embedding" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "tokengap.models", "model.n_heads=5"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "model.n_heads" in bad.stderr


# ---- save / load ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tie", [False, True])
def test_save_load_roundtrip_and_checksum(tmp_path, tie):
    torch.manual_seed(0)
    model = LM(tiny("hybrid", tie_embeddings=tie)).eval()
    save_pretrained(model, tmp_path, extra={"step": 3})
    loaded = from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 97, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)
    assert loaded.layer_types == model.layer_types
    if tie:
        assert loaded.lm_head.weight.data_ptr() == loaded.embed.weight.data_ptr()
    with open(tmp_path / "model.safetensors", "r+b") as f:  # flip a byte near the end (tensor data)
        f.seek(-3, 2)
        b = f.read(1)
        f.seek(-3, 2)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="sha256"):
        from_pretrained(tmp_path)


# ---- kernel dispatch ---------------------------------------------------------------------------------------
def test_cpu_runs_reference_path_and_reports_it():
    model = LM(tiny("hybrid"))
    model(torch.randint(0, 97, (1, 8)))
    report = model.kernel_report()
    assert "ssd=torch-chunked(reference)" in report[0] and "attention torch-sdpa" in report[3]
    with pytest.raises(RuntimeError, match="CUDA"):
        mixer_ops(KernelChoice(scans="triton"), torch.device("cpu"))


def test_mamba_ssm_without_compiled_extension_is_importable(tmp_path, monkeypatch):
    """A stand-in package whose __init__ imports the missing compiled module, as mamba-ssm's does."""
    pkg = tmp_path / "mamba_ssm"
    (pkg / "ops" / "triton").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0.fake'\nimport selective_scan_cuda\n")
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "ops" / "triton" / "__init__.py").write_text("")
    (pkg / "ops" / "triton" / "ssd_combined.py").write_text(
        "def _mamba_chunk_scan_combined_fwd(*a, **k): return 'fwd'\n"
        "def _mamba_chunk_scan_combined_bwd(*a, **k): return 'bwd'\n")
    (pkg / "ops" / "triton" / "layernorm_gated.py").write_text(textwrap.dedent("""
        def rmsnorm_fn(*a, **k): return 'norm'
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("mamba_ssm") or m == "selective_scan_cuda"]:
        monkeypatch.delitem(sys.modules, name)
    ns, why = mamba_ssm_triton.__wrapped__()
    assert why == "" and ns.ssd_fwd() == "fwd"
    assert ns.ssd_bwd() == "bwd" and ns.rmsnorm_fn() == "norm"
    assert "without its compiled Mamba1 extension" in ns.version
    for name in [m for m in sys.modules if m.startswith("mamba_ssm") or m == "selective_scan_cuda"]:
        monkeypatch.delitem(sys.modules, name)


def _fake_fla(tmp_path, monkeypatch, body: str):
    """A stand-in fla package whose causal_conv1d is `body` (with fla's signature and (y, state) return)."""
    pkg = tmp_path / "fla"
    (pkg / "modules" / "causal_conv1d").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0.fake'\n")
    (pkg / "modules" / "__init__.py").write_text("")
    (pkg / "modules" / "causal_conv1d" / "__init__.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "fla" or m.startswith("fla.")]:
        monkeypatch.delitem(sys.modules, name)
    external.fla_triton_conv.cache_clear()
    monkeypatch.setattr(kernels, "causal_conv1d_cuda", lambda: (None, "causal-conv1d is not installed"))


def test_conv_dispatch_picks_fla_and_passes_its_layout(tmp_path, monkeypatch):
    """fla gets x as (b, l, c) and weight as (c, k), and its (y, final_state) is unwrapped: checked against
    causal_conv1d_torch by routing the fake's call to it."""
    _fake_fla(tmp_path, monkeypatch, """
        from tokengap.models.ops.conv.reference import causal_conv1d_torch
        def causal_conv1d(x, weight, bias=None, activation=None, **kw):
            assert x.dim() == 3 and weight.shape == (x.shape[-1], weight.shape[1]), (x.shape, weight.shape)
            return causal_conv1d_torch(x, weight, bias, activation=activation == "silu"), None
    """)
    try:
        conv, name = kernels.select_conv("fla")
        assert name == "fla-triton 0.fake"
        x, w, b = torch.randn(2, 9, 6), torch.randn(6, 4), torch.randn(6)
        torch.testing.assert_close(conv(x, w, b), causal_conv1d_torch(x, w, b))
        torch.testing.assert_close(conv(x, w, b, activation=False), causal_conv1d_torch(x, w, b, activation=False))
        assert kernels.select_conv("torch")[1] == "torch-conv1d"
        with pytest.raises(RuntimeError, match="conv preference cuda"):
            kernels.select_conv("cuda")
    finally:
        external.fla_triton_conv.cache_clear()


def test_conv_dispatch_auto_order_ours_then_torch(tmp_path, monkeypatch):
    """auto: causal-conv1d if importable, else our Triton conv, else F.conv1d with a warning; fla only when asked
    for, so a broken fla changes nothing under auto and is refused by name when asked for."""
    pytest.importorskip("triton")
    _fake_fla(tmp_path, monkeypatch, "raise ImportError('needs a newer triton')\n")
    try:
        assert kernels.select_conv("auto")[1] == "tokengap-triton"
        assert kernels.select_conv("triton")[1] == "tokengap-triton"
        with pytest.raises(RuntimeError, match="fla import failed.*newer triton"):
            kernels.select_conv("fla")
        with pytest.raises(ValueError, match="conv preference"):
            KernelChoice(conv="cudnn")
        monkeypatch.setattr(kernels, "tokengap_triton", lambda *a: (None, "triton is not installed"))
        assert kernels.select_conv("auto")[1] == "torch-conv1d"
        with pytest.raises(RuntimeError, match="conv preference triton but triton is not installed"):
            kernels.select_conv("triton")
        monkeypatch.setattr(kernels, "causal_conv1d_cuda", lambda: (lambda *a, **k: None, ""))
        assert kernels.select_conv("auto")[1] == "causal_conv1d-cuda"
    finally:
        external.fla_triton_conv.cache_clear()


def test_gated_norm_traces_the_twin_when_compiled_and_calls_the_kernel_eager():
    """Eager, the wrapped norm calls mamba-ssm's kernel (a fake here, whose output is distinguishable); traced
    by torch.compile, it is the PyTorch twin, in one graph (fullgraph=True fails on a graph break); with
    compiled_twin=False (KernelChoice.compiled_gated_norm_twin), the compiled model calls the kernel again."""
    calls = []

    def fake_rmsnorm_fn(x, weight, bias, z, eps, group_size, norm_before_gate):
        assert bias is None and norm_before_gate is False
        calls.append(x.shape)
        return -gated_rms_norm_torch(x, z, weight, eps, group_size)

    norm = wrap_mamba_norm(fake_rmsnorm_fn)
    x, z, w = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.rand(8) + 0.5
    twin = gated_rms_norm_torch(x, z, w, 1e-5, 4)
    torch.testing.assert_close(norm(x, z, w, 1e-5, 4), -twin)
    assert len(calls) == 1
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: norm(*a, 1e-5, 4), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, z, w), twin)
    assert len(calls) == 1
    try:
        kernel_norm = wrap_mamba_norm(fake_rmsnorm_fn, compiled_twin=False)
        torch._dynamo.reset()
        compiled = torch.compile(lambda *a: kernel_norm(*a, 1e-5, 4), backend="aot_eager")
        torch.testing.assert_close(compiled(x, z, w), -twin)
        assert len(calls) == 2
    finally:
        torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fla's Triton conv needs a CUDA device")
def test_fla_conv_matches_reference_on_cuda():
    fn, why = external.fla_triton_conv()
    if fn is None:
        pytest.skip(why)
    conv = wrap_fla_conv(fn)
    torch.manual_seed(0)
    u = torch.randn(2, 300, 3 * 160, device="cuda", requires_grad=True)
    w, b = torch.randn(320, 4, device="cuda", requires_grad=True), torch.randn(320, device="cuda", requires_grad=True)
    for lo in (0, 96):  # strided views with and without a storage offset, as after in_proj's split
        x = u[..., lo:lo + 320]
        y, y_ref = conv(x, w, b), causal_conv1d_torch(x, w, b)
        g = torch.randn_like(y)
        torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
        for a, r in zip(torch.autograd.grad(y, (u, w, b), g), torch.autograd.grad(y_ref, (u, w, b), g)):
            torch.testing.assert_close(a, r, rtol=1e-3, atol=1e-3)


def test_cached_rope_tables_equal_fresh_ones_and_survive_inference_mode():
    """The cache returns the same tables as rope_tables; built first under inference_mode (as when scoring), they
    must still be usable in a training step (inference tensors cannot be saved for backward)."""
    from tokengap.models.mixers.attention import _rope_tables_cache, rope_tables_cached
    _rope_tables_cache.cache_clear()
    model = LM(tiny("transformer"))
    ids = torch.randint(0, 97, (2, 19))
    with torch.inference_mode():
        model(ids)
    cos, sin = rope_tables_cached(19, model.cfg.head_dim, model.cfg.rope_theta, torch.device("cpu"))
    ref = rope_tables(19, model.cfg.head_dim, model.cfg.rope_theta, "cpu")
    assert not cos.is_inference() and torch.equal(cos, ref[0]) and torch.equal(sin, ref[1])
    model(ids, ids).backward()  # raises if the cached tables were inference tensors
    assert rope_tables_cached(19, model.cfg.head_dim, model.cfg.rope_theta, "cpu")[0] is cos


def _twin_namespace():
    """A stand-in for mamba-ssm's internal SSD forward/backward built on the twin, same return layout."""
    import types as _types

    def fwd(x, dt, A, B, C, chunk_size, D=None, dt_bias=None, dt_softplus=False):
        out = ssd_chunked_torch(x, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias, dt_softplus=dt_softplus)
        return out.to(x.dtype), None, None, None, None, None

    def grads(dout, x, dt, A, B, C, chunk_size, D, dt_bias, dt_softplus):
        leaves = [t.detach().requires_grad_(True) for t in (x, dt, A, B, C, D, dt_bias)]
        y = ssd_chunked_torch(*leaves[:5], chunk_size, D=leaves[5], dt_bias=leaves[6], dt_softplus=dt_softplus)
        return torch.autograd.grad(y, leaves, dout)

    def bwd(dout, x, dt, A, B, C, out, chunk_size, D=None, dt_bias=None, dt_softplus=False):
        # a custom op's body runs below the autograd dispatch key (thread-local): differentiate in a fresh thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            g = pool.submit(grads, dout, x, dt, A, B, C, chunk_size, D, dt_bias, dt_softplus).result()
        return g[0], g[1], g[2], g[3], g[4], g[5], None, g[6], None
    return _types.SimpleNamespace(ssd_fwd=fwd, ssd_bwd=bwd)


def test_ssd_custom_op_matches_twin_and_compiles_without_graph_break(monkeypatch):
    """tokengap::mamba_ssd (what the CUDA path runs, mamba-ssm's kernels inside) wired to a twin-backed stand-in:
    values and all seven gradients match the twin, torch.library.opcheck passes (schema, fake, autograd), and a
    compiled function over it has no graph break (fullgraph=True)."""
    import tokengap.models.ops.ssd.mamba_ssm as K
    monkeypatch.setattr(K, "mamba_ssm_triton", lambda: (_twin_namespace(), ""))
    g = torch.Generator().manual_seed(3)
    b, l, h, p, n = 2, 24, 4, 8, 6
    ins = [torch.randn(b, l, h, p, generator=g, dtype=torch.float64), 0.5 * torch.randn(b, l, h, generator=g, dtype=torch.float64),
           -torch.rand(h, generator=g, dtype=torch.float64) - 0.5, torch.randn(b, l, 2, n, generator=g, dtype=torch.float64),
           torch.randn(b, l, 2, n, generator=g, dtype=torch.float64), torch.randn(h, generator=g, dtype=torch.float64),
           0.1 * torch.randn(h, generator=g, dtype=torch.float64)]
    dy = torch.randn(b, l, h, p, generator=g, dtype=torch.float64)

    def run(fn):
        leaves = [t.clone().requires_grad_(True) for t in ins]
        y = fn(*leaves)
        y.backward(dy)
        return [y] + [t.grad for t in leaves]

    twin = run(lambda x, dt, A, B, C, D, db: ssd_chunked_torch(x, dt, A, B, C, 8, D=D, dt_bias=db, dt_softplus=True))
    op = run(lambda x, dt, A, B, C, D, db: K.mamba_ssd(x, dt, A, B, C, 8, D=D, dt_bias=db, dt_softplus=True))
    compiled = run(torch.compile(lambda x, dt, A, B, C, D, db: K.mamba_ssd(x, dt, A, B, C, 8, D=D, dt_bias=db,
                                                                           dt_softplus=True) * 2.0,
                                 backend="aot_eager", fullgraph=True))
    for name, a, c, r in zip("y dx ddt dA dB dC dD ddt_bias".split(), op, compiled, twin):
        torch.testing.assert_close(a, r, msg=f"op {name}")
        torch.testing.assert_close(c, 2.0 * r, msg=f"compiled {name}")
    torch.library.opcheck(torch.ops.tokengap.mamba_ssd.default, (*ins, 8))
    with pytest.raises(ValueError, match="needs D, dt_bias"):
        K.mamba_ssd(*ins[:5], 8)
