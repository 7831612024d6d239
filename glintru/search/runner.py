"""Runs a search: the settings checked and planned before Ray starts (settings.py, plan.py), Ray
started or joined (ray_setup.py), the phases run with Tune (phases.py), and the experiment directory
written (results.py). `run_search` is the whole recipe; the command line is cli.py.

Phases: "search" (Optuna over a space, one objective or several, ASHA or FIFO), then "seeds" (the
best finished configurations by validation rerun with several seeds) when seeds are given; or
"grid" alone (every combination of the listed values, times the seeds) when a grid is given. Each
phase is one Tune experiment under EXP_DIR/tune/<phase>, so an interrupted search resumes phase by
phase with Tuner.restore.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

from glintru.outputs import OutputError, OutputLock, locked
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
        try:
            records = phases.run_phases(plan, callbacks)
        except KeyboardInterrupt:
            raise SearchInterrupted(f"stopped; what Tune saved resumes with:\n  {resume_command(plan)}") from None
        finally:
            if "search" in plan.phases and not plan.settings.optuna_storage:
                study.upload_journal(plan.exp_dir, plan.name)
    except SearchInterrupted:
        # what the stopped search holds (its unfinished trials marked so) is analysable at once,
        # without resuming; the resume rewrites the file when it ends
        write_trials(plan)
        raise
    if "search" in plan.phases:
        phases.close_stale_optuna_trials(plan)
    write_trials(plan, records)


def write_trials(plan: Plan, records: list[Any] | None = None) -> None:
    """EXP_DIR/trials.parquet (and the per-user files) of every trial the phases hold so far."""
    if records is None:
        records = [r for phase in plan.phases for r in phases.collect_phase(plan, phase)]
    results.write_results(
        plan.exp_dir,
        records,
        model=plan.space.model,
        dataset=plan.dataset.name,
        default_seed=plan.settings.seed,
        objectives=plan.objectives,
        fingerprint=plan.dataset.fingerprint,
        eval_mode=plan.settings.eval_mode,
    )


def _lock_experiment(exp_dir: str) -> OutputLock | None:
    """The experiment directory's lock, held for the whole search so that a second search of the
    same --name is refused before Ray starts. Cloud storage (s3://, gs://) has no file locks: there
    none is taken, and one search per --name is the user's care."""
    if results.is_uri(exp_dir) and not exp_dir.startswith("file://"):
        return None
    try:
        return locked(exp_dir.removeprefix("file://"), flag="--name").acquire()
    except OutputError as e:
        raise SearchError(str(e)) from None


def run_search(
    settings: SearchSettings,
    callbacks: tuple[Any, ...] = (),
    *,
    typed: Collection[str] | None = None,
    command: Sequence[str] = ("glintru", "search"),
    resume_line: str | None = None,
) -> str:
    """Run (or resume) a search; returns the experiment directory (a path or URI), whose
    trials.parquet console.summary() tabulates. `callbacks`: extra Tune callbacks for every phase
    (benchmarks use one to time trial starts). `typed`: the settings whose flags a command line
    typed, which a resume checks against the experiment whatever their value (see merge_resumed).
    `command`: how the user runs a search, the start of the --resume line an interruption prints;
    `resume_line`: the whole line it prints instead (a study's own command).
    SearchError before Ray starts for settings that cannot work; SearchInterrupted when stopped
    with trials unfinished."""
    if settings.resume:
        settings = load_settings_for_resume(settings, typed)
    plan = plan_search(settings)
    plan.command = list(command)
    plan.resume_line = resume_line
    lock = _lock_experiment(plan.exp_dir)
    try:
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
    finally:
        if lock is not None:
            lock.release()
    log.info("search finished: %s", plan.exp_dir)
    return plan.exp_dir
