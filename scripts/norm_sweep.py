"""Device time of the fused residual add + RMSNorm (models/norm_triton.py) per tile / warps / persistent programs,
against inductor's compiled twin, at the zoo's shapes (GPU only).

    python -m scripts.norm_sweep [--shapes small base]

Autocast's case: x float32 (the residual stream), y bf16 (a branch output), h out in bf16; the backward gets a
float32 gradient for s and a bf16 one for h and writes dx (float32), dy (bf16) and dweight. Forward and backward
are timed separately (CUDA events, median of 5 replays of a CUDA graph of 20 calls), and against the memory traffic each must move:
forward reads x, y and writes s, h (4 + 2 + 4 + 2 bytes an element); backward reads s, dh, ds and writes dx, dy
(4 + 2 + 4 + 4 + 2). The twin (x + y, F.rms_norm, .to(bf16), torch.compile) is timed forward +
backward together, in one graph as the model has it; its dy cast may fuse here although it did not in the model.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F


import tokengap.models.ops.add_norm.kernel as nt

SHAPES = {"small": (32 * 2048, 512), "base": (16 * 2048, 768)}  # (tokens, d_model) of the bench's train steps


def cuda_ms(fn, calls=20, repeats=5) -> float:
    """Device ms per call: `calls` calls captured in a CUDA graph (no launch or Python overhead), replayed."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up (compilation) off the capture
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / calls)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", nargs="+", default=["small", "base"], choices=sorted(SHAPES))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for shape in args.shapes:
        n, d = SHAPES[shape]
        g = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(n, d, device="cuda", generator=g)
        y = torch.randn(n, d, device="cuda", generator=g).bfloat16()
        w = torch.rand(d, device="cuda", generator=g) + 0.5
        ds = torch.randn(n, d, device="cuda", generator=g)
        dh = torch.randn(n, d, device="cuda", generator=g).bfloat16()
        fwd_bytes, bwd_bytes = n * d * (4 + 2 + 4 + 2), n * d * (4 + 2 + 4 + 4 + 2)
        print(f"\n{shape}: {n} rows x {d}; traffic forward {fwd_bytes / 1e6:.0f} MB, backward {bwd_bytes / 1e6:.0f} MB")

        def twin(x, y, w):
            s = x + y
            return s, F.rms_norm(s, (d,), w, 1e-5).to(torch.bfloat16)
        compiled = torch.compile(twin)
        xs, ys, ws = (t.clone().requires_grad_(True) for t in (x, y, w))

        def twin_step():
            s, h = compiled(xs, ys, ws)
            torch.autograd.backward([s, h], [ds, dh])
            for t in (xs, ys, ws):
                t.grad = None
        ms = cuda_ms(twin_step)
        print(f"  twin compiled, forward + backward: {ms * 1e3:7.1f} us")
        best = None
        for tile in (1024, 2048, 4096, 8192, 16384):
            for warps in (4, 8, 16):
                for per_sm in (2, 4, 8):
                    nt.PROGRAMS_PER_SM = per_sm
                    s, h, rstd = torch.ops.tokengap.add_rms_norm_fwd(x, y, w, 1e-5, torch.bfloat16, tile, warps)
                    f_ms = cuda_ms(lambda: torch.ops.tokengap.add_rms_norm_fwd(x, y, w, 1e-5, torch.bfloat16, tile, warps))
                    b_ms = cuda_ms(lambda: torch.ops.tokengap.add_rms_norm_bwd(s, rstd, w, dh, ds, torch.float32, torch.bfloat16, tile, warps))
                    tot = f_ms + b_ms
                    print(f"  tile {tile:5d} warps {warps} programs/SM {per_sm}: forward {f_ms * 1e3:6.1f} us "
                          f"({fwd_bytes / f_ms / 1e6:5.0f} GB/s), backward {b_ms * 1e3:6.1f} us "
                          f"({bwd_bytes / b_ms / 1e6:5.0f} GB/s), sum {tot * 1e3:6.1f}", flush=True)
                    if best is None or tot < best[0]:
                        best = (tot, tile, warps, per_sm)
        print(f"  best: tile {best[1]} warps {best[2]} programs/SM {best[3]}: {best[0] * 1e3:.1f} us "
              f"(module defaults: tile {nt.TILE}, warps {nt.NUM_WARPS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
