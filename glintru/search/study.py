"""Where a search keeps its Optuna study, so that a resume on any machine continues it.

A local experiment keeps its journal at EXP_DIR/optuna.journal. One in cloud storage (s3://, gs://)
cannot append to a file there, so Optuna writes a local copy whose path depends only on the
experiment (the restored searcher reopens the same path on another machine), and the search
uploads it to EXP_DIR/optuna.journal whenever a trial starts or ends; a resume downloads it first.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from glintru.search import results
from glintru.search.results import join

JOURNAL_FILE = "optuna.journal"


def local_journal(exp_dir: str, name: str) -> Path:
    """The local journal of an experiment kept in cloud storage: the same path on every machine
    (the temporary directory, not a home directory), one per experiment location."""
    digest = hashlib.sha1(exp_dir.encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / "glintru-optuna" / f"{name}-{digest}" / JOURNAL_FILE


def journal_path(exp_dir: str, name: str) -> str:
    """The journal file Optuna writes to; for a cloud experiment, first brought up to date with the
    copy kept in EXP_DIR (a resume on another machine, or after the local copy was lost)."""
    if not results.is_uri(exp_dir):
        Path(exp_dir).mkdir(parents=True, exist_ok=True)
        return join(exp_dir, JOURNAL_FILE)
    local = local_journal(exp_dir, name)
    local.parent.mkdir(parents=True, exist_ok=True)
    kept = join(exp_dir, JOURNAL_FILE)
    if results.exists(kept):
        remote = results.read_bytes(kept)
        # the kept copy wins unless the local one already holds all of it (this machine ran on)
        if not local.exists() or not local.read_bytes().startswith(remote):
            local.write_bytes(remote)
    return str(local)


def upload_journal(exp_dir: str, name: str) -> bool:
    """Copy a cloud experiment's local journal to EXP_DIR/optuna.journal; False when there is none."""
    if not results.is_uri(exp_dir):
        return False
    local = local_journal(exp_dir, name)
    if not local.exists():
        return False
    results.write_bytes(join(exp_dir, JOURNAL_FILE), local.read_bytes())
    return True


def upload_callback(exp_dir: str, name: str) -> Any:
    """A Tune callback that keeps EXP_DIR/optuna.journal current during the search."""
    from ray import tune

    # Optuna writes the journal when it proposes a trial and when it is told the result
    class KeepStudy(tune.Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            upload_journal(exp_dir, name)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            upload_journal(exp_dir, name)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            upload_journal(exp_dir, name)

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            upload_journal(exp_dir, name)

    return KeepStudy()
