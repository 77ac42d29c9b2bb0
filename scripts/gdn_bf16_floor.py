"""What bf16 costs the GDN layer without any kernel: our twin under bf16 autocast against itself in fp32, on CPU,
with the layer, input and upstream gradient of `scripts/gpu_check.py`'s GDN rows (the floor that the row "ours
fla-triton vs ours twin(fp32)" is read against; gpu_check records the same on CUDA).

    python -m scripts.gdn_bf16_floor
"""
from __future__ import annotations

import torch

from models import ModelConfig
from models.kernels import KernelChoice, mixer_ops
from models.mixers.gdn import GatedDeltaNet
from scripts.gpu_check import GDN_LM, rel


def main() -> None:
    cfg = ModelConfig(**{**GDN_LM, "n_layers": 1, "pattern": ["gdn"]})
    torch.manual_seed(0)
    layer = GatedDeltaNet(cfg)
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
    ops = mixer_ops(KernelChoice(scans="reference"), torch.device("cpu"), ("gdn", "gated_norm", "conv"))
    x = torch.randn(2, 1000, 512)

    def run(bf16: bool):
        layer.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = layer(xx, None, ops)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
        (y.float() * g).sum().backward()
        grads = {"input": xx.grad.float()} | {n: p.grad.float() for n, p in layer.named_parameters()}
        return y.float(), grads

    (ya, ga), (yb, gb) = run(False), run(True)
    print(f"output {rel(yb, ya):.2e}")
    for k in ga:
        print(f"{k:16} {rel(gb[k], ga[k]):.2e}")


if __name__ == "__main__":
    main()
