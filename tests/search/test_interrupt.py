"""A search ended by SIGTERM (a job scheduler's time limit) and resumed on another machine: the
state saved, one message with the exact resume command, every Ray process gone, and the Optuna
study of an experiment in (here simulated) cloud storage continued, not restarted."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time

import optuna
import psutil
import pytest

from glintru.search import results, study

from search_helpers import REPO, cli_command, cli_env, small, start_cli

pytestmark = pytest.mark.slow

MODEL = ["--set", "hidden_size=16", "num_heads=2", "num_layers=1"]


def _journal_trials(path) -> list:
    if not path.exists():
        return []
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    try:
        return optuna.load_study(study_name="term", storage=storage).trials
    except KeyError:
        return []


def test_sigterm_saves_the_search_and_a_resume_elsewhere_continues_its_study(tiny_data, tmp_path):
    storage = f"file://{tmp_path / 'bucket'}"  # a URI: the experiment is treated as cloud storage
    exp_dir = f"{storage}/term"
    local = study.local_journal(exp_dir, "term")
    shutil.rmtree(local.parent, ignore_errors=True)
    # FIFO and no early stopping: every trial trains all its epochs and has test metrics, and with
    # epochs of well under a second, 30 of them keep a trial running long enough for the signal
    # to strike while it does
    args = [
        "--space",
        "glintru",
        "--data",
        str(tiny_data),
        "--num-samples",
        "3",
        "--max-epochs",
        "30",
        "--scheduler",
        "fifo",
        "--max-concurrent",
        "1",
        "--num-cpus",
        "2",
        "--storage",
        storage,
        "--name",
        "term",
        *small(patience=30),
        *MODEL,
    ]
    proc = start_cli(*args, separate_stderr=True, new_session=True)
    try:
        deadline = time.time() + 600
        # once a trial is complete and the next one runs, the scheduler's time limit strikes
        while time.time() < deadline and proc.poll() is None:
            states = [t.state for t in _journal_trials(local)]
            if optuna.trial.TrialState.COMPLETE in states and optuna.trial.TrialState.RUNNING in states:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        started = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert started, "the search should have started Ray processes"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-3000:]
    # one clear message with the exact command, and no stack traces from Ray's signal handler
    assert "Traceback" not in err and "*** SIGTERM" not in err and "Stack trace" not in err, err[-3000:]
    command = err.strip().splitlines()[-1].strip()
    assert command == shlex.join(
        ["python", "tune/search.py", "--resume", "--name", "term", "--storage", storage, "--num-cpus", "2"]
    )
    # every Ray process the search started is gone within 30 s
    _, alive = psutil.wait_procs([psutil.Process(p) for p in started if psutil.pid_exists(p)], timeout=30)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], alive

    # the study travelled with the experiment: a machine without the local journal continues it
    kept = _journal_trials(tmp_path / "bucket" / "term" / "optuna.journal")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in kept) >= 1
    shutil.rmtree(local.parent)
    resumed = subprocess.run(
        cli_command(*shlex.split(command)[2:]), env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = _journal_trials(tmp_path / "bucket" / "term" / "optuna.journal")
    completed = [t for t in final if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(completed) == 3, [t.state for t in final]
    # the trials finished before the signal are the same ones, not sampled anew
    first = [t for t in kept if t.state == optuna.trial.TrialState.COMPLETE]
    assert [t.params for t in first] == [t.params for t in final[: len(first)]]
    df = results.read_trials(exp_dir)
    assert len(df) == 3 and df["completed"].all()


def test_the_kept_journal_wins_over_a_stale_local_copy(tmp_path):
    exp_dir = f"file://{tmp_path / 'bucket'}/exp"
    local = study.local_journal(exp_dir, "exp")
    shutil.rmtree(local.parent, ignore_errors=True)
    path = study.journal_path(exp_dir, "exp")
    ot = optuna.create_study(
        study_name="exp", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    )
    ot.enqueue_trial({"x": 1.0})
    trial = ot.ask()
    trial.suggest_float("x", 0, 2)
    ot.tell(trial, 0.5)
    assert study.upload_journal(exp_dir, "exp")
    kept = (tmp_path / "bucket" / "exp" / "optuna.journal").read_bytes()
    local.write_bytes(b"")  # another machine's (or an older) copy
    assert study.journal_path(exp_dir, "exp") == str(local) and local.read_bytes() == kept
    shutil.rmtree(local.parent)
    # a local experiment needs no copy: the journal is EXP_DIR/optuna.journal itself
    assert study.journal_path(str(tmp_path / "here"), "here") == str(tmp_path / "here" / "optuna.journal")
    assert not study.upload_journal(str(tmp_path / "here"), "here")
    assert os.path.isdir(tmp_path / "here")
