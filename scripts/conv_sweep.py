"""Block sizes for models/conv_triton.py: device time of our Triton conv (forward; forward + backward) over 6
block configs against fla's causal_conv1d, at the hybrid `small` (32 x 2048, 1280 channels) and `base`
(16 x 2048, 1792 channels) shapes, on the strided view that in_proj's split gives. GPU only.

Device time = the sum of all kernel durations the profiler records, per call (10 calls after 3 warm-up). Wall
time with a sync after each call, which an earlier version of this script took, adds the CPU cost of launching
(autograd, Triton's launcher) to sub-millisecond kernels and ranked the configs differently (BENCHMARKS.md).

    python -m scripts.conv_sweep          # log: results/gpu/conv_device_time.log
"""
from __future__ import annotations

import sys

import torch
from torch.profiler import ProfilerActivity, profile


import tokengap.models.ops.conv.kernel as ct
from tokengap.models.ops.conv.external import wrap_fla_conv
from tokengap.models.ops.external import fla_triton_conv

SHAPES = {"small": (32, 1280, 2320, 1024), "base": (16, 1792, 3352, 1536)}  # batch, channels, in_proj width, offset
CONFIGS = [(16, 64, 2), (32, 64, 2), (16, 128, 2), (32, 32, 2), (64, 64, 4), (32, 128, 4)]  # BLOCK_L, BLOCK_C, warps


def device_ms(fn, n: int = 10) -> float:
    """Milliseconds of GPU kernel time per call of fn."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    return sum(max(e.self_device_time_total, 0) for e in prof.key_averages()) / n / 1e3


def main() -> int:
    fn, why = fla_triton_conv()
    if fn is None or not torch.cuda.is_available():
        print(f"needs CUDA and fla ({why})", file=sys.stderr)
        return 2
    fla = wrap_fla_conv(fn)
    for name, (batch, chans, width, off) in SHAPES.items():
        u = torch.randn(batch, 2048, width, device="cuda", dtype=torch.bfloat16)
        w = (torch.randn(chans, 4, device="cuda") * 0.5).requires_grad_(True)
        bias = (torch.randn(chans, device="cuda") * 0.1).requires_grad_(True)
        dy = torch.randn(batch, 2048, chans, device="cuda", dtype=torch.bfloat16)

        def timed(conv, backward: bool):
            def step():
                x = u[..., off:off + chans].detach().requires_grad_(backward)  # strided, as in the model
                y = conv(x, w, bias)
                if backward:
                    y.backward(dy)
            return device_ms(step)

        print(f"{name} fla: fwd {timed(fla, False):.3f} fwd+bwd {timed(fla, True):.3f} (device ms)", flush=True)
        for bl, bc, nw in CONFIGS:
            conv = lambda x, w_, b_: ct.causal_conv1d_triton(x, w_, b_, True, bl, bc, nw)  # noqa: E731
            print(f"{name} ours BL={bl:3d} BC={bc:3d} warps={nw}: fwd {timed(conv, False):.3f} "
                  f"fwd+bwd {timed(conv, True):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
