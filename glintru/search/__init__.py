"""Distributed search: Ray Tune + Optuna over spaces of each model, every trial a Ray Train run."""

from glintru.search.runner import SearchError, SearchSettings, check_settings, run_search
from glintru.search.spaces import SPACES, Space, get_space

__all__ = ["SPACES", "SearchError", "SearchSettings", "Space", "check_settings", "get_space", "run_search"]
