"""Block sizes for models/conv_triton.py: time our Triton conv (forward; forward + backward) over 27 block
configs against fla's causal_conv1d, at the hybrid `small` (32 x 2048, 1280 channels) and `base` (16 x 2048,
1792 channels) shapes, on the strided view that in_proj's split gives. GPU only; median of 20 after 3 warm-up.

    python scripts/conv_sweep.py          # log: results/gpu/conv_sweep.log
"""
from __future__ import annotations

import itertools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import models.conv_triton as ct  # noqa: E402
from bench import cuda_times_ms  # noqa: E402
from models.kernels import _wrap_fla_conv, fla_triton_conv  # noqa: E402

SHAPES = {"small": (32, 1280, 2320), "base": (16, 1792, 3352)}  # batch, conv channels, in_proj width
CONFIGS = list(itertools.product((16, 32, 64), (32, 64, 128), (2, 4, 8)))  # BLOCK_L, BLOCK_C, num_warps


def median_ms(fn, n: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    return statistics.median(cuda_times_ms(fn, n))


def main() -> int:
    fn, why = fla_triton_conv()
    if fn is None or not torch.cuda.is_available():
        print(f"needs CUDA and fla ({why})", file=sys.stderr)
        return 2
    fla = _wrap_fla_conv(fn)
    for name, (batch, chans, width) in SHAPES.items():
        u = torch.randn(batch, 2048, width, device="cuda", dtype=torch.bfloat16)
        w = (torch.randn(chans, 4, device="cuda") * 0.5).requires_grad_(True)
        bias = (torch.randn(chans, device="cuda") * 0.1).requires_grad_(True)
        dy = torch.randn(batch, 2048, chans, device="cuda", dtype=torch.bfloat16)

        def timed(conv, backward: bool):
            def step():
                x = u[..., 1024:1024 + chans].detach().requires_grad_(backward)  # strided, as in the model
                y = conv(x, w, bias)
                if backward:
                    y.backward(dy)
            return median_ms(step)

        res = {"fla": (timed(fla, False), timed(fla, True))}
        print(f"{name} fla: fwd {res['fla'][0]:.3f} ms  fwd+bwd {res['fla'][1]:.3f} ms", flush=True)
        for bl, bc, nw in CONFIGS:
            conv = lambda x, w_, b_: ct.causal_conv1d_triton(x, w_, b_, True, bl, bc, nw)  # noqa: E731
            res[(bl, bc, nw)] = (timed(conv, False), timed(conv, True))
            print(f"{name} ours BL={bl:3d} BC={bc:3d} warps={nw}: fwd {res[(bl, bc, nw)][0]:.3f} ms  "
                  f"fwd+bwd {res[(bl, bc, nw)][1]:.3f} ms", flush=True)
        best = min((k for k in res if k != "fla"), key=lambda k: res[k][1])
        print(f"{name} BEST {best}: {res[best]} vs fla {res['fla']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
