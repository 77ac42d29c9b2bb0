"""Saving and loading zoo models (safetensors + config.json), atomically, with a checksum verified on load."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import torch

from tokengap.models.atomic import atomic_write, atomic_write_text, sha256_file
from tokengap.models.config import from_dict, to_dict
from tokengap.models.lm import LM

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_pretrained(model: LM, directory: Union[str, Path], extra: Optional[dict] = None) -> Path:
    """Write model.safetensors, then config.json (model config, resolved layers, weights sha256, `extra`)."""
    from safetensors.torch import save_model

    directory = Path(directory)
    atomic_write(directory / WEIGHTS, lambda tmp: save_model(model, tmp))
    meta = {
        "model": to_dict(model.cfg),
        "layers": model.layer_types,
        "non_embedding_params": model.num_params(non_embedding=True),
        "params": model.num_params(non_embedding=False),
        "weights_sha256": sha256_file(directory / WEIGHTS),
        **(extra or {}),
    }
    atomic_write_text(directory / CONFIG, json.dumps(meta, indent=2))
    return directory


def read_config(directory: Union[str, Path]) -> dict:
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG} (not a tokengap model directory)")
    return json.loads(path.read_text())


def from_pretrained(directory: Union[str, Path], device: Union[str, torch.device] = "cpu",
                    kernels: Optional[str] = None, verify: bool = True) -> LM:
    """Load a model saved by `save_pretrained`; refuses weights whose sha256 differs from config.json."""
    from safetensors.torch import load_model

    directory = Path(directory)
    meta = read_config(directory)
    weights = directory / WEIGHTS
    if verify and meta.get("weights_sha256"):
        actual = sha256_file(weights)
        if actual != meta["weights_sha256"]:
            raise ValueError(f"{weights}: sha256 {actual[:16]}… does not match config.json {meta['weights_sha256'][:16]}…")
    cfg = from_dict(meta["model"])
    if kernels is not None:
        cfg.kernels = kernels
    with torch.device("meta"):
        model = LM(cfg)
    model = model.to_empty(device=device)
    if cfg.tie_embeddings:  # to_empty may allocate the two views separately: tie them again before loading
        model.lm_head.weight = model.embed.weight
    load_model(model, str(weights), strict=True, device=str(device))
    return model
