"""The paper's studies of GLINT-RU, each one grid over one setting: the values, the full model's value
they are tested against, and the paper's figures to print beside them. Free of torch and Ray, so
command lines and tables read it cheaply."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glintru.models.gate_activations import PAPER_GATE_ACTIVATIONS
from glintru.search.spaces import ABLATIONS


@dataclass(frozen=True)
class Study:
    """A grid over `key` (a GLINT-RU setting or a space label such as `ablation`).

    reference: the value of the full model at the paper's preset, which every other row is tested
      against. paper: test metrics the paper reports per value, with `paper_source` naming the
      table and its dataset; claim: the paper's conclusion, quoted in the study's document.
    """

    name: str
    key: str
    values: tuple[Any, ...]
    reference: Any
    title: str
    claim: str
    paper: dict[Any, dict[str, float]] = field(default_factory=dict)
    paper_source: str = ""

    def grid(self) -> dict[str, list[Any]]:
        return {self.key: list(self.values)}


def _paper(rows: dict[Any, tuple[float, float, float]]) -> dict[Any, dict[str, float]]:
    return {k: {"recall@10": r, "mrr@10": m, "ndcg@10": n} for k, (r, m, n) in rows.items()}


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            "activations",
            "gate_activation",
            PAPER_GATE_ACTIVATIONS,
            "silu",
            "Gate activation",
            "SiLU in the dense selective gate beats ReLU, Sigmoid and ELU",
            _paper(
                {
                    "silu": (0.4472, 0.2498, 0.2964),
                    "relu": (0.4293, 0.2300, 0.2770),
                    "sigmoid": (0.4328, 0.2319, 0.2793),
                    "elu": (0.4308, 0.2321, 0.2789),
                }
            ),
            "Table 6, Amazon Beauty",
        ),
        Study(
            "ablations",
            "ablation",
            tuple(ABLATIONS),
            "full",
            "Components",
            "every component (GRU, attention, temporal convolutions, gated MLP) adds accuracy; the GRU most",
            _paper(
                {
                    "full": (0.4472, 0.2498, 0.2964),
                    "no_gru": (0.4239, 0.2298, 0.2755),
                    "no_attention": (0.4296, 0.2314, 0.2781),
                    "no_conv": (0.4246, 0.2290, 0.2751),
                    "no_gated_mlp": (0.4265, 0.2308, 0.2768),
                }
            ),
            "Table 9, Amazon Beauty (Table 4 is the same study on ML-1M)",
        ),
        Study(
            "kernel",
            "kernel_size",
            (1, 3, 5, 7, 9),
            3,
            "Kernel size",
            "accuracy is stable over a wide range of kernel sizes k, and the cost barely moves (Figures 3 and 4)",
        ),
        Study(
            "layers",
            "num_layers",
            (1, 2, 3, 4),
            1,
            "Layers",
            "accuracy rises slightly with more layers while the cost rises fast (Figure 6, Table 7)",
        ),
    )
}


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; choose one of {', '.join(STUDIES)}")
    return STUDIES[name]


def study_of_grid(grid: dict[str, list[Any]]) -> Study | None:
    """The study a one-key grid runs, if its key is a study's (its values may be a subset)."""
    if len(grid) != 1:
        return None
    (key,) = grid
    return next((s for s in STUDIES.values() if s.key == key), None)


__all__ = ["STUDIES", "Study", "get_study", "study_of_grid"]


# -- running a study ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyRun:
    """Where a study runs and with what budget: every row of a study gets the same one."""

    study: Study
    data: str
    preset: str | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    max_epochs: int = 40
    eval_mode: str = "pop100"
    storage: str = "./results"
    name: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    cpus_per_trial: float = 1.0
    max_concurrent: int | None = None
    num_cpus: int | None = None
    values: tuple[Any, ...] | None = None  # a subset of the study's values
    retry_errored: bool = False  # run the errored runs of an existing experiment again

    def experiment_name(self, dataset_name: str) -> str:
        return self.name or f"study-{self.study.name}-{dataset_name}"


def study_settings(run: StudyRun, dataset_name: str, resume: bool) -> Any:
    """The search settings of the study's grid (glintru.search.settings.SearchSettings)."""
    from glintru.search.settings import SearchSettings

    values = list(run.values) if run.values is not None else list(run.study.values)
    unknown = [v for v in values if v not in run.study.values]
    if unknown:
        raise ValueError(
            f"{run.study.name}: {', '.join(map(repr, unknown))} not among its values "
            f"{', '.join(map(repr, run.study.values))}"
        )
    if run.study.reference not in values:
        raise ValueError(f"{run.study.name}: the values must include the reference {run.study.reference!r}")
    fixed = dict(run.overrides)
    if run.study.key in fixed:
        raise ValueError(f"--set {run.study.key} is what the {run.study.name} study varies; drop it")
    if run.study.key != "ablation":
        fixed.setdefault("ablation", "full")  # every other study varies the full model
    return SearchSettings(
        space="glintru",
        data=run.data,
        preset=run.preset,
        grid={run.study.key: values},
        seeds=list(run.seeds),
        max_epochs=run.max_epochs,
        eval_mode=run.eval_mode,
        storage=run.storage,
        name=run.experiment_name(dataset_name),
        overrides=fixed,
        cpus_per_trial=run.cpus_per_trial,
        max_concurrent=run.max_concurrent,
        num_cpus=run.num_cpus,
        resume=resume,
        retry_errored=resume and run.retry_errored,
    )


def errored_runs(trials: Any, study: Study) -> list[str]:
    """One line per value of the study with errored runs, which its table leaves out: how many of
    the value's runs, and the first reason."""
    if "status" not in trials.columns or f"config/{study.key}" not in trials.columns:
        return []
    lines = []
    for value, g in trials.groupby(f"config/{study.key}", sort=False):
        bad = g[g["status"] == "ERROR"]
        if len(bad):
            reasons = bad["error"].dropna().tolist() if "error" in bad else []
            why = f" ({reasons[0]})" if reasons else ""
            lines.append(f"{study.key}={value}: {len(bad)} of {len(g)} run(s) errored{why}")
    return lines


def run_study(run: StudyRun, report: str | None = None, command_line: str | None = None) -> tuple[str, str, list[str]]:
    """Run the study's grid, or resume it where an earlier run stopped, or, when it is done, only
    tabulate it (with run.retry_errored: run its errored runs again first); then write its report
    (EXP_DIR/report unless `report` names another directory). `command_line`: the line that
    started it, which an interruption prints as the one that resumes it. Returns the experiment
    directory, the study's table in Markdown, and a line per value whose errored runs the table
    leaves out (see errored_runs)."""
    from glintru.analysis import collect
    from glintru.analysis.cli import check_report_out, write_report_atomically
    from glintru.analysis.report import ReportOptions
    from glintru.analysis.studies import study_table
    from glintru.data.dataset import DatasetError, load_dataset
    from glintru.search import results
    from glintru.search.runner import run_search
    from glintru.search.settings import SearchError, merge_resumed

    try:
        dataset = load_dataset(run.data)
    except DatasetError as e:
        raise SearchError(f"--data: {e}") from None
    exp_dir = results.join(results.normalize_location(run.storage), run.experiment_name(dataset.name))
    resume = results.exists(results.join(exp_dir, results.EXPERIMENT_FILE))
    done = False
    if resume:
        stored = results.read_experiment(exp_dir)
        grid = stored.get("settings", {}).get("grid", {})
        if list(grid) != [run.study.key]:
            raise SearchError(
                f"{exp_dir} holds another experiment (grid over {', '.join(grid) or 'nothing'}), not the "
                f"{run.study.name} study; choose another --name or --storage"
            )
        done = bool(stored.get("phases")) and all(v == "done" for v in stored["phases"].values())
    settings = study_settings(run, dataset.name, resume)
    out = Path(report) if report else None
    if out is not None:  # refused before hours of training: a file, an input, a folder of other files
        check_report_out(out, [exp_dir, run.data], flag="--report")
    if done and not run.retry_errored:
        # a finished study is only tabulated, and only with the settings it ran with
        merge_resumed(settings, stored["settings"])
    else:
        run_search(settings, resume_line=command_line)
    found = collect(exp_dir)
    table = study_table(found, run.study)
    if out is None:
        out = Path(results.join(exp_dir, "report").removeprefix("file://"))
    options = ReportOptions(title=f"{run.study.title} study on {dataset.name}")
    write_report_atomically(found, out, options, [exp_dir, run.data], flag="--report")
    return exp_dir, table.to_markdown(), errored_runs(found.trials, run.study)
