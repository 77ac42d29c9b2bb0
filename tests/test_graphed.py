"""The CUDA-graphed forward + backward (tokengap/train/graphed.py): the same updates as the plain loop.

On CPU the three CUDA pieces (graph, capture, side stream) are stood in by a graph whose replay re-runs the
captured function and writes into the captured gradient buffers, as a real replay does; that checks the
plumbing (inputs copied in, gradients written and re-attached, micro-batch accumulation, the loss buffer).
The real capture is checked against the plain loop on a CUDA device (skipped without one)."""
from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from tokengap.models import LM
from tokengap.models.config import ConfigError
from tokengap.train.config import load_run_config
from tokengap.train.graphed import GraphedFwdBwd
from tokengap.train.loop import Trainer

from tests.test_train import make_corpus, overrides, train_losses


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def tiny_lm(model: str = "hybrid", **over) -> LM:
    from tokengap.models.__main__ import load
    cfg = load([f"model={model}", "size=tiny", "model.vocab_size=97", "model.n_layers=4", "model.d_model=64",
                "model.n_heads=2", "model.mamba.d_state=8", "model.mamba.headdim=16", "model.mamba.chunk_size=16",
                *(f"model.{k}={v}" for k, v in over.items())])
    torch.manual_seed(0)
    return LM(cfg)


class ReplayGraph:
    """Stand-in for torch.cuda.CUDAGraph: replay recomputes into the buffers the capture allocated."""

    def __init__(self, owner: GraphedFwdBwd):
        self.owner = owner

    def replay(self) -> None:
        o = self.owner
        before = [p.grad for p in o.params]  # a replay writes the buffers, it does not touch .grad
        buffers = o.grads if o.graph is not None else before
        for p, g in zip(o.params, self.start):
            p.grad = None if g is None else g.clone()
        o._fwd_bwd()
        for buf, p, b in zip(buffers, o.params, before):
            buf.copy_(p.grad)
            p.grad = b


class CPUGraphed(GraphedFwdBwd):
    def _new_graph(self):
        return ReplayGraph(self)

    def _capture(self, graph):
        # a real replay starts from the gradients present when the capture began: none, or (a bug) stale ones
        # that every replay would add to
        graph.start = [None if p.grad is None else p.grad.clone() for p in self.params]
        return nullcontext()

    def _on_side_stream(self):
        return nullcontext()


def batches(n: int, accum: int, micro: int, l: int = 32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 97, (n, accum, micro, l + 1), generator=g)
    return [(b[..., :-1].contiguous(), b[..., 1:].contiguous()) for b in ids]


def plain_steps(model, data, lr=1e-2):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for x, y in data:
        total = torch.zeros((), device=x.device)
        for xm, ym in zip(x, y):
            loss = model(xm, ym) / x.shape[0]
            loss.backward()
            total += loss.detach()
        losses.append(float(total))
        opt.step()
        opt.zero_grad(set_to_none=True)
    return losses


def graphed_steps(model, data, cls=CPUGraphed, lr=1e-2):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    step = cls(model, model.parameters(), None)
    losses = []
    for x, y in data:
        losses.append(float(step(x, y)))
        opt.step()
        opt.zero_grad(set_to_none=True)  # as the loop does: the step must re-attach its gradient buffers
    return losses, step


@pytest.mark.parametrize("accum", [1, 2])
def test_graphed_steps_match_the_plain_loop(accum):
    data = batches(3, accum, 2)
    a, b = tiny_lm(), tiny_lm()
    ref = plain_steps(a, data)
    got, step = graphed_steps(b, data)
    assert step.captures == 1
    assert got == pytest.approx(ref, rel=1e-6)
    assert len(set(ref)) == 3  # three different batches: a step that kept reading its first batch would fail
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=n)


def test_graphed_step_refuses_another_shape():
    m = tiny_lm()
    step = CPUGraphed(m, m.parameters(), None)
    (x, y), = batches(1, 1, 2)
    step(x, y)
    with pytest.raises(ValueError, match=r"captured for inputs \(1, 2, 32\)"):
        step(x[:, :, :16], y[:, :, :16])


def test_capture_failure_names_the_switch():
    m = tiny_lm()

    class Failing(CPUGraphed):
        def _capture(self, graph):
            raise RuntimeError("operation not permitted when stream is capturing")

    (x, y), = batches(1, 1, 2)
    with pytest.raises(RuntimeError, match="train.cuda_graph=false"):
        Failing(m, m.parameters(), None)(x, y)


def test_cuda_graph_config_is_checked(corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"train.cuda_graph: Invalid value 'yes', expected one of \[auto, true, false\]"):
        Trainer(load_run_config(overrides(corpus, tmp_path / "a", "train.cuda_graph=yes")))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="train.cuda_graph: true needs a CUDA device"):
            Trainer(load_run_config(overrides(corpus, tmp_path / "b", "train.cuda_graph=true")))
        assert Trainer(load_run_config(overrides(corpus, tmp_path / "c"))).graphed is None  # auto: off on CPU
    # `true` from the command line arrives as "True": it must switch on, not fall through to off
    t = Trainer(load_run_config(overrides(corpus, tmp_path / "d", "train.compile=true", "train.device=cpu")))
    assert t.compile and t.train_model is not t.model


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("model,over", [("transformer", {}), ("hybrid", {}), ("transformer_swa", {"window": 8}),
                                        ("hybrid_gdn", {"gdn.head_dim": 32})])
def test_real_cuda_graph_matches_the_plain_loop(model, over):
    data = [(x.cuda(), y.cuda()) for x, y in batches(3, 2, 2)]
    a, b = tiny_lm(model, **over).cuda(), tiny_lm(model, **over).cuda()
    a.check_kernels(torch.device("cuda"), torch.float32)  # GDN: fla's backward checked before it runs
    ref = plain_steps(a, data)
    got, step = graphed_steps(b, data, cls=GraphedFwdBwd)
    assert step.captures == 1 and len(set(ref)) == 3
    assert got == pytest.approx(ref, rel=1e-4)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-5, msg=n)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("compiled,dtype,micro,rel,mixer", [("false", "fp32", 4, 1e-4, "mamba2"),
                                                            ("true", "fp32", 4, 1e-4, "mamba2"),
                                                            ("true", "bf16", 2, 1e-2, "mamba2"),
                                                            ("true", "bf16", 2, 1e-2, "gdn")])
def test_trainer_with_cuda_graph_matches_without(corpus, tmp_path, compiled, dtype, micro, rel, mixer):
    runs = {}
    for g in ("true", "false"):
        run = tmp_path / g
        t = Trainer(load_run_config(overrides(corpus, run, f"train.cuda_graph={g}", f"train.compile={compiled}",
                                              f"train.dtype={dtype}", f"train.micro_batch_size={micro}",
                                              f"model.pattern=[{mixer},attention]", "model.gdn.head_dim=32",
                                              "train.eval.anneal_at=[0.25]", "train.eval.anneal_frac=0.125")))
        t.run()
        assert (t.graphed is not None) == (g == "true")
        runs[g] = train_losses(run)
    assert [s for s, _ in runs["true"]] == [s for s, _ in runs["false"]]
    for (_, a), (_, b) in zip(runs["true"], runs["false"]):
        assert a == pytest.approx(b, rel=rel, abs=1e-5)
