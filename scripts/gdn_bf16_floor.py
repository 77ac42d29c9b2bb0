"""What bf16 costs the GDN layer without any kernel: our twin under bf16 autocast against itself in fp32, on CPU,
with the layer of `scripts/gpu_check.py`'s GDN rows (the floor that the row "ours fla-triton vs ours twin(fp32)" is
read against; gpu_check records the same on CUDA).

    python -m scripts.gdn_bf16_floor
"""
from __future__ import annotations

import torch

from tokengap.models import ModelConfig
from tokengap.models.kernels import KernelChoice
from tokengap.models.mixers.gdn import GatedDeltaNet
from scripts.gpu_check import GDN_LM, WithOps, rel, run_layer


def main() -> None:
    cfg = ModelConfig(**{**GDN_LM, "n_layers": 1, "pattern": ["gdn"]})
    torch.manual_seed(0)
    layer = GatedDeltaNet(cfg)
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
    twin = WithOps(layer, ("gdn", "gated_norm", "conv"), KernelChoice(scans="reference"), device="cpu")
    x = torch.randn(2, 1000, 512)
    (ya, ga), (yb, gb) = run_layer(twin, x, torch.float32), run_layer(twin, x, torch.bfloat16)
    print(f"output {rel(yb, ya):.2e}")
    for k in ga:
        print(f"{k:16} {rel(gb[k], ga[k]):.2e}")


if __name__ == "__main__":
    main()
