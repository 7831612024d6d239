"""What a running search shows: one line per trial Tune ends (console.format_trial_line, printed by
progress.SearchReporter) beside Tune's progress table, with Tune's boxes only at --verbose 2."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from glintru.search import results
from glintru.search.console import format_trial_line
from glintru.search.settings import SearchSettings

from search_helpers import run_cli, small

FINISHED = {
    "final": True,
    "epoch": 7,
    "valid/ndcg@10": 0.31234,
    "test/ndcg@10": 0.29876,
    "infer_ms_per_batch": 3.21987,
    "host": "h",
    "epoch_seconds": 0.5,
    "time_total_s": 12.34,
}


def test_a_finished_trial_is_one_line_of_its_searched_metrics():
    line = format_trial_line("ab12_00003", FINISHED, ("valid/ndcg@10", "infer_ms_per_batch"))
    assert line == (
        "trial ab12_00003 finished after 7 epochs: valid/ndcg@10 0.3123, test/ndcg@10 0.2988, "
        "infer_ms_per_batch 3.22, 12.3 s"
    )


def test_a_trial_the_scheduler_stopped_says_so_and_has_no_test_value():
    stopped = {"final": False, "epoch": 2, "valid/ndcg@10": 0.1, "infer_ms_per_batch": float("nan")}
    line = format_trial_line("ab12_00004", stopped | {"time_total_s": 3.0}, ("valid/ndcg@10", "infer_ms_per_batch"))
    assert line == "trial ab12_00004 stopped by the scheduler after 2 epochs: valid/ndcg@10 0.1000, 3.0 s"
    assert format_trial_line("ab12_00005", {}, ("valid/ndcg@10",)) == "trial ab12_00005 ended before its first epoch"


def test_the_reporter_prints_one_line_per_ended_trial_and_no_box(capsys):
    from glintru.search.progress import SearchReporter

    reporter = SearchReporter(("valid/ndcg@10",), "valid/ndcg@10", "max")
    trials = [SimpleNamespace(trial_id=f"ab12_0000{i}", last_result=dict(FINISHED)) for i in range(2)]
    for t in trials:
        reporter.on_trial_start(1, trials, t)
    for t in trials:
        reporter.on_trial_complete(1, trials, t)
    reporter.on_trial_error(1, trials, trials[0])  # Tune's own reporter prints a failure
    reporter.on_trial_recover(1, trials, trials[0])
    assert capsys.readouterr().out.splitlines() == [
        f"trial ab12_0000{i} finished after 7 epochs: valid/ndcg@10 0.3123, test/ndcg@10 0.2988, 12.3 s"
        for i in range(2)
    ]


def test_the_reporter_leaves_tune_its_own_progress_reporter_and_start_time():
    """Tune sets the start time of the first progress reporter among the callbacks only; were
    SearchReporter one, the reporter Tune adds would fail on the first trial error or recovery."""
    from ray.tune.experimental.output import ProgressReporter

    from glintru.search.progress import SearchReporter

    reporter = SearchReporter(("valid/ndcg@10",), "valid/ndcg@10", "max")
    assert not isinstance(reporter, ProgressReporter)
    reporter.setup(total_num_samples=2)  # as Tune calls every callback, with no start time
    assert reporter._table._start_time is not None


def test_verbose_1_silences_tune_for_the_reporter_and_2_and_3_give_tune_its_boxes(tiny_data, tmp_path):
    from glintru.search.phases import _console
    from glintru.search.plan import plan_search
    from glintru.search.progress import SearchReporter

    for verbose, tune_verbose in ((0, 0), (1, 0), (2, 1), (3, 2)):
        settings = SearchSettings(space="glintru", data=str(tiny_data), storage=str(tmp_path), verbose=verbose)
        level, callbacks = _console(plan_search(settings), False, {})
        assert level == tune_verbose
        assert [type(c) for c in callbacks] == ([SearchReporter] if verbose == 1 else [])


@pytest.mark.slow
def test_a_search_at_the_default_verbosity_shows_a_line_per_trial_and_no_boxes(tiny_data, tmp_path):
    proc = run_cli(
        "--space",
        "glintru",
        "--data",
        str(tiny_data),
        "--grid",
        "lr=1e-2,1e-3",
        "--max-epochs",
        "2",
        "--storage",
        str(tmp_path),
        "--name",
        "console",
        "--num-cpus",
        "4",
        *small(),
        "hidden_size=16",
        "num_heads=2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    trials = results.read_trials(str(tmp_path / "console"))
    for tid in trials["trial_id"]:
        lines = [ln for ln in out.splitlines() if ln.startswith(f"trial {tid} ")]
        assert len(lines) == 1, (tid, out)
        assert re.fullmatch(
            rf"trial {tid} finished after 2 epochs: valid/ndcg@10 0\.\d{{4}}, test/ndcg@10 0\.\d{{4}}, [\d.]+ s",
            lines[0],
        )
    assert "Trial status:" in out, "Tune's progress table"
    for box in ("started with configuration", "completed after", " result\n", "epoch_valid/"):
        assert box not in out, box
