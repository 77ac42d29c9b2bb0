"""tokengap model zoo: a decoder-only LM over a layer pattern of mixers: attention, sliding-window attention
(swa), Mamba2, Gated DeltaNet (gdn), or any mixer registered in tokengap/models/mixers/.

    from tokengap.models import ModelConfig, LM
    cfg = ModelConfig(n_layers=8, d_model=512, n_heads=8, pattern=["gdn", "gdn", "gdn", "attention"],
                      vocab_size=16384)
    model = LM(cfg)

    tokengap/models/config.py   ModelConfig (Hydra schema), pattern resolution, one-line config errors
    tokengap/models/mixers/     one file a mixer (module, its config, parameter count, FLOPs) and the registry
    tokengap/models/ops/        one folder an op: its Triton kernel (or the library's, wrapped), its PyTorch twin,
                                tests' naive form; tokengap/models/kernels.py picks which runs (a frozen KernelChoice)
    tokengap/models/lm.py       the LM; tokengap/models/io.py save / load

Zoo configs live in tokengap/conf/model/*.yaml, sizes in tokengap/conf/size/.
`python -m tokengap.models model=hybrid_gdn size=small` prints the resolved layers and parameter counts. Names are
imported on first use (PEP 562), so `import tokengap.models.atomic` does not load torch.
"""
import importlib

_CONFIG, _LM, _IO = "tokengap.models.config", "tokengap.models.lm", "tokengap.models.io"
_EXPORTS = {
    "ConfigError": _CONFIG, "MambaConfig": _CONFIG, "GDNConfig": _CONFIG,
    "ModelConfig": _CONFIG, "resolve_layers": _CONFIG, "validate": _CONFIG,
    "KernelChoice": "tokengap.models.kernels",
    "LM": _LM, "build_model": _LM, "chunked_cross_entropy": _LM,
    "from_pretrained": _IO, "save_pretrained": _IO,
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tokengap.models' has no attribute {name!r}")
