"""The Optuna samplers behind `--sampler`, each in a form that pickles.

Tune pickles the searcher, sampler included, into the experiment's snapshot when a search starts
and at each checkpoint of the driver (that is what `--resume` reads back). Optuna 5's genetic
samplers (NSGA-II) hold a thread lock that guards a cache, and no pickler takes a lock; the
subclasses here leave locks out of the pickle and make fresh ones when it is read back. A lock
guards nothing across processes, so no state is lost. `tests/search/test_samplers.py` pickles
every sampler of `make_sampler`, so a sampler that gains a lock in a later Optuna fails there
first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import optuna

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


@dataclass(frozen=True)
class _LockSlot:
    """Where a lock stood in a pickled object, and of which kind."""

    reentrant: bool


class FreshLocks:
    """Mixin: pickle every attribute but thread locks; unpickling makes new locks in their place."""

    def __getstate__(self) -> dict[str, Any]:
        return {
            key: _LockSlot(isinstance(value, _LOCK_TYPES[1])) if isinstance(value, _LOCK_TYPES) else value
            for key, value in vars(self).items()
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(
            {
                key: (threading.RLock() if value.reentrant else threading.Lock())
                if isinstance(value, _LockSlot)
                else value
                for key, value in state.items()
            }
        )


class NSGAIISampler(FreshLocks, optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable (see the module docstring); it samples exactly as Optuna's."""


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler behind --sampler (a name `objectives.check_sampler` accepted)."""
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),  # multi-objective TPE with several
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        # CMA-ES samples numbers; categorical choices of the space fall back to random sampling
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
        "nsga2": lambda: NSGAIISampler(seed=seed),
    }
    if name not in samplers:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(samplers)}")
    return samplers[name]()
