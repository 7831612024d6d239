"""Search spaces: one define-by-run function per model, sampling an Optuna trial.

A space function suggests values with `trial.suggest_*` and returns nothing (or constants to add);
every suggested name is a model config field, a TrainConfig field (lr, weight_decay, ...) or a
label of the space (e.g. GLINT-RU's `ablation`, which stands for several use_* flags).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from glintru.models.gate_activations import PAPER_GATE_ACTIVATIONS

# The gate study samples the activations Table 6 compares (see glintru.models.gate_activations).
GATE_ACTIVATIONS = PAPER_GATE_ACTIVATIONS

# RQ3/RQ4 of the paper remove one component at a time; removing GRU and attention together would
# leave no expert, so that combination is not in the list.
ABLATIONS: dict[str, dict[str, bool]] = {
    "full": {},
    "no_gru": {"use_gru": False},
    "no_attention": {"use_attention": False},
    "no_conv": {"use_conv": False},
    "no_gated_mlp": {"use_gated_mlp": False},
}
_COMPONENTS = ("use_gru", "use_attention", "use_conv", "use_gated_mlp")

# Keys a trial config may carry that are bookkeeping, not settings.
META_KEYS = frozenset({"source_trial"})


def ablation_flags(name: str) -> dict[str, bool]:
    """The four GLINT-RU component switches for an ablation name."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; choose one of {', '.join(ABLATIONS)}")
    flags = {c: True for c in _COMPONENTS}
    flags.update(ABLATIONS[name])
    return flags


# -- building blocks shared by the spaces ---------------------------------------------------------


def _common(
    trial: Any,
    *,
    hidden: tuple[int, ...] = (32, 64, 128, 256),
    layers: tuple[int, int] = (1, 4),
    dropout: tuple[float, float] = (0.0, 0.5),
) -> None:
    trial.suggest_categorical("hidden_size", list(hidden))
    trial.suggest_int("num_layers", *layers)
    trial.suggest_float("dropout", *dropout, step=0.05)
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)


def _heads(trial: Any) -> None:
    # every hidden size above is a multiple of 8, so each choice divides it
    trial.suggest_categorical("num_heads", [1, 2, 4, 8])


# -- the spaces -----------------------------------------------------------------------------------


def glintru_space(trial: Any) -> None:
    """GLINT-RU: kernel size, width, depth, dropouts, lr, weight decay, gate activation, ablations."""
    # a lightweight model: the paper's widths are 64 and 128 and its depth one layer; deeper
    # stacks are a study of their own (a --grid over num_layers), not a search axis
    _common(trial, hidden=(32, 64, 128), layers=(1, 2))
    trial.suggest_float("attention_dropout", 0.0, 0.5, step=0.05)
    trial.suggest_categorical("weight_decay", [0.0, 1e-6, 1e-5, 1e-4])
    trial.suggest_int("kernel_size", 1, 9, step=2)
    trial.suggest_categorical("gate_activation", list(GATE_ACTIVATIONS))
    trial.suggest_categorical("ablation", list(ABLATIONS))


def gru4rec_space(trial: Any) -> None:
    """GRU4Rec: width, stacked GRU layers, dropout, lr."""
    _common(trial, layers=(1, 3))


def sasrec_space(trial: Any) -> None:
    """SASRec: width, blocks, heads, feed-forward size, dropout, lr."""
    _common(trial)
    _heads(trial)
    trial.suggest_categorical("inner_size", [64, 128, 256, 512])


def bert4rec_space(trial: Any) -> None:
    """BERT4Rec: the SASRec space plus the cloze mask ratio."""
    sasrec_space(trial)
    trial.suggest_float("mask_ratio", 0.1, 0.6, step=0.05)


def linrec_space(trial: Any) -> None:
    """LinRec: SASRec's space with linear attention."""
    sasrec_space(trial)


def lightsans_space(trial: Any) -> None:
    """LightSANs: SASRec's space plus the number of latent interests."""
    sasrec_space(trial)
    trial.suggest_int("k_interests", 2, 10)


def smlp4rec_space(trial: Any) -> None:
    """SMLP4Rec: width, layers, dropout, lr, inner width of the mixing MLPs."""
    _common(trial)
    trial.suggest_int("expansion_factor", 1, 4)


def mamba4rec_space(trial: Any) -> None:
    """Mamba4Rec: width, layers, dropout, lr, SSM state size, conv width, expansion."""
    _common(trial, layers=(1, 3))
    trial.suggest_categorical("d_state", [8, 16, 32, 64])
    trial.suggest_int("d_conv", 2, 4)
    trial.suggest_int("expand", 1, 4)


@dataclass(frozen=True)
class Space:
    """A named search space over one model."""

    name: str
    model: str
    sample: Callable[[Any], Mapping[str, Any] | None]
    # config keys that stand for several settings, e.g. ablation -> use_* flags
    labels: Mapping[str, Callable[[Any], dict[str, Any]]] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        return (self.sample.__doc__ or "").strip().splitlines()[0]

    def to_overrides(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A trial config as `train()` overrides: labels expanded, bookkeeping keys dropped."""
        out: dict[str, Any] = {}
        for key, value in config.items():
            if key in self.labels:
                out.update(self.labels[key](value))
            elif key not in META_KEYS:
                out[key] = value
        return out

    def sampler(self, fixed: Mapping[str, Any] | None = None) -> Callable[[Any], Mapping[str, Any] | None]:
        """The define-by-run function with the `fixed` settings taken out of the search."""
        if not fixed:
            return self.sample
        return functools.partial(_sample_with_fixed, self.sample, dict(fixed))

    def describe(self) -> list[Param]:
        """The parameters the space suggests, with their ranges (by a dry run of the function)."""
        recorder = _Recorder()
        self.sample(recorder)
        return recorder.params


SPACES: dict[str, Space] = {
    "glintru": Space("glintru", "glintru", glintru_space, labels={"ablation": ablation_flags}),
    "gru4rec": Space("gru4rec", "gru4rec", gru4rec_space),
    "sasrec": Space("sasrec", "sasrec", sasrec_space),
    "bert4rec": Space("bert4rec", "bert4rec", bert4rec_space),
    "linrec": Space("linrec", "linrec", linrec_space),
    "lightsans": Space("lightsans", "lightsans", lightsans_space),
    "smlp4rec": Space("smlp4rec", "smlp4rec", smlp4rec_space),
    "mamba4rec": Space("mamba4rec", "mamba4rec", mamba4rec_space),
}


def get_space(name: str) -> Space:
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; choose one of {', '.join(SPACES)} (or `--space list`)")
    return SPACES[name]


def resolve_space(name: str) -> Space:
    """The space `name` whose model can be built here (its module imports); ValueError naming why not."""
    from glintru.models import get_model_class

    space = get_space(name)
    try:
        get_model_class(space.model)
    except ImportError as e:
        raise ValueError(f"model {space.model!r} of space {space.name!r} cannot be imported: {e}") from None
    return space


class _FixedTrial:
    """A trial whose suggestions for fixed names return the fixed value without asking Optuna."""

    def __init__(self, trial: Any, fixed: dict[str, Any]):
        self._trial = trial
        self._fixed = fixed

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._fixed[name] if name in self._fixed else self._trial.suggest_categorical(name, choices)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._fixed[name] if name in self._fixed else self._trial.suggest_int(name, *args, **kwargs)

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._fixed[name] if name in self._fixed else self._trial.suggest_float(name, *args, **kwargs)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._trial, item)


def _sample_with_fixed(sample: Callable[[Any], Any], fixed: dict[str, Any], trial: Any) -> Any:
    return sample(_FixedTrial(trial, fixed))


# -- describing a space without Optuna ------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # categorical | int | float
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    def __str__(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        rng = f"[{self.low:g}, {self.high:g}]"
        extra = " log" if self.log else (f" step {self.step:g}" if self.step not in (None, 1) else "")
        return f"{self.name} {self.kind} {rng}{extra}"


class _Recorder:
    """Stands in for an Optuna trial: records every suggestion and answers with its first value."""

    def __init__(self) -> None:
        self.params: list[Param] = []

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.params.append(Param(name, "categorical", tuple(choices)))
        return choices[0]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        self.params.append(Param(name, "int", low=low, high=high, step=step, log=log))
        return low

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        self.params.append(Param(name, "float", low=low, high=high, step=step, log=log))
        return low


def format_spaces() -> str:
    """The text of `--space list`: every space, its model and its parameter ranges."""
    lines = []
    for space in SPACES.values():
        lines.append(f"{space.name}  (model {space.model}): {space.doc}")
        for p in space.describe():
            lines.append(f"    {p}")
        for label in space.labels:
            if label == "ablation":
                lines.append(
                    "    ablation: "
                    + "; ".join(
                        f"{k} = {', '.join(f'{f}={v}' for f, v in ABLATIONS[k].items()) or 'all components'}"
                        for k in ABLATIONS
                    )
                )
    return "\n".join(lines)
