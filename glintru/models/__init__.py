"""Model registry: every model by name, its config class and presets."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import numpy as np

from glintru.models.base import DATASET_PRESETS, ModelConfig, SequentialRecommender

# name -> "module:Class"; imported on first use so that one model's import cost stays its own.
_REGISTRY: dict[str, str] = {
    "glintru": "glintru.models.glintru:GLINTRU",
    "gru4rec": "glintru.models.gru4rec:GRU4Rec",
    "sasrec": "glintru.models.sasrec:SASRec",
    "bert4rec": "glintru.models.bert4rec:BERT4Rec",
    "linrec": "glintru.models.linrec:LinRec",
    "lightsans": "glintru.models.lightsans:LightSANs",
    "smlp4rec": "glintru.models.smlp4rec:SMLP4Rec",
    "mamba4rec": "glintru.models.mamba4rec:Mamba4Rec",
}


def model_names() -> list[str]:
    """Names of the registered models whose module is present."""
    names = []
    for name, target in _REGISTRY.items():
        if importlib.util.find_spec(target.split(":")[0]) is not None:
            names.append(name)
    return names


def get_model_class(name: str) -> type[SequentialRecommender]:
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[key].split(":")
    return getattr(importlib.import_module(module), cls)


def resolve_config(name: str, preset: str | None = None, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The model's config: defaults < dataset preset < model preset < overrides."""
    return get_model_class(name).config_class.from_preset(preset, **(overrides or {}))


def build_model(
    name: str,
    n_items: int,
    config: ModelConfig | None = None,
    item_features: dict[str, tuple[np.ndarray, int]] | None = None,
) -> SequentialRecommender:
    cls = get_model_class(name)
    cfg = config if config is not None else cls.config_class()
    if not isinstance(cfg, cls.config_class):
        raise TypeError(f"{name} expects a {cls.config_class.__name__}, got {type(cfg).__name__}")
    return cls(cfg, n_items, item_features=item_features)


__all__ = [
    "DATASET_PRESETS",
    "ModelConfig",
    "SequentialRecommender",
    "build_model",
    "get_model_class",
    "model_names",
    "resolve_config",
]
