"""Forward + backward of one optimizer step, captured once in a CUDA graph and replayed every step.

Why: mamba-ssm's SSD forward is five Triton launches behind Python wrappers and an autotuner dispatch; at
T = 2048 the GPU waits on them. A CUDA graph replays every kernel of the step without the CPU (the gain:
BENCHMARKS.md). The optimizer step and gradient clipping stay outside
the graph (a few fused launches), so the optimizer, its state dict, the learning-rate schedule and the
non-finite-loss check work exactly as without the graph.

Contract (what `torch.cuda.graph` needs, and what this class keeps):
- Static shapes: every call passes x, y of the shape of the first call (the loop's batches are fixed-size).
- Static memory: inputs are copied into buffers the graph reads; the loss is written into one the graph
  writes; each parameter's .grad is a tensor the graph writes (overwritten, not accumulated, per replay:
  during capture the grads are None, so the first micro-batch's backward *assigns* them). `__call__`
  re-attaches those tensors, so an optimizer.zero_grad(set_to_none=True) between steps cannot detach them.
- No CPU synchronisation and no new shapes inside the step: warm-up calls on a side stream first (torch.compile
  compiles, the Triton autotuners pick their configs, cached tables are built), then capture.
- Every other tensor the step reads must outlive the graph, which holds its address: the RoPE tables and window
  masks are cached without eviction for that reason (tokengap/models/mixers/attention.py).
- Memory: the graph's private pool keeps one step's activations for the whole run; evaluation and the anneal
  branch's state copies allocate beside it (train.cuda_graph=false if that no longer fits).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Optional

import torch
from torch import Tensor


class GraphedFwdBwd:
    """loss_fn(x, y) -> scalar loss. Call with x, y: (accum, micro, l) int64 on the GPU; runs forward and
    backward of every micro-batch (loss / accum each, gradients summed) and returns the summed loss, a 0-dim
    float32 tensor that the next call overwrites (read it, e.g. float(loss), before calling again)."""

    def __init__(self, loss_fn: Callable[[Tensor, Tensor], Tensor], params, amp_dtype: Optional[torch.dtype],
                 warmup: int = 2):
        self.loss_fn, self.params, self.amp_dtype, self.warmup = loss_fn, list(params), amp_dtype, warmup
        self.graph = None
        self.captures = 0  # how many times the step was captured (1 in a normal run)

    def _fwd_bwd(self) -> None:
        accum = self.x.shape[0]
        self.loss.zero_()
        # autocast's weight-cast cache must stay off under capture (torch.cuda.graph docs); compiled, the casts
        # are inside the graph anyway
        amp = (torch.autocast("cuda", dtype=self.amp_dtype, cache_enabled=False) if self.amp_dtype
               else nullcontext())
        for i in range(accum):
            with amp:
                loss = self.loss_fn(self.x[i], self.y[i]) / accum
            loss.backward()
            self.loss += loss.detach().float()

    # the CUDA-specific pieces, separate so that a CPU test can stand them in
    def _new_graph(self):
        return torch.cuda.CUDAGraph()

    def _capture(self, graph):
        return torch.cuda.graph(graph)

    @contextmanager
    def _on_side_stream(self):
        dev = self.x.device
        s = torch.cuda.Stream(device=dev)
        s.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(s):
            yield
        torch.cuda.current_stream(dev).wait_stream(s)

    def capture(self, x: Tensor, y: Tensor) -> None:
        """Warm up on a side stream, then capture. Leaves parameters unchanged (warm-up gradients are dropped)."""
        self.x, self.y = x.clone(), y.clone()
        self.loss = torch.zeros((), dtype=torch.float32, device=x.device)
        with self._on_side_stream():
            for _ in range(self.warmup):
                for p in self.params:
                    p.grad = None
                self._fwd_bwd()
        for p in self.params:
            p.grad = None  # the capture allocates them in the graph's pool
        graph = self._new_graph()
        try:
            with self._capture(graph):
                self._fwd_bwd()
        except Exception as exc:
            raise RuntimeError(f"train.cuda_graph: capturing the train step failed ({type(exc).__name__}: {exc}); "
                               "run with train.cuda_graph=false") from exc
        self.grads = [p.grad for p in self.params]
        self.graph = graph
        self.captures += 1

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        if self.graph is None:
            self.capture(x, y)
        elif x.shape != self.x.shape or y.shape != self.y.shape:
            raise ValueError(f"graphed step: captured for inputs {tuple(self.x.shape)}, called with {tuple(x.shape)}")
        self.x.copy_(x, non_blocking=True)
        self.y.copy_(y, non_blocking=True)
        self.graph.replay()
        for p, g in zip(self.params, self.grads):
            p.grad = g
        return self.loss
