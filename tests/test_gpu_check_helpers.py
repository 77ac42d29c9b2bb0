"""scripts/gpu_check.py's helpers run on any device: the script itself needs CUDA, so its plumbing is checked here
(a typo in a helper would otherwise first show on the GPU machine, inside a 10-minute call)."""
import pytest
import torch

from tokengap.models import LM, ModelConfig
from tokengap.models.kernels import KernelChoice
from tokengap.models.mixers.gdn import GatedDeltaNet
from scripts.gpu_check import WithOps, _step, rel, run_layer

TINY = dict(name="hybrid_gdn", n_layers=2, d_model=64, n_heads=2, pattern=["gdn", "attention"], mlp_ratio=2.0,
            vocab_size=64)


def test_run_layer_on_cpu_is_deterministic_and_bf16_is_close_but_not_equal():
    torch.manual_seed(0)
    layer = GatedDeltaNet(ModelConfig(**{**TINY, "n_layers": 1, "pattern": ["gdn"]}))
    twin = WithOps(layer, ("gdn", "gated_norm", "conv"), KernelChoice(scans="reference"), device="cpu")
    x = torch.randn(2, 70, 64)
    (y1, g1), (y2, g2) = run_layer(twin, x, torch.float32), run_layer(twin, x, torch.float32)
    assert rel(y1, y2) == 0 and all(rel(g1[k], g2[k]) == 0 for k in g1)
    assert {"input", "A_log", "dt_bias", "in_proj.weight"} <= set(g1)  # the input's and every parameter's gradient
    yb, gb = run_layer(twin, x, torch.bfloat16)
    assert 1e-4 < rel(yb, y1) < 5e-2 and 0 < rel(gb["dt_bias"], g1["dt_bias"]) < 1e-1


def test_withops_swap_replaces_only_the_named_op():
    layer = GatedDeltaNet(ModelConfig(**{**TINY, "n_layers": 1, "pattern": ["gdn"]}))
    plain = WithOps(layer, ("gdn", "gated_norm", "conv"), KernelChoice(scans="reference"), device="cpu")
    sentinel = lambda *a, **k: None  # noqa: E731
    swapped = WithOps(layer, ("gdn", "gated_norm", "conv"), KernelChoice(scans="reference"), device="cpu",
                      conv=sentinel)
    assert swapped.ops.conv is sentinel and swapped.ops.gdn is plain.ops.gdn


def test_step_on_cpu_returns_the_loss_and_every_gradient():
    torch.manual_seed(0)
    model = LM(ModelConfig(**TINY))
    ids = torch.randint(0, 64, (2, 33))
    loss, grads = _step(model, ids[:, :-1], ids[:, 1:], torch.float32)
    loss2, grads2 = _step(model, ids[:, :-1], ids[:, 1:], torch.float32)
    assert rel(loss, loss2) == 0 and set(grads) == {n for n, p in model.named_parameters() if p.requires_grad}


def test_gpu_checks_gdn_layer_has_the_zoos_head_dims():
    """gpu_check's GDN rows measure the head dims the zoo trains with (hybrid_gdn at `small`)."""
    from tokengap.models import ModelConfig
    from tokengap.models.__main__ import load
    from tokengap.models.mixers.gdn import dims
    from scripts.gpu_check import GDN_LM
    assert dims(ModelConfig(**GDN_LM)) == dims(load(["model=hybrid_gdn", "size=small"])) == (4, 4, 96, 192)


def test_first_call_note_reports_a_first_call_that_differs(monkeypatch):
    """first_call_note: relative differences of each gradient (and of per-head sums of dg, dbeta) between a first
    call and a repeat, kept in the JSON's notes; zero for equal calls, the planted size for a shifted one."""
    import torch

    import scripts.gpu_check as gc
    monkeypatch.setattr(gc, "notes", [])
    dg = torch.randn(2, 50, 4)
    gc.first_call_note("equal", {"dg": dg, "A_log": torch.ones(4)}, {"dg": dg.clone(), "A_log": torch.ones(4)})
    gc.first_call_note("shifted", {"dg": dg + 0.05 * dg.abs().mean(), "A_log": 1.1 * torch.ones(4)},
                       {"dg": dg, "A_log": torch.ones(4)})
    equal, shifted = (n["rel_diff"] for n in gc.notes)
    assert set(equal) == {"dg", "A_log", "dg head-sum"} and max(equal.values()) == 0
    assert shifted["A_log"] == pytest.approx(0.1) and shifted["dg head-sum"] > shifted["dg"] > 0


def test_compare_to_floor_holds_each_gradient_to_its_floor(monkeypatch):
    """A gradient 2x its floor's error passes, 4x fails (FLOOR_MULT 3); below TOL the floor does not tighten it.
    The fp32 GDN layer row on the GPU uses this with the twin on TF32-rounded operands as the floor."""
    import scripts.gpu_check as gc
    monkeypatch.setattr(gc, "rows", [])
    ref = (torch.ones(10), {"a": torch.ones(100), "b": torch.ones(100)})
    floor = (torch.ones(10), {"a": torch.full((100,), 1.01), "b": torch.ones(100)})  # a: 1e-2 floor, b: 0

    def got(ea, eb):
        return (torch.ones(10), {"a": torch.full((100,), 1 + ea), "b": torch.full((100,), 1 + eb)})
    gc.compare_to_floor("t", torch.float32, got(0.02, 0.004), ref, floor)  # a 2x its floor, b within TOL 5e-3
    gc.compare_to_floor("t", torch.float32, got(0.04, 0.0), ref, floor)    # a 4x its floor
    gc.compare_to_floor("t", torch.float32, got(0.0, 0.006), ref, floor)   # b over TOL, its floor 0
    assert [r["ok"] for r in gc.rows] == [True, True, True, False, True, False]
    assert gc.rows[3]["what"] == "grad (worst vs its tol: a)" and gc.rows[3]["tol"] == pytest.approx(0.03)


def test_gdn_fp32_probe_plumbing_on_cpu(monkeypatch):
    """scripts/gdn_fp32_probe.py on the CPU with the twin standing in for fla (exact float32): every row and
    measure present per seed; the twin's own errors at float32's level, the truncating floor's above the rounding
    one's (truncation is biased)."""
    import scripts.gdn_fp32_probe as probe
    from tokengap.models.ops.gdn.reference import gdn_chunked_torch
    real = probe.inputs
    monkeypatch.setattr(probe, "inputs", lambda seed, device: real(seed, device, b=1, l=150, h=2, dk=16, dv=32))
    rows = probe.probe(torch.device("cpu"), seeds=(0, 1), fla_fn=lambda *a: gdn_chunked_torch(*a))
    assert set(rows) == {"(a) fla", "(b) fla on TF32-truncated q, k", "floor: twin, TF32 rounded to nearest",
                         "floor: twin, TF32 truncated"}
    assert all(len(v) == 2 for ms in rows.values() for v in ms.values())
    assert max(rows["(a) fla"]["A_log grad"]) < 1e-4  # the stand-in is the float32 twin itself
    near, trunc = rows["floor: twin, TF32 rounded to nearest"], rows["floor: twin, TF32 truncated"]
    assert 1e-5 < max(near["dg"]) < 5e-3 and max(trunc["dg"]) > max(near["dg"])
