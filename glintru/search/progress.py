"""What the console shows while a search runs: Tune's progress table of the trials and their searched
metrics, and one line per trial that Tune ends, in place of Tune's boxes of every reported key."""

from __future__ import annotations

from typing import Any

from ray.tune.experimental.output import AirVerbosity, TuneTerminalReporter

from glintru.search.console import format_trial_line

# --verbose -> Tune's own verbosity. At 1 Tune is silent and SearchReporter shows the search; 2 adds
# Tune's boxes of each trial's config and last report, 3 a box of every report.
TUNE_VERBOSITY = {0: 0, 1: 0, 2: 1, 3: 2}


class SearchReporter(TuneTerminalReporter):
    """Tune's reporter of a Tuner (the experiment table, the progress table every 30 seconds and
    at the end) without its boxes: a trial that ends is one line (console.format_trial_line)."""

    def __init__(
        self,
        objectives: tuple[str, ...],
        metric: str | None = None,
        mode: str | None = None,
        config: dict[str, Any] | None = None,
    ):
        super().__init__(AirVerbosity.DEFAULT, metric=metric, mode=mode, config=config)
        self.objectives = objectives

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pass  # a sampled config is in the progress table and, once the trial ends, in trials.parquet

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._start_block("ended trials")  # consecutive lines stay together, apart from the table
        print(format_trial_line(trial.trial_id, trial.last_result or {}, self.objectives))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pass  # the reporter Tune adds to every experiment prints a failed trial at any verbosity
