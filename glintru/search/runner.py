"""Runs a search: the settings checked and planned before Ray starts (settings.py, plan.py), Ray
started or joined (ray_setup.py), the phases run with Tune (phases.py), and the experiment directory
written (results.py). `run_search` is the whole recipe; the command line is tune/search.py.

Phases: "search" (Optuna over a space, one objective or several, ASHA or FIFO), then "seeds" (the
best finished configurations by validation rerun with several seeds) when seeds are given; or
"grid" alone (every combination of the listed values, times the seeds) when a grid is given. Each
phase is one Tune experiment under EXP_DIR/tune/<phase>, so an interrupted search resumes phase by
phase with Tuner.restore.
"""

from __future__ import annotations

import logging
from typing import Any

from glintru.search import phases, results, study
from glintru.search.plan import Plan, load_settings_for_resume, plan_search, resume_command
from glintru.search.ray_setup import check_cluster, sigterm_stops_gracefully, start_ray
from glintru.search.settings import SearchError, SearchInterrupted, SearchSettings

log = logging.getLogger("glintru")

__all__ = ["Plan", "SearchError", "SearchInterrupted", "SearchSettings", "plan_search", "run_search"]


def _search_and_collect(plan: Plan, callbacks: tuple[Any, ...]) -> None:
    """The phases on a started Ray, then trials.parquet; the Optuna journal kept with the experiment
    whatever happens."""
    try:
        records = phases.run_phases(plan, callbacks)
    except KeyboardInterrupt:
        raise SearchInterrupted(f"stopped; what Tune saved resumes with:\n  {resume_command(plan)}") from None
    finally:
        if "search" in plan.phases and not plan.settings.optuna_storage:
            study.upload_journal(plan.exp_dir, plan.name)
    if "search" in plan.phases:
        phases.close_stale_optuna_trials(plan)
    results.write_results(
        plan.exp_dir,
        records,
        model=plan.space.model,
        dataset=plan.dataset.name,
        default_seed=plan.settings.seed,
        objectives=plan.objectives,
    )


def run_search(settings: SearchSettings, callbacks: tuple[Any, ...] = ()) -> str:
    """Run (or resume) a search; returns the experiment directory (a path or URI), whose
    trials.parquet console.summary() tabulates. `callbacks`: extra Tune callbacks for every phase
    (benchmarks use one to time trial starts). SearchError before Ray starts for settings that cannot
    work; SearchInterrupted when stopped with trials unfinished."""
    if settings.resume:
        settings = load_settings_for_resume(settings)
    plan = plan_search(settings)

    import ray

    started = start_ray(plan.settings)
    try:
        # after ray.init, which installs a SIGTERM handler of its own in this process
        with sigterm_stops_gracefully():
            check_cluster(plan.settings)
            _search_and_collect(plan, tuple(callbacks))
    finally:
        if started:
            ray.shutdown()
    log.info("search finished: %s", plan.exp_dir)
    return plan.exp_dir
