"""tokengap model zoo: a decoder-only LM over a layer pattern of attention / sliding-window attention / Mamba2.

    from models import ModelConfig, LM
    cfg = ModelConfig(n_layers=8, d_model=512, n_heads=8, pattern=["mamba2", "mamba2", "mamba2", "attention"],
                      vocab_size=16384)
    model = LM(cfg)

Configs for the three zoo models live in conf/model/{transformer,hybrid,recurrent}.yaml, sizes in conf/size/.
`python -m models model=hybrid size=small` prints the resolved layers and parameter counts.
"""
from models.config import ConfigError, MambaConfig, ModelConfig, resolve_layers, validate
from models.io import from_pretrained, save_pretrained
from models.lm import LM, build_model, chunked_cross_entropy

__all__ = ["ConfigError", "MambaConfig", "ModelConfig", "LM", "build_model", "chunked_cross_entropy",
           "resolve_layers", "validate", "from_pretrained", "save_pretrained"]
