"""The phases of a search, each one Tune experiment under EXP_DIR/tune/<phase>: "search" (Optuna over
a space, one objective or several, ASHA or FIFO), "seeds" (the best finished configurations rerun
with several seeds) and "grid" (every combination of the listed values, times the seeds). A phase
that was interrupted resumes with Tuner.restore; experiment.json records which phases are done."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any

import glintru
from glintru.provenance import source_revision
from glintru.search import results, study
from glintru.search.plan import Plan, resume_command
from glintru.search.ray_setup import HEAD_RESOURCE
from glintru.search.results import VARIANT_KEY, TrialRecord, join
from glintru.search.settings import SearchError, SearchInterrupted, SearchSettings, grid_configs, trial_train_config

log = logging.getLogger("glintru")


# -- what a trial runs and reserves ---------------------------------------------------------------


def trial_resources(s: SearchSettings) -> dict[str, float]:
    """What Tune reserves for one trial's own process (`s.gpus_per_trial` resolved)."""
    if s.workers_per_trial == 1:
        # the trial trains in its own process: Tune holds its CPUs and GPU share (0.25: four
        # trials per GPU) and frees them the moment the trial ends
        res = {"CPU": s.cpus_per_trial}
        if s.gpus_per_trial:
            res["GPU"] = s.gpus_per_trial
        return res
    # a DDP trial's process only drives Train, whose workers hold the CPUs and GPUs; Tune needs a
    # non-empty request, so it asks for one byte of memory
    res = {"memory": 1}
    if s.address is not None:
        res[HEAD_RESOURCE] = 1
    return res


def trial_spec(plan: Plan) -> Any:
    """The TrialSpec every trial of the plan shares."""
    from glintru.search.trainable import TrialSpec

    s = plan.settings
    gpus = s.gpus_per_trial or 0.0
    return TrialSpec(
        space=plan.space.name,
        model=plan.space.model,
        train_storage=plan.train_storage,
        preset=s.preset,
        overrides=dict(s.overrides),
        train_config=trial_train_config(s, plan.objectives),
        workers=s.workers_per_trial,
        cpus_per_worker=s.cpus_per_trial / s.workers_per_trial,
        gpus_per_worker=gpus / s.workers_per_trial,
        log_level="INFO" if s.verbose >= 2 else "WARNING",
        end_metrics=tuple(o.metric for o in plan.objectives if o.k is None),
        objective_metrics=tuple(o.metric for o in plan.objectives),
    )


def _trainable(plan: Plan, shared: Any) -> Any:
    from ray import tune

    from glintru.search.trainable import run_trial

    trainable = tune.with_parameters(run_trial, data=shared, spec=trial_spec(plan))
    return tune.with_resources(trainable, trial_resources(plan.settings))


def _trial_dirname(trial: Any) -> str:
    return trial.trial_id


# -- what a phase searches ------------------------------------------------------------------------


def optuna_storage(plan: Plan) -> Any:
    """The Optuna study's storage: --optuna-storage (an RDB URL or a journal file), else the
    experiment's journal (study.py)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    target = plan.settings.optuna_storage
    if target and "://" in target:
        return optuna.storages.RDBStorage(target)
    return JournalStorage(JournalFileBackend(target or study.journal_path(plan.exp_dir, plan.name)))


def seed_variants(plan: Plan, search: list[TrialRecord]) -> list[dict[str, Any]]:
    """The best search configurations (by validation, among trials that trained to their end)
    times every seed."""
    rows = results.trials_frame(
        (
            results.build_row(r, model=plan.space.model, dataset=plan.dataset.name, default_seed=plan.settings.seed)
            for r in search
        ),
        plan.metric,
    )
    best = results.best_rows(rows, plan.settings.top_k, plan.metric, plan.mode)
    if best.empty:
        raise SearchError("no search trial finished training, so there is no configuration to rerun with --seeds")
    configs = {r.trial_id: results.flat_config(r.config) for r in search}
    return [
        {**configs[tid], "seed": int(seed), "source_trial": tid}
        for tid in best["trial_id"]
        for seed in plan.settings.seeds
    ]


def _search_alg(plan: Plan) -> Any:
    """Optuna over the space: one objective, or several (Tune hands Optuna each trial's last
    result, where the costs of a finished run are)."""
    from ray.tune.search.optuna import OptunaSearch

    from glintru.search.samplers import make_sampler

    s = plan.settings
    many = len(plan.objectives) > 1
    # a define-by-run function of an Optuna trial (typed loosely in spaces.py, which imports no Optuna)
    space: Any = plan.space.sampler(s.overrides)
    return OptunaSearch(
        space=space,
        metric=[o.metric for o in plan.objectives] if many else plan.metric,
        mode=[o.mode for o in plan.objectives] if many else plan.mode,
        sampler=make_sampler(plan.sampler, s.seed),
        study_name=plan.name,
        storage=optuna_storage(plan),
    )


def _param_space(plan: Plan, phase: str, search: list[TrialRecord] | None) -> dict[str, Any]:
    """What Tune varies itself: the grid (times the seeds), or the seed reruns; nothing for Optuna."""
    from ray import tune

    s = plan.settings
    if phase == "grid":
        space = {k: tune.grid_search(v) for k, v in s.grid.items()}
        if s.seeds:
            space["seed"] = tune.grid_search(list(s.seeds))
        return space
    if phase == "seeds":
        return {VARIANT_KEY: tune.grid_search(seed_variants(plan, search or []))}
    return {}


def _scheduler(plan: Plan, phase: str, many: bool) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = plan.settings
    if phase == "seeds" or plan.scheduler != "asha":
        return FIFOScheduler()
    # max_t beyond the last epoch, since ASHA stops every trial that reaches max_t; a rung on
    # the last epoch is harmless, as that epoch is reported together with the test metrics.
    # With several objectives Tune has no metric, so ASHA is given the first itself
    return ASHAScheduler(
        time_attr="epoch",
        metric=plan.metric if many else None,
        mode=plan.mode if many else None,
        max_t=s.max_epochs + 1,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )


def _callbacks(plan: Plan, phase: str, extra: tuple[Any, ...]) -> list[Any]:
    s = plan.settings
    callbacks: list[Any] = list(extra)
    if s.workers_per_trial > 1:
        from glintru.search.trainable import ReleaseTrainResources

        callbacks.append(ReleaseTrainResources())
    if phase == "search" and not s.optuna_storage and results.is_uri(plan.exp_dir):
        callbacks.append(study.upload_callback(plan.exp_dir, plan.name))
    if s.mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(tracking_uri=s.mlflow or None, experiment_name=f"{plan.name}-{phase}"))
    return callbacks


def _console(plan: Plan, many: bool, param_space: dict[str, Any]) -> tuple[int, list[Any]]:
    """Tune's verbosity, and at --verbose 1 the reporter that shows the search in its place."""
    from glintru.search.progress import TUNE_VERBOSITY, SearchReporter

    verbose = plan.settings.verbose
    if verbose != 1:
        return TUNE_VERBOSITY[verbose], []
    objectives = tuple(o.metric for o in plan.objectives)
    reporter = SearchReporter(objectives, None if many else plan.metric, None if many else plan.mode, param_space)
    return TUNE_VERBOSITY[verbose], [reporter]


def _tuner(
    plan: Plan,
    phase: str,
    trainable: Any,
    search: list[TrialRecord] | None = None,
    extra_callbacks: tuple[Any, ...] = (),
) -> Any:
    from ray import tune

    s = plan.settings
    # every epoch's checkpoint makes Tune snapshot its state (CheckpointConfig(num_to_keep=2)),
    # which is what resuming needs; its warning about frequent snapshots is noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # with several objectives the searcher holds the metric list (Tune's single metric would replace it)
    many = phase == "search" and len(plan.objectives) > 1
    param_space = _param_space(plan, phase, search)
    verbose, console = _console(plan, many, param_space)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=None if many else plan.metric,
            mode=None if many else plan.mode,
            search_alg=_search_alg(plan) if phase == "search" else None,
            scheduler=_scheduler(plan, phase, many),
            # no fixed cap unless asked: Tune starts a trial whenever one fits, so concurrency follows
            # the cluster as the autoscaler adds nodes (a searcher keeps one trial queued, which
            # is what asks the autoscaler for the next node)
            num_samples=s.num_samples if phase == "search" else 1,
            max_concurrent_trials=s.max_concurrent,
            trial_dirname_creator=_trial_dirname,
            # a finished single-worker trial hands its process (torch and the package imported, the
            # dataset mapped) to the next trial: seconds saved per trial. A trial still training when
            # it is stopped does not give it up in time, and Tune starts a fresh process instead
            reuse_actors=s.workers_per_trial == 1,
        ),
        run_config=tune.RunConfig(
            name=phase,
            storage_path=plan.tune_storage,
            callbacks=_callbacks(plan, phase, extra_callbacks) + console,
            verbose=verbose,
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            # single-worker trials checkpoint through Tune: the last two epochs are enough to resume
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )


# -- running and collecting a phase ---------------------------------------------------------------


def run_phase(
    plan: Plan, phase: str, shared: Any, search: list[TrialRecord] | None = None, extra_callbacks: tuple[Any, ...] = ()
) -> None:
    """Run one phase to its end (or until Ctrl-C), restoring it where an earlier run left it."""
    from ray import tune

    from glintru.search.trainable import clear_failure

    path = join(plan.tune_storage, phase)
    trainable = _trainable(plan, shared)
    if tune.Tuner.can_restore(path):
        log.info("phase %s: resuming %s", phase, path)
        if phase == "search" and not plan.settings.optuna_storage:
            # the restored searcher reopens its journal by path: bring that file up to date first
            # (on another machine it exists only in EXP_DIR)
            study.journal_path(plan.exp_dir, plan.name)
        retry = plan.settings.retry_errored
        if retry:
            for rec in collect_phase(plan, phase):
                if rec.status == "ERROR":
                    clear_failure(plan.train_storage, rec.trial_id)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=retry)
    else:
        log.info("phase %s: starting under %s", phase, path)
        tuner = _tuner(plan, phase, trainable, search, extra_callbacks)
    tuner.fit()


def collect_phase(plan: Plan, phase: str) -> list[TrialRecord]:
    """Every trial of one phase, from Tune's experiment state and the trials' last checkpoints."""
    from ray import tune
    from ray.tune import ExperimentAnalysis

    path = join(plan.tune_storage, phase)
    if not tune.Tuner.can_restore(path):
        return []
    records = []
    for trial in ExperimentAnalysis(path).trials:
        last = dict(trial.last_result or {})
        # a single-worker trial's checkpoints are Tune's (in its trial directory), a DDP trial's are Train's
        tune_checkpoint = last.get("checkpoint_dir_name")
        own = [join(path, trial.trial_id, tune_checkpoint)] if tune_checkpoint else []
        run_dir, run_metrics = results.final_run(plan.train_storage, trial.trial_id, last, checkpoint_dirs=own)
        # get_error() is annotated as a TuneError but returns the error file's text
        text = trial.get_error() if trial.status == "ERROR" else None
        error = results.error_reason(str(text)) if text else None
        records.append(
            TrialRecord(
                trial_id=trial.trial_id,
                phase=phase,
                status=trial.status,
                config=dict(trial.config),
                last_result=last,
                error=error,
                num_failures=trial.num_failures,
                run_metrics=run_metrics,
                run_dir=run_dir,
            )
        )
    return records


def close_stale_optuna_trials(plan: Plan) -> None:
    """Trials asked for before an interruption and never told stay RUNNING in the study: fail them."""
    import optuna

    try:
        ot_study = optuna.load_study(study_name=plan.name, storage=optuna_storage(plan))
    except KeyError:
        return
    for t in ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        ot_study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    if not plan.settings.optuna_storage:
        study.upload_journal(plan.exp_dir, plan.name)


def experiment_info(plan: Plan, phase_status: dict[str, str]) -> dict[str, Any]:
    """The content of EXP_DIR/experiment.json."""
    import ray

    s = plan.settings
    return {
        "name": plan.name,
        "space": plan.space.name,
        "model": plan.space.model,
        "dataset": plan.dataset.name,
        "dataset_path": str(plan.dataset.path),
        "dataset_stats": plan.dataset.meta.get("stats", {}),
        "dataset_fingerprint": plan.dataset.fingerprint,
        "eval_mode": s.eval_mode,
        "metric": plan.metric,
        "mode": plan.mode,
        "objectives": [dataclasses.asdict(o) for o in plan.objectives],
        "sampler": None if s.grid else plan.sampler,
        "scheduler": plan.scheduler,
        "phases": phase_status,
        "settings": s.to_dict(),
        "versions": {"glintru": glintru.__version__, "ray": ray.__version__, "python": sys.version.split()[0]},
        "code": source_revision(),
    }


def expected_trials(plan: Plan, phase: str, search: list[TrialRecord] | None = None) -> int:
    """How many trials a phase runs when it is not interrupted."""
    s = plan.settings
    if phase == "search":
        return s.num_samples
    if phase == "grid":
        return len(grid_configs(s.grid)) * max(1, len(s.seeds))
    return len(seed_variants(plan, search or []))


def count_unfinished(records: list[TrialRecord], expected: int) -> int:
    """Trials of a phase still to run: those Tune left unfinished, and those it never created (an
    interruption between two trials of a search, before the searcher suggested the next one)."""
    pending = sum(r.status not in ("TERMINATED", "ERROR") for r in records)
    return pending + max(0, expected - len(records))


def phases_to_retry(plan: Plan, phase_status: dict[str, str]) -> set[str]:
    """The finished phases with errored trials, which --retry-errored runs again. SearchError when
    one of them is the search and its seed reruns are done: they reran the best trials of the
    search as it stood, and a retried search could change which those are."""
    errored = {
        phase: sum(r.status == "ERROR" for r in collect_phase(plan, phase))
        for phase in plan.phases
        if phase_status.get(phase) == "done"
    }
    retry = {phase for phase, n in errored.items() if n}
    if "search" in retry and phase_status.get("seeds") == "done":
        raise SearchError(
            f"--retry-errored: {errored['search']} errored trial(s) of the search cannot run again: its seed "
            "reruns are done, on the best trials of the search as it stood; start a new search (another --name)"
        )
    for phase in sorted(retry, key=plan.phases.index):
        log.info("phase %s: running its %d errored trial(s) again", phase, errored[phase])
    return retry


def run_phases(plan: Plan, callbacks: tuple[Any, ...]) -> list[TrialRecord]:
    """Every phase not yet done, in order, experiment.json kept current; the trials of all phases.
    SearchInterrupted when Tune returned with trials unfinished (Ctrl-C or SIGTERM)."""
    from glintru.search.data import share_dataset

    shared = share_dataset(plan.dataset)
    phase_status = {p: "pending" for p in plan.phases}
    if plan.settings.resume:
        phase_status.update(results.read_experiment(plan.exp_dir).get("phases", {}))
    results.write_experiment(plan.exp_dir, experiment_info(plan, phase_status))
    retried = phases_to_retry(plan, phase_status) if plan.settings.retry_errored else set()
    records: list[TrialRecord] = []
    for phase in plan.phases:
        if phase_status.get(phase) != "done" or phase in retried:
            phase_status[phase] = "running"
            results.write_experiment(plan.exp_dir, experiment_info(plan, phase_status))
            search = collect_phase(plan, "search") if phase == "seeds" else None
            run_phase(plan, phase, shared, search, callbacks)
            unfinished = count_unfinished(collect_phase(plan, phase), expected_trials(plan, phase, search))
            if unfinished:  # Tune returns after Ctrl-C (or SIGTERM) with its state saved
                raise SearchInterrupted(
                    f"{unfinished} trial(s) of phase {phase!r} unfinished; the search "
                    f"is saved. Finish it with:\n  {resume_command(plan)}"
                )
            phase_status[phase] = "done"
            results.write_experiment(plan.exp_dir, experiment_info(plan, phase_status))
        records += collect_phase(plan, phase)
    return records
