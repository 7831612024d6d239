"""Distributed search: Ray Tune + Optuna over spaces of each model; a trial trains in its Tune
trainable, or on Ray Train DDP workers when it has several."""

from glintru.search.plan import Plan, plan_search
from glintru.search.runner import run_search
from glintru.search.settings import SearchError, SearchInterrupted, SearchSettings, validate_settings
from glintru.search.spaces import SPACES, Space, get_space

__all__ = [
    "SPACES",
    "Plan",
    "SearchError",
    "SearchInterrupted",
    "SearchSettings",
    "Space",
    "get_space",
    "plan_search",
    "run_search",
    "validate_settings",
]
