"""What the console shows while a search runs: Tune's progress table of the trials and their searched
metrics, and one line per trial that Tune ends, in place of Tune's boxes of every reported key."""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from ray.tune.experimental.output import AirVerbosity, TuneTerminalReporter

from glintru.search.console import format_trial_line

# --verbose -> Tune's own verbosity. At 1 Tune is silent and SearchReporter shows the search; 2 adds
# Tune's boxes of each trial's config and last report, 3 a box of every report.
TUNE_VERBOSITY = {0: 0, 1: 0, 2: 1, 3: 2}


class SearchReporter(Callback):
    """Tune's progress table (every 30 seconds and at the end) and one line per trial that Tune ends
    (console.format_trial_line), in place of Tune's boxes.

    It holds Tune's table reporter rather than being one: Tune gives its start time only to the first
    progress reporter among the callbacks, and the reporter Tune adds itself, left without one, fails
    on the first trial error or recovery (a lost node, a retried trial) and takes the search with it.
    """

    def __init__(
        self,
        objectives: tuple[str, ...],
        metric: str | None = None,
        mode: str | None = None,
        config: dict[str, Any] | None = None,
    ):
        self._table = TuneTerminalReporter(AirVerbosity.DEFAULT, metric=metric, mode=mode, config=config)
        self.objectives = objectives

    def setup(
        self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any
    ) -> None:
        self._table.setup(start_time=time.time(), total_samples=total_num_samples)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._table.print_heartbeat(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._table._start_block("ended trials")  # consecutive lines stay together, apart from the table
        print(format_trial_line(trial.trial_id, trial.last_result or {}, self.objectives))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._table.print_heartbeat(trials, force=True)
        self._table.on_experiment_end(trials, **info)

    # a sampled config is in the progress table and, once the trial ends, in trials.parquet; a failed
    # trial is printed by the reporter Tune adds to every experiment, at any verbosity
