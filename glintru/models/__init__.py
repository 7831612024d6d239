"""Model registry: the one list of models that every consumer reads (CLI, search spaces, tables,
benchmarks, tests). Adding a model is one `ModelSpec` entry here (see CONTRIBUTING.md)."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from glintru.models.presets import DATASET_PRESETS

if TYPE_CHECKING:  # the registry itself stays free of torch: command lines read it to build --help
    import numpy as np

    from glintru.models.base import ModelConfig, SequentialRecommender


@dataclass(frozen=True)
class ModelSpec:
    """What the platform knows of one model besides its code.

    name: the key used on every command line and in result directories.
    target: "module:Class", imported on first use so that one model's import cost stays its own.
    display: the name in tables and plots (the paper's spelling).
    small: overrides that give a small, fast instance on a CPU (tests, `make bench`); together
      with hidden_size/max_length chosen by the caller they must form a valid config.
    """

    name: str
    target: str
    display: str
    small: dict[str, Any] = field(default_factory=dict)


# The paper's row order (Table 2): baselines first, GLINT-RU last.
MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("gru4rec", "glintru.models.gru4rec:GRU4Rec", "GRU4Rec"),
        ModelSpec("bert4rec", "glintru.models.bert4rec:BERT4Rec", "BERT4Rec", {"num_heads": 2, "inner_size": 64}),
        ModelSpec("sasrec", "glintru.models.sasrec:SASRec", "SASRec", {"num_heads": 2, "inner_size": 64}),
        ModelSpec("linrec", "glintru.models.linrec:LinRec", "LinRec", {"num_heads": 2, "inner_size": 64}),
        ModelSpec("lightsans", "glintru.models.lightsans:LightSANs", "LightSANs", {"num_heads": 2, "inner_size": 64}),
        ModelSpec("smlp4rec", "glintru.models.smlp4rec:SMLP4Rec", "SMLP4Rec"),
        ModelSpec("mamba4rec", "glintru.models.mamba4rec:Mamba4Rec", "Mamba4Rec"),
        ModelSpec("glintru", "glintru.models.glintru:GLINTRU", "GLINT-RU", {"num_heads": 2}),
    )
}


def register_model(spec: ModelSpec) -> None:
    """Add a model (a plugin or a test's toy model); its name must be new."""
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} is already registered ({MODELS[spec.name].target})")
    MODELS[spec.name] = spec


def unregister_model(name: str) -> None:
    MODELS.pop(name, None)


def model_names() -> list[str]:
    """Names of the registered models whose module is present, in the paper's order."""
    return [name for name, spec in MODELS.items() if importlib.util.find_spec(spec.target.split(":")[0]) is not None]


def get_spec(name: str) -> ModelSpec:
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[key]


def display_name(name: str) -> str:
    """The paper's spelling of a registered model ("glintru" -> "GLINT-RU"); other names unchanged."""
    spec = MODELS.get(str(name).lower())
    return spec.display if spec else str(name)


def get_model_class(name: str) -> type[SequentialRecommender]:
    module, cls = get_spec(name).target.split(":")
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
    "MODELS",
    "ModelSpec",
    "build_model",
    "display_name",
    "get_model_class",
    "get_spec",
    "model_names",
    "register_model",
    "resolve_config",
    "unregister_model",
]
