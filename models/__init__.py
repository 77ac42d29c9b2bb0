"""tokengap model zoo: a decoder-only LM over a layer pattern of mixers: attention, sliding-window attention
(swa), Mamba2, Gated DeltaNet (gdn), or any mixer registered in models/mixers/.

    from models import ModelConfig, LM
    cfg = ModelConfig(n_layers=8, d_model=512, n_heads=8, pattern=["gdn", "gdn", "gdn", "attention"],
                      vocab_size=16384)
    model = LM(cfg)

    models/config.py    ModelConfig (Hydra schema), pattern resolution, one-line config errors
    models/mixers/      one file a mixer (module, its config, parameter count, FLOPs) and the registry
    models/ops/         one folder an op: its Triton kernel (or the library's, wrapped), its PyTorch twin, tests'
                        naive form; models/kernels.py picks which runs (a frozen KernelChoice)
    models/lm.py        the LM; models/io.py save / load

Zoo configs live in conf/model/*.yaml, sizes in conf/size/. `python -m models model=hybrid_gdn size=small` prints
the resolved layers and parameter counts. Names are imported on first use (PEP 562), so `import models.atomic`
does not load torch.
"""
import importlib

_EXPORTS = {
    "ConfigError": "models.config", "MambaConfig": "models.config", "GDNConfig": "models.config",
    "ModelConfig": "models.config", "resolve_layers": "models.config", "validate": "models.config",
    "KernelChoice": "models.kernels",
    "LM": "models.lm", "build_model": "models.lm", "chunked_cross_entropy": "models.lm",
    "from_pretrained": "models.io", "save_pretrained": "models.io",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
