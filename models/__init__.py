"""tokengap model zoo: a decoder-only LM over a layer pattern of attention / sliding-window attention / Mamba2.

    from models import ModelConfig, LM
    cfg = ModelConfig(n_layers=8, d_model=512, n_heads=8, pattern=["mamba2", "mamba2", "mamba2", "attention"],
                      vocab_size=16384)
    model = LM(cfg)

Configs for the three zoo models live in conf/model/{transformer,hybrid,recurrent}.yaml, sizes in conf/size/.
`python -m models model=hybrid size=small` prints the resolved layers and parameter counts.

Names are imported on first use (PEP 562), so `import models.atomic` or `models.config` does not load torch.
"""
import importlib

_EXPORTS = {
    "ConfigError": "models.config", "MambaConfig": "models.config", "ModelConfig": "models.config",
    "resolve_layers": "models.config", "validate": "models.config",
    "LM": "models.lm", "build_model": "models.lm", "chunked_cross_entropy": "models.lm",
    "from_pretrained": "models.io", "save_pretrained": "models.io",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
