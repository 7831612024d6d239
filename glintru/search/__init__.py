"""Distributed search: Ray Tune + Optuna over spaces of each model; a trial trains in its Tune
trainable, or on Ray Train DDP workers when it has several."""

from glintru.search.runner import SearchError, SearchSettings, check_settings, run_search
from glintru.search.spaces import SPACES, Space, get_space

__all__ = ["SPACES", "SearchError", "SearchSettings", "Space", "check_settings", "get_space", "run_search"]
