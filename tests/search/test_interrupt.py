"""A search ended by SIGTERM (a job scheduler's time limit) and resumed on another machine: the
state saved, one message with the exact resume command, every Ray process gone, and the Optuna
study of an experiment in (here simulated) cloud storage continued, not restarted. The signal sent
to the driver alone, and to the search's whole process group (`timeout`, `kill -TERM -PGID`), as
schedulers do; and a driver killed outright takes its Ray processes with it."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import optuna
import psutil
import pytest

from glintru.search import results, study

from search_helpers import REPO, cli_command, cli_env, small, start_cli

pytestmark = pytest.mark.slow

MODEL = ["--set", "hidden_size=16", "num_heads=2", "num_layers=1"]


def _journal_trials(path, name: str = "term") -> list:
    if not path.exists():
        return []
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    except KeyError:
        return []


def _wait_for_a_finished_and_a_running_trial(proc: subprocess.Popen, journal, name: str) -> None:
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        states = [t.state for t in _journal_trials(journal, name)]
        if optuna.trial.TrialState.COMPLETE in states and optuna.trial.TrialState.RUNNING in states:
            return
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()


def _still_running(pids: list[int], timeout: float) -> list:
    """Those of `pids` alive (and no zombie) after waiting up to `timeout` seconds for them to end."""
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _ray_core_outside_group(pid: int, group: int) -> bool:
    """Whether the GCS and raylet that process `pid` started lie outside process group `group`."""
    core = [p for p in psutil.Process(pid).children(recursive=True) if p.name() in ("gcs_server", "raylet")]
    assert len(core) == 2, core
    return all(os.getpgid(p.pid) != group for p in core)


def _kill_all(proc: subprocess.Popen, pids: list[int]) -> None:
    """The test's own processes ended, should an assertion have left them running."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
    for p in _still_running(pids, timeout=0):
        p.kill()


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
    # what the stopped search holds is tabulated at once: the finished trial tested, the rest not
    stopped = results.read_trials(exp_dir)
    assert stopped["completed"].sum() >= 1 and not stopped["completed"].all(), stopped[["status", "completed"]]
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


# text that a stop reaching Ray's GCS and raylet together with the driver leaves behind
CRASH_TEXT = ("Traceback", "*** SIGTERM", "Stack trace", "Failed to connect to GCS", "rpc_client", "Check failed")


@pytest.mark.parametrize("stop", ["timeout", "killpg"])
def test_a_signal_to_the_whole_process_group_ends_the_search_cleanly_and_it_resumes(tiny_data, tmp_path, stop):
    name = f"group-{stop}"
    args = [
        "--space",
        "glintru",
        "--data",
        str(tiny_data),
        "--num-samples",
        "2",
        "--max-epochs",
        "30",
        "--scheduler",
        "fifo",
        "--max-concurrent",
        "1",
        "--num-cpus",
        "2",
        "--storage",
        str(tmp_path),
        "--name",
        name,
        *small(patience=30),
        *MODEL,
    ]
    io = {"env": cli_env(), "cwd": REPO, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    if stop == "timeout":
        assert shutil.which("timeout"), "the test needs coreutils' `timeout`, as CI's machines have"
        # `timeout` leads a process group of its own (here in a session of its own, away from the
        # test's) and, signalled as at its time limit, passes the signal to that whole group
        proc = subprocess.Popen(["timeout", "-s", "TERM", "900", *cli_command(*args)], start_new_session=True, **io)
    else:
        # a shell's job: the search leads its group, which Ctrl-C or `kill -TERM -PGID` signals
        proc = subprocess.Popen(cli_command(*args), preexec_fn=os.setpgrp, **io)
    started: list[int] = []
    try:
        _wait_for_a_finished_and_a_running_trial(proc, tmp_path / name / "optuna.journal", name)
        started = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert _ray_core_outside_group(proc.pid, os.getpgid(proc.pid))
        signalled = time.time()
        if stop == "timeout":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        took = time.time() - signalled
        assert proc.returncode == 130, err[-3000:]
        assert not [text for text in CRASH_TEXT if text in out + err], err[-3000:]
        command = err.strip().splitlines()[-1].strip()
        assert command.startswith(f"python tune/search.py --resume --name {name} --storage "), err[-3000:]
        assert took < 30, f"the search took {took:.0f} s to end"
        assert not _still_running(started, timeout=30), "Ray processes of the search outlived it"
    finally:
        _kill_all(proc, started)

    kept = [t for t in _journal_trials(tmp_path / name / "optuna.journal", name) if t.state.name == "COMPLETE"]
    assert kept
    resumed = subprocess.run(
        cli_command(*shlex.split(command)[2:]), env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = _journal_trials(tmp_path / name / "optuna.journal", name)
    assert [t.state.name for t in final] == ["COMPLETE", "COMPLETE"]
    # the trial finished before the signal is kept, not sampled and trained anew
    assert [t.params for t in kept] == [t.params for t in final[: len(kept)]]
    df = results.read_trials(str(tmp_path / name))
    assert len(df) == 2 and df["completed"].all()


def test_a_driver_killed_outright_takes_its_ray_processes_with_it():
    script = (
        "import time\n"
        "from glintru.search.ray_setup import start_ray\n"
        "from glintru.search.settings import SearchSettings\n"
        "start_ray(SearchSettings(space='glintru', data='', num_cpus=2, num_gpus=0))\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=cli_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=os.setpgrp,
    )
    started: list[int] = []
    try:
        assert proc.stdout.readline().strip() == "up"
        started = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert _ray_core_outside_group(proc.pid, proc.pid)
        proc.kill()  # SIGKILL: no handler, no clean shutdown
        proc.wait()
        assert not _still_running(started, timeout=30), "Ray processes outlived their driver"
    finally:
        _kill_all(proc, started)
