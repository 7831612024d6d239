"""The samplers behind --sampler: each pickles (Tune snapshots the searcher) and, read back,
proposes what the original would have proposed."""

from __future__ import annotations

import pickle
import threading

import optuna
import pytest

from glintru.search.objectives import MULTI_SAMPLERS, SINGLE_SAMPLERS
from glintru.search.samplers import NSGAIISampler, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", -2.0, 2.0)
    k = trial.suggest_categorical("k", [1, 3, 5])
    return x * x + k, abs(x - 1) - k


def _proposals(sampler: optuna.samplers.BaseSampler, n_objectives: int, n_trials: int) -> list[dict]:
    study = optuna.create_study(sampler=sampler, directions=["minimize"] * n_objectives)
    if n_objectives == 1:
        study.optimize(lambda t: _objective(t)[0], n_trials=n_trials)
    else:
        study.optimize(_objective, n_trials=n_trials)
    return [t.params for t in study.trials]


@pytest.mark.parametrize(
    "name,n_objectives",
    [(n, 1) for n in SINGLE_SAMPLERS] + [(n, 2) for n in MULTI_SAMPLERS],
)
def test_every_sampler_pickles_and_samples_as_before(name, n_objectives):
    if name == "cmaes":
        pytest.importorskip("cmaes")
    sampler = make_sampler(name, seed=3)
    copy = pickle.loads(pickle.dumps(sampler))
    assert type(copy) is type(sampler)
    n = 12 if name != "gp" else 6
    assert _proposals(copy, n_objectives, n) == _proposals(make_sampler(name, seed=3), n_objectives, n)


def test_nsga2_leaves_its_lock_out_of_the_pickle_and_gets_a_fresh_one():
    sampler = make_sampler("nsga2", seed=0)
    assert isinstance(sampler, optuna.samplers.NSGAIISampler)
    locks = {k: v for k, v in vars(sampler).items() if isinstance(v, type(threading.Lock()))}
    plain = optuna.samplers.NSGAIISampler(seed=0)
    if not locks:  # an Optuna before 5 holds none: the plain sampler pickles too
        pickle.dumps(plain)
        return
    with pytest.raises(TypeError, match="lock"):
        pickle.dumps(plain)  # why the subclass exists
    copy = pickle.loads(pickle.dumps(sampler))
    for key, lock in locks.items():
        fresh = getattr(copy, key)
        assert isinstance(fresh, type(lock)) and fresh is not lock and not fresh.locked()
    # the copy runs past its first generation (population 50), where NSGA-II takes the lock
    proposals = _proposals(copy, 2, 60)
    assert len(proposals) == 60


def test_a_reentrant_lock_comes_back_reentrant():
    sampler = NSGAIISampler(seed=0)
    sampler.extra_lock = threading.RLock()
    copy = pickle.loads(pickle.dumps(sampler))
    assert isinstance(copy.extra_lock, type(threading.RLock()))
    with copy.extra_lock, copy.extra_lock:  # re-entered: an RLock, not a plain Lock
        pass


def test_an_unknown_sampler_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown sampler 'anneal'; choose one of tpe, random, gp, cmaes, nsga2"):
        make_sampler("anneal", seed=0)
