"""Read experiment and run directories (local or any pyarrow/fsspec filesystem) into tidy tables."""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from glintru.analysis.comparability import SOURCE, fill_basis, run_basis, tell_apart

FINISHED = "TERMINATED"
EFFICIENCY_COLUMNS = ("seconds_per_epoch", "infer_ms_per_batch", "peak_memory_mb")
REQUIRED_TRIAL_COLUMNS = ("trial_id", "model", "dataset")
# what chose the best epochs and configurations of runs and experiments that do not record it
UNRECORDED_SELECTION = "valid/ndcg@10"
# Train-config fields of a plain run that are hyperparameters (the rest is bookkeeping).
RUN_TRAIN_PARAMS = ("lr", "batch_size", "weight_decay")


def filesystem_for(uri: str, filesystem: Any = None) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path, a URI, or a path on a given filesystem.

    URIs go to pyarrow first (file://, s3://, gs://, hdfs://, abfs://); schemes pyarrow does not
    know (memory://, and whatever fsspec implementations are installed) go through fsspec.
    """
    if filesystem is not None:
        if not isinstance(filesystem, pafs.FileSystem):
            filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
        return filesystem, uri.rstrip("/") or "/"
    if "://" not in uri:
        local = pafs.LocalFileSystem()
        return local, posixpath.normpath(_abspath(uri))
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/") or "/"
    except (ValueError, OSError, pa.ArrowException) as pyarrow_error:
        try:
            import fsspec
        except ImportError:
            raise ValueError(
                f"{uri}: pyarrow cannot open this URI ({pyarrow_error}) and fsspec is not installed"
            ) from None
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ValueError, ImportError) as fsspec_error:
            raise ValueError(f"{uri}: neither pyarrow nor fsspec can open it ({fsspec_error})") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path.rstrip("/") or "/"


def _abspath(path: str) -> str:
    return os.path.abspath(path).replace(os.sep, "/")


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def parse_json_object(text: str, path: str, objects: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in `text` (the content of the file `path`), whose keys `objects` must hold
    objects too; ValueError naming the file and what is wrong otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: holds a JSON {type(value).__name__}, not the object glintru writes there")
    for key in objects:
        if not isinstance(value.get(key), dict):
            what = "no" if value.get(key) is None else f"a {type(value[key]).__name__} as its"
            raise ValueError(f"{path}: {what} {key!r} object; it is not a file of a finished glintru run")
    return value


def _read_json(fs: pafs.FileSystem, path: str, objects: tuple[str, ...] = ()) -> dict[str, Any]:
    with fs.open_input_stream(path) as f:
        text = f.read().decode("utf-8", errors="replace")
    return parse_json_object(text, path, objects)


def _read_parquet(fs: pafs.FileSystem, path: str) -> pd.DataFrame:
    return pq.read_table(path, filesystem=fs).to_pandas()


@dataclass
class Experiment:
    """One input directory: a search experiment or a single `glintru train` run."""

    name: str
    uri: str
    fs: pafs.FileSystem = field(repr=False)
    root: str
    kind: str  # "experiment" or "run"
    meta: dict[str, Any]


def _trials_of_experiment(exp: Experiment) -> pd.DataFrame:
    path = posixpath.join(exp.root, "trials.parquet")
    trials = _read_parquet(exp.fs, path)
    missing = [c for c in REQUIRED_TRIAL_COLUMNS if c not in trials.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)}; trials.parquet needs at least "
            f"{', '.join(REQUIRED_TRIAL_COLUMNS)}, status, seed and valid/ and test/ metric columns"
        )
    trials["trial_id"] = trials["trial_id"].astype(str)
    if "status" not in trials.columns:
        trials["status"] = FINISHED
    if "seed" not in trials.columns:
        trials["seed"] = trials["config/seed"] if "config/seed" in trials.columns else np.nan
    trials["users_path"] = [posixpath.join(exp.root, "users", f"{t}.parquet") for t in trials["trial_id"]]
    if trials.empty:
        raise ValueError(f"{exp.uri}: {path} holds no trials, so there is nothing to tabulate")
    trials[SOURCE] = [f"{exp.uri} trial {t}" for t in trials["trial_id"]]
    return fill_basis(trials, exp.meta.get("dataset_fingerprint"), exp.meta.get("eval_mode"))


def _flat_config(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, (list, tuple, dict)):
            value = json.dumps(value, sort_keys=True)
        out[f"{prefix}{key}"] = value
    return out


def _trials_of_run(exp: Experiment) -> pd.DataFrame:
    config = exp.meta["config"]
    metrics = _read_json(exp.fs, posixpath.join(exp.root, "metrics.json"), ("valid", "test"))
    train_config = config.get("train_config", {})
    dataset = config.get("dataset", {})
    env = {}
    if _exists(exp.fs, posixpath.join(exp.root, "env.json")):
        env = _read_json(exp.fs, posixpath.join(exp.root, "env.json"))
    row: dict[str, Any] = {
        "trial_id": posixpath.basename(exp.root),
        "status": FINISHED,
        "error": None,
        "completed": True,  # metrics.json is written once the test split is evaluated
        "model": config.get("model"),
        "dataset": dataset.get("name") or config.get("preset") or posixpath.basename(str(dataset.get("path", ""))),
        SOURCE: exp.uri,
        **run_basis(metrics, train_config, dataset.get("fingerprint")),
        "seed": train_config.get("seed", np.nan),
        "best_epoch": metrics.get("best_epoch"),
        "epochs": metrics.get("epochs"),
    }
    row.update(_flat_config("config/", config.get("model_config", {})))
    row.update({f"config/{k}": train_config[k] for k in RUN_TRAIN_PARAMS if k in train_config})
    for split in ("valid", "test"):
        row.update({f"{split}/{k}": v for k, v in metrics.get(split, {}).items()})
    row.update({k: metrics.get(k, np.nan) for k in EFFICIENCY_COLUMNS})
    row["node"] = env.get("hostname", env.get("node"))
    row["device"] = env.get("device", train_config.get("device"))
    row["run_dir"] = exp.uri
    row["users_path"] = posixpath.join(exp.root, "test_users.parquet")
    return pd.DataFrame([row])


def _selection_of(exp: Experiment) -> str:
    if exp.kind == "experiment":
        return str(exp.meta.get("metric") or UNRECORDED_SELECTION)
    select = exp.meta["config"].get("train_config", {}).get("select_metric")
    return f"valid/{select}" if select else UNRECORDED_SELECTION


def open_experiment(uri: str, filesystem: Any = None) -> Experiment:
    """Recognise an experiment dir (trials.parquet) or a run dir (config.json + metrics.json)."""
    fs, root = filesystem_for(str(uri), filesystem)
    if _exists(fs, posixpath.join(root, "trials.parquet")):
        meta = {}
        if _exists(fs, posixpath.join(root, "experiment.json")):
            meta = _read_json(fs, posixpath.join(root, "experiment.json"))
        name = str(meta.get("name") or posixpath.basename(root))
        return Experiment(name, str(uri), fs, root, "experiment", meta)
    if _exists(fs, posixpath.join(root, "metrics.json")) and _exists(fs, posixpath.join(root, "config.json")):
        meta = {"config": _read_json(fs, posixpath.join(root, "config.json"), ("train_config",))}
        return Experiment(posixpath.basename(root), str(uri), fs, root, "run", meta)
    if _exists(fs, posixpath.join(root, "experiment.json")):
        raise FileNotFoundError(
            f"{uri}: a search experiment with no trials.parquet yet: it is still running, or was killed before "
            "it wrote it; a search writes it when it ends or is stopped with Ctrl-C or SIGTERM, and "
            "`tune/search.py --resume` takes a killed one on"
        )
    raise FileNotFoundError(
        f"{uri}: neither an experiment directory (no trials.parquet) nor a run directory "
        f"(no config.json + metrics.json); pass the directory printed by tune/search.py or glintru train --out"
    )


@dataclass
class Results:
    """All trials of one or many experiments, with lazy access to their per-user test metrics."""

    trials: pd.DataFrame
    experiments: dict[str, Experiment]
    _users_cache: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict, repr=False)

    def finished(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == FINISHED]

    def selection_metric(self) -> str:
        """The validation column that chose the best epochs and configurations of the inputs, as they
        record it (experiment.json `metric`, a run's train_config `select_metric`); ValueError naming
        them where they differ, since a table chooses on one column."""
        chosen = {name: _selection_of(self.experiments[name]) for name in dict.fromkeys(self.trials["experiment"])}
        if len(set(chosen.values())) > 1:
            listed = "; ".join(f"{self.experiments[n].uri}: {m}" for n, m in chosen.items())
            raise ValueError(f"the inputs chose on different validation metrics ({listed}); name one with --select")
        return next(iter(chosen.values()), UNRECORDED_SELECTION)

    def users(self, trial: pd.Series | dict[str, Any]) -> pd.DataFrame:
        """Per-user test metrics of one trial row: `user` plus one column per metric."""
        key = (str(trial["experiment"]), str(trial["trial_id"]))
        if key not in self._users_cache:
            exp = self.experiments[key[0]]
            path = str(trial["users_path"])
            if not _exists(exp.fs, path):
                raise FileNotFoundError(
                    f"no per-user metrics for trial {key[1]} of experiment {key[0]}: {path} is missing"
                )
            frame = _read_parquet(exp.fs, path)
            if "user" not in frame.columns:
                raise ValueError(f"{path}: no 'user' column; per-user files hold user plus one column per metric")
            self._users_cache[key] = frame
        return self._users_cache[key]

    def user_metrics(self, trials: pd.DataFrame | None = None, metrics: Sequence[str] | None = None) -> pd.DataFrame:
        """Long table: experiment, trial_id, model, dataset, seed, user, metric, value."""
        trials = self.finished() if trials is None else trials
        parts = []
        for trial in trials.to_dict("records"):
            frame = self.users(trial)
            cols = [c for c in frame.columns if c != "user" and (metrics is None or c in metrics)]
            long = frame.melt(id_vars="user", value_vars=cols, var_name="metric", value_name="value")
            for key in ("experiment", "trial_id", "model", "dataset", "seed"):
                long.insert(0, key, trial[key])
            parts.append(long)
        columns = ["experiment", "trial_id", "model", "dataset", "seed", "user", "metric", "value"]
        if not parts:
            return pd.DataFrame(columns=columns)
        return pd.concat(parts, ignore_index=True)[columns]

    def only(self, conditions: dict[str, Any]) -> Results:
        """The trials whose `column` equals the value (compared as text, e.g. "full" or "3"), for
        each column -> value; trials without that column (NaN) are kept, since a baseline has no
        GLINT-RU ablation switch."""
        keep = pd.Series(True, index=self.trials.index)
        for column, value in conditions.items():
            if column not in self.trials.columns:
                raise KeyError(f"no column {column!r} in the trials")
            col = self.trials[column]
            keep &= col.isna() | (col.map(lambda v: str(_plain(v))) == str(value))
        return Results(self.trials[keep], self.experiments, self._users_cache)

    def efficiency(self) -> pd.DataFrame:
        """One row per finished trial: identity, device, config columns and the efficiency figures."""
        t = self.finished()
        keys = ["experiment", "trial_id", "model", "dataset", "seed"]
        extra = [c for c in ("node", "device") if c in t.columns]
        cols = keys + extra + config_columns(t) + [c for c in EFFICIENCY_COLUMNS if c in t.columns]
        return t[cols].reset_index(drop=True)


def collect(uris: str | os.PathLike | Iterable[str | os.PathLike], filesystem: Any = None) -> Results:
    """Read experiment and/or run directories into one `Results` (trials get an `experiment` column).

    Each entry is a local path, a URI (file://, s3://, gs://, memory://, ...) or, with `filesystem`
    (a pyarrow or fsspec filesystem), a path on that filesystem.
    """
    if isinstance(uris, (str, os.PathLike)):
        uris = [uris]
    paths: list[str] = [os.fspath(u) for u in uris]
    experiments: dict[str, Experiment] = {}
    frames = []
    seen: dict[tuple[str, str], str] = {}
    for uri in paths:
        exp = open_experiment(uri, filesystem)
        where = (type(exp.fs).__name__, exp.root)
        if where in seen:  # the same directory twice would count its trials twice
            raise ValueError(f"{seen[where]} and {uri} are one directory given twice; give it once")
        seen[where] = uri
        name, n = exp.name, 2
        while name in experiments:  # two dirs with one name stay apart
            name, n = f"{exp.name}#{n}", n + 1
        exp.name = name
        experiments[name] = exp
        trials = _trials_of_experiment(exp) if exp.kind == "experiment" else _trials_of_run(exp)
        trials.insert(0, "experiment", name)
        frames.append(trials)
    if not frames:
        raise ValueError("no experiment directories given")
    trials = pd.concat(frames, ignore_index=True, sort=False)
    trials = tell_apart(trials, {name: exp.uri for name, exp in experiments.items()})
    return Results(trials=trials, experiments=experiments)


def caller_directory() -> Path:
    """The directory the command was typed in: $PWD when it names a directory, else the cwd.

    `jupyter execute analysis/x.ipynb` and Jupyter front ends start the kernel in the notebook's
    own directory, but the shell exports PWD and the kernel inherits it, so PWD still says where
    the user stood when they wrote a relative path.
    """
    pwd = os.environ.get("PWD")
    if pwd and os.path.isabs(pwd) and os.path.isdir(pwd):
        return Path(pwd)
    return Path.cwd()


def checkout_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest directory at or above `start` (default the cwd) holding glintru/__init__.py."""
    here = Path(start or Path.cwd()).resolve()
    return next((p for p in (here, *here.parents) if (p / "glintru" / "__init__.py").is_file()), None)


def experiment_paths(spec: str, bases: Sequence[str | os.PathLike] | None = None) -> list[str]:
    """Comma-separated experiment directories (e.g. $GLINTRU_EXP) as a list, relative ones made absolute.

    A relative path is looked up under each of `bases` in turn and the first base where it exists
    wins; by default the bases are the caller's directory ($PWD), then the checkout root above the
    cwd (a kernel started by a launcher that did not pass PWD on), then the cwd. When it exists
    under none of them it is resolved against the first, so the error names the place where the
    user meant it. URIs (s3://, file://, ...) and absolute paths are kept as given.
    """
    if bases is None:
        bases = [caller_directory(), *filter(None, [checkout_root()]), Path.cwd()]
    dirs = [Path(b) for b in bases]
    out = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if "://" in item or os.path.isabs(os.path.expanduser(item)):
            out.append(os.path.expanduser(item))
            continue
        found = next((b / item for b in dirs if (b / item).exists()), dirs[0] / item)
        out.append(os.path.normpath(found))
    return out


def parse_conditions(items: Iterable[str]) -> dict[str, str]:
    """["config/ablation=full", ...] -> {"config/ablation": "full", ...} for `Results.only`."""
    out = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise ValueError(f"expected COLUMN=VALUE (e.g. config/ablation=full), got {item!r}")
        out[column] = value
    return out


def config_columns(trials: pd.DataFrame) -> list[str]:
    """The `config/<param>` columns that are hyperparameters (the seed is not one)."""
    return [c for c in trials.columns if c.startswith("config/") and c != "config/seed"]


def metric_columns(trials: pd.DataFrame, split: str = "test") -> list[str]:
    return [c for c in trials.columns if c.startswith(f"{split}/")]


def config_signature(trials: pd.DataFrame) -> pd.Series:
    """A string per row naming its configuration (non-null config columns, seed excluded)."""
    cols = config_columns(trials)

    def sign(row: pd.Series) -> str:
        items = {c[len("config/") :]: _plain(row[c]) for c in cols if not _isnull(row[c])}
        return json.dumps(items, sort_keys=True, default=str)

    if trials.empty:
        return pd.Series([], dtype=object, index=trials.index)
    return trials.apply(sign, axis=1)


def _isnull(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 3.0 and 3 are one configuration (NaN-padded int columns become float)
    return value


def tested(trials: pd.DataFrame) -> pd.DataFrame:
    """Finished trials that were trained to their end and tested (ASHA-stopped ones were not)."""
    t = trials
    if "status" in t.columns:
        t = t[t["status"] == FINISHED]
    if "completed" in t.columns:
        return t[t["completed"].fillna(False).astype(bool)]
    tests = metric_columns(t, "test")
    return t[t[tests].notna().any(axis=1)] if tests else t


def select_best(
    trials: pd.DataFrame,
    metric: str = "valid/ndcg@10",
    by: Sequence[str] = ("model", "dataset"),
    maximize: bool = True,
) -> pd.DataFrame:
    """Per group `by`, the tested trials of the configuration with the best mean `metric`.

    Trials are grouped by configuration (config/* columns, seed excluded), so every seed of the
    chosen configuration is returned. Selection should use a validation metric: test metrics are
    reported, never selected on. When the chosen configuration was rerun with several seeds (a
    "seeds" phase), only the rerun is returned: the search trial won its place on validation and
    is not an unselected sample. When one seed of a configuration appears twice, the last one read
    wins.
    """
    if metric not in trials.columns:
        raise KeyError(f"no column {metric!r} in the trials; available: {', '.join(metric_columns(trials, 'valid'))}")
    t = tested(trials)
    t = t[t[metric].notna()].copy()
    for key in by:
        if key not in t.columns:
            raise KeyError(f"no column {key!r} in the trials")
    t = t[t[list(by)].notna().all(axis=1)]
    if t.empty:
        return t
    t["_config"] = config_signature(t)
    keys = list(by) + ["_config"]
    scores = t.groupby(keys, sort=False, dropna=False)[metric].mean().reset_index()
    pick = (
        scores.groupby(list(by), sort=False)[metric].idxmax()
        if maximize
        else scores.groupby(list(by), sort=False)[metric].idxmin()
    )
    chosen = scores.loc[pick.values, keys]
    out = t.merge(chosen, on=keys, how="inner")
    if "phase" in out.columns:
        rerun = out.groupby(keys, sort=False)["phase"].transform(lambda p: (p == "seeds").any())
        out = out[~rerun | (out["phase"] == "seeds")]
    if "seed" in out.columns:
        with_seed = out[out["seed"].notna()].drop_duplicates(keys + ["seed"], keep="last")
        out = pd.concat([with_seed, out[out["seed"].isna()]])
    return out.reset_index(drop=True)


def best_configs(
    trials: pd.DataFrame,
    metric: str = "valid/ndcg@10",
    top: int = 5,
    by: Sequence[str] = ("model", "dataset"),
    maximize: bool = True,
    tests: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The `top` configurations per group by mean `metric`, with seeds counted and test means beside.

    `tests` names the test metrics to show (e.g. ["ndcg@10"]); all of them by default.
    """
    t = trials
    if "status" in t.columns:
        t = t[t["status"] == FINISHED]
    t = t[t[metric].notna()].copy()
    if t.empty:
        return pd.DataFrame(columns=list(by) + ["rank", metric, "seeds"])
    t["_config"] = config_signature(t)
    keys = list(by) + ["_config"]
    tests = metric_columns(t, "test") if tests is None else [f"test/{m}" for m in tests if f"test/{m}" in t.columns]
    agg = (
        t.groupby(keys, sort=False)
        .agg(
            **{metric: (metric, "mean"), "seeds": (metric, "size")},
            **{c: (c, "mean") for c in tests if c != metric},
        )
        .reset_index()
    )
    agg = agg.sort_values(list(by) + [metric], ascending=[True] * len(by) + [not maximize], kind="stable")
    agg["rank"] = agg.groupby(list(by), sort=False).cumcount() + 1
    agg = agg[agg["rank"] <= top]
    params = pd.DataFrame([json.loads(s) for s in agg["_config"]], index=agg.index)
    out = pd.concat([agg.drop(columns="_config"), params], axis=1)
    front = list(by) + ["rank", metric, "seeds"]
    return out[front + [c for c in out.columns if c not in front]].reset_index(drop=True)
