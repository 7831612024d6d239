"""Bad inputs across the command lines, tried as a new user would: one table, one row per mistake.

Each row runs one CLI in-process on otherwise valid inputs with exactly one thing wrong and asserts
the exit code, that the message names the culprit (file, line, key, value or flag), and that
nothing half-written is left: the row's own paths are absent, no temporary file or directory
survives in the scratch directory, and the shared valid inputs are unchanged.

To add a CLI (e.g. `tune/search.py`), add its entry point to ENTRY_POINTS; to add a mistake, add a
Case to CASES. `ws` in the builders is the Workspace below: shared valid inputs plus a fresh scratch
directory per row.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from glintru.cli import main as glintru_main
from glintru.data.dataset import write_prepared

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "analysis"))
import analysis_fakes as fakes  # noqa: E402


def script_main(relative: str) -> Callable[[list[str]], int]:
    """main() of a script outside the package, imported so that a row costs no fresh interpreter."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(f"bad_inputs_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


ENTRY_POINTS: dict[str, Callable[[], Callable[[list[str]], int]]] = {
    "glintru": lambda: glintru_main,
    "significance": lambda: script_main("analysis/significance.py"),
    "report": lambda: script_main("analysis/report.py"),
}


@dataclass
class Workspace:
    """Valid inputs shared by every row (never to be changed by one) and a scratch dir per row."""

    shared: Path
    data: Path  # a prepared dataset: 30 users, 12 items
    other_data: Path  # another one, with 20 items: the run's weights do not fit it
    run: Path  # a finished gru4rec run on `data`
    exp: Path  # a search experiment: 4 models x 2 datasets x 2 seeds
    one_seed: Path  # an experiment with one seed per model
    scratch: Path = field(default=Path())

    def file(self, name: str, text: str | bytes) -> Path:
        path = self.scratch / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def good_ratings(self) -> Path:
        return self.file(
            "ratings.dat",
            "".join(f"{u}::{i}::{1 + (u * i) % 5}::{100 * u + i}\n" for u in range(1, 7) for i in range(1, 7)),
        )

    def copy(self, source: Path, name: str) -> Path:
        return Path(shutil.copytree(source, self.scratch / name))

    def run_with_config(self, change: Callable[[dict], None]) -> Path:
        run = self.copy(self.run, "run")
        config = json.loads((run / "config.json").read_text())
        change(config)
        (run / "config.json").write_text(json.dumps(config))
        return run

    def report_dir(self, name: str) -> Path:
        """An earlier, complete report (report.json marks it), as a previous report.py run leaves it."""
        out = self.scratch / name
        (out / "tables").mkdir(parents=True)
        (out / "report.json").write_text("{}")
        (out / "report.md").write_text("# earlier\n")
        return out


@dataclass(frozen=True)
class Case:
    id: str
    cli: str  # a key of ENTRY_POINTS
    argv: Callable[[Workspace], list[str]]
    code: int  # 2 for every mistake: argparse's or a caught error
    message: str  # regex that must match stderr, naming the culprit
    absent: Callable[[Workspace], list[Path]] = lambda ws: []


def _prepare(ws: Workspace, *args: str, out: str = "prepared") -> list[str]:
    return ["prepare", *args, "--out", str(ws.scratch / out)]


def _evaluate(run: Path, *args: str) -> list[str]:
    return ["evaluate", "--run", str(run), "--device", "cpu", *args]


def _train(
    ws: Workspace, *args: str, model: str = "gru4rec", data: Path | None = None, out: Path | None = None
) -> list[str]:
    """A small, valid `glintru train` call (to a fresh `trained` dir) plus `args`; argparse keeps the
    last of a repeated flag, so `args` may replace --epochs."""
    return [
        "train",
        "--data",
        str(data or ws.data),
        "--model",
        model,
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        "1",
        "--eval-mode",
        "uni5",
        "--set",
        "hidden_size=8 max_length=10",
        *args,
        "--out",
        str(out or ws.scratch / "trained"),
    ]


def _trained(ws: Workspace) -> list[Path]:
    return [ws.scratch / "trained"]


def _bogus_field(config: dict) -> None:
    config["model_config"]["bogus"] = 1


CASES = [
    # --- glintru prepare: the input file, its lines and the recipe
    Case(
        "prepare-missing-input",
        "glintru",
        lambda ws: _prepare(ws, "--format", "movielens", "--input", str(ws.scratch / "nope.dat")),
        2,
        r"nope\.dat: no such file or directory",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-rating-not-a-number",
        "glintru",
        lambda ws: _prepare(
            ws, "--format", "movielens", "--input", str(ws.file("bad.dat", "1::2::5::100\n1::3::x::101\n"))
        ),
        2,
        r"bad\.dat line 2: rating 'x' is not a number",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-short-line",
        "glintru",
        lambda ws: _prepare(ws, "--format", "movielens", "--input", str(ws.file("short.dat", "1::2::5::100\n1::3\n"))),
        2,
        r"short\.dat line 2: expected 4 '::'-separated fields .* got 2 fields",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-empty-file",
        "glintru",
        lambda ws: _prepare(ws, "--format", "movielens", "--input", str(ws.file("empty.dat", ""))),
        2,
        r"empty\.dat line 1: file is empty",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-binary-file",
        "glintru",
        lambda ws: _prepare(ws, "--format", "movielens", "--input", str(ws.file("bin.dat", b"\x00\xff\xfe" * 50))),
        2,
        r"bin\.dat line 1: control character NUL in the text \(a binary or damaged file\?\)",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-utf16-file",
        "glintru",
        lambda ws: _prepare(
            ws, "--format", "movielens", "--input", str(ws.file("u16.dat", "\ufeff1::2::5::100\n".encode("utf-16-le")))
        ),
        2,
        r"u16\.dat line 1: control character NUL in the text \(UTF-16 text; save it as UTF-8\)",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-nul-in-a-line",
        "glintru",
        lambda ws: _prepare(ws, "--format", "csv", "--input", str(ws.file("log.csv", b"user,item\n1,2\n1\x00,3\n"))),
        2,
        r"log\.csv line 3: control character NUL in the text",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-nul-escaped-in-json",
        "glintru",
        lambda ws: _prepare(
            ws,
            "--format",
            "amazon-json",
            "--input",
            str(
                ws.file(
                    "reviews.json",
                    '{"reviewerID": "a", "asin": "b", "overall": 5, "unixReviewTime": 1}\n'
                    '{"reviewerID": "a\\u0000", "asin": "c", "overall": 5, "unixReviewTime": 2}\n',
                )
            ),
        ),
        2,
        r"reviews\.json line 2: reviewerID 'a\\x00' holds control character NUL",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-csv-field-past-the-csv-limit",
        "glintru",
        lambda ws: _prepare(
            ws,
            "--format",
            "csv",
            "--input",
            str(ws.file("log.csv", 'user,item,note\n1,2,x\n1,3,"' + "x" * 200_000 + '"\n1,4\n')),
        ),
        2,
        r"log\.csv line 3: a field longer than 131,072 characters",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-csv-quote-left-open",
        "glintru",
        lambda ws: _prepare(ws, "--format", "csv", "--input", str(ws.file("log.csv", 'user,item\n1,2\n1,"3\n1,4\n'))),
        2,
        r"log\.csv line 3: item column 'item' runs past the end of the line \(a quote '\"' left open\?\)",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-csv-nan-time",
        "glintru",
        lambda ws: _prepare(
            ws, "--format", "csv", "--input", str(ws.file("log.csv", "user,item,timestamp\n1,2,3\n1,3,nan\n"))
        ),
        2,
        r"log\.csv line 3: time nan is not a finite number",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-recbole-infinite-time",
        "glintru",
        lambda ws: _prepare(
            ws,
            "--format",
            "recbole",
            "--input",
            str(ws.file("log.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t1.5\n1\t3\tinf\n")),
        ),
        2,
        r"log\.inter line 3: timestamp:float inf is not a finite number",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-invalid-json-line",
        "glintru",
        lambda ws: _prepare(
            ws,
            "--format",
            "amazon-json",
            "--input",
            str(
                ws.file(
                    "reviews.json", '{"reviewerID": "a", "asin": "b", "overall": 5, "unixReviewTime": 1}\n{not json\n'
                )
            ),
        ),
        2,
        r"reviews\.json line 2: invalid JSON",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-csv-missing-column",
        "glintru",
        lambda ws: _prepare(
            ws,
            "--format",
            "csv",
            "--input",
            str(ws.file("log.csv", "uid,iid,ts\n1,2,3\n")),
            "--columns",
            "user=uid,item=item_id",
        ),
        2,
        r"log\.csv line 1: missing column 'item_id' for item \(columns: uid, iid, ts\)",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-csv-bad-mapping",
        "glintru",
        lambda ws: _prepare(
            ws, "--format", "csv", "--input", str(ws.file("log.csv", "uid,iid\n1,2\n")), "--columns", "userid"
        ),
        2,
        r"bad column mapping 'userid'; expected key=column",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-columns-without-csv",
        "glintru",
        lambda ws: _prepare(ws, "--format", "movielens", "--input", str(ws.good_ratings()), "--columns", "user=a"),
        2,
        r"column mapping only applies to --format csv, not 'movielens'",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-negative-k-core",
        "glintru",
        lambda ws: _prepare(ws, "--format", "movielens", "--input", str(ws.good_ratings()), "--k-core", "-1"),
        2,
        r"k_core must be >= 1, got -1",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-filters-leave-nothing",
        "glintru",
        lambda ws: _prepare(ws, "--format", "movielens", "--input", str(ws.good_ratings()), "--min-rating", "9"),
        2,
        r"no interactions left after filtering \(min_rating=9\.0",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-missing-items-file",
        "glintru",
        lambda ws: _prepare(
            ws, "--format", "movielens", "--input", str(ws.good_ratings()), "--items", str(ws.scratch / "movies.dat")
        ),
        2,
        r"movies\.dat: no such file or directory",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-bad-items-line",
        "glintru",
        lambda ws: _prepare(
            ws,
            "--format",
            "movielens",
            "--input",
            str(ws.good_ratings()),
            "--items",
            str(ws.file("movies.dat", "1::Toy Story (1995)::Comedy\n2::Jumanji\n")),
        ),
        2,
        r"movies\.dat line 2: expected 3 '::'-separated fields",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-output-holds-other-files",
        "glintru",
        lambda ws: _prepare(
            ws,
            "--format",
            "movielens",
            "--input",
            str(ws.good_ratings()),
            "--overwrite",
            out=ws.file("taken/notes.txt", "mine").parent.name,
        ),
        2,
        r"--out .*taken holds files glintru did not write \(notes\.txt\), not a prepared dataset .*; choose another --out",
        lambda ws: [ws.scratch / "taken" / "meta.json"],
    ),
    Case(
        "prepare-output-exists",
        "glintru",
        lambda ws: _prepare(
            ws, "--format", "movielens", "--input", str(ws.good_ratings()), out=ws.copy(ws.data, "taken").name
        ),
        2,
        r"taken already exists; choose another --out or pass --overwrite",
    ),
    Case(
        "prepare-overwrite-the-folder-of-its-input",
        "glintru",
        lambda ws: _prepare(ws, "--format", "movielens", "--input", str(ws.good_ratings()), "--overwrite", out="."),
        2,
        r"--out .*scratch holds this command's input \(--input .*ratings\.dat\); choose another --out",
    ),
    Case(
        "prepare-unknown-format",
        "glintru",
        lambda ws: _prepare(ws, "--format", "parquet", "--input", str(ws.good_ratings())),
        2,
        r"argument --format: invalid choice: 'parquet'",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-no-format",
        "glintru",
        lambda ws: _prepare(ws, "--input", str(ws.good_ratings())),
        2,
        r"needs --format FORMAT or --dataset NAME",
        lambda ws: [ws.scratch / "prepared"],
    ),
    Case(
        "prepare-dataset-format-clash",
        "glintru",
        lambda ws: _prepare(ws, "--dataset", "ml-1m", "--format", "csv", "--input", str(ws.good_ratings())),
        2,
        r"ml-1m is registered as --format movielens, not csv",
        lambda ws: [ws.scratch / "prepared"],
    ),
    # --- glintru stats: the dataset directory
    Case(
        "stats-missing-directory",
        "glintru",
        lambda ws: ["stats", str(ws.scratch / "nodata")],
        2,
        r"nodata: no such dataset directory",
    ),
    Case(
        "stats-not-a-dataset",
        "glintru",
        lambda ws: ["stats", str(ws.file("empty/notes.txt", "").parent)],
        2,
        r"empty: not a prepared dataset, missing sequences\.parquet, items\.parquet, meta\.json",
    ),
    Case(
        "stats-damaged-meta",
        "glintru",
        lambda ws: ["stats", str(_damaged(ws, "meta.json", "{oops"))],
        2,
        r"ds/meta\.json line 1: invalid JSON",
    ),
    Case(
        "stats-damaged-sequences",
        "glintru",
        lambda ws: ["stats", str(_damaged(ws, "sequences.parquet", "garbage"))],
        2,
        r"ds/sequences\.parquet",
    ),
    Case(
        "stats-damaged-parquet-page",
        "glintru",
        lambda ws: ["stats", str(_edited(ws, _flip_page_bytes))],
        2,
        r"ds/sequences\.parquet: not a readable Parquet file \(.*CRC.*\); the dataset was changed or damaged",
    ),
    Case(
        "stats-item-id-out-of-range",
        "glintru",
        lambda ws: ["stats", str(_edited(ws, _item_id_99))],
        2,
        r"ds/sequences\.parquet: user 0 holds item id 99, outside 1\.\.12 \(items\.parquet has 12 items\)",
    ),
    Case(
        "stats-sequences-without-items",
        "glintru",
        lambda ws: ["stats", str(_edited(ws, lambda ds: _rewrite(ds, "sequences.parquet", _drop_items)))],
        2,
        r"ds/sequences\.parquet: no column 'items' \(columns: user, original_id\); the dataset was changed",
    ),
    Case(
        "stats-edited-counts",
        "glintru",
        lambda ws: ["stats", str(_edited(ws, lambda ds: _edit_meta(ds, users=31)))],
        2,
        r"ds/meta\.json: stats\.users is 31, but sequences\.parquet holds 30; .*prepare it again",
    ),
    Case(
        "stats-edited-popularity",
        "glintru",
        lambda ws: ["stats", str(_edited(ws, _popularity_plus_one))],
        2,
        r"ds/items\.parquet: popularity of item 1 is \d+, but sequences\.parquet holds it \d+ times",
    ),
    Case(
        "stats-items-reordered",  # the same counts and popularity: only the fingerprint tells
        "glintru",
        lambda ws: ["stats", str(_edited(ws, _swap_first_items))],
        2,
        r"ds: the tables hash to fingerprint [0-9a-f]{8}, but meta\.json records [0-9a-f]{8}; "
        r"the dataset was changed since it was prepared; prepare it again",
    ),
    Case(
        "train-on-edited-counts",
        "glintru",
        lambda ws: _train(ws, data=_edited(ws, lambda ds: _edit_meta(ds, interactions=7))),
        2,
        r"ds/meta\.json: stats\.interactions is 7, but sequences\.parquet holds 240",
        _trained,
    ),
    # --- glintru synthetic: sizes and shapes
    Case(
        "synthetic-zero-users",
        "glintru",
        lambda ws: ["synthetic", "--users", "0", "--out", str(ws.scratch / "syn")],
        2,
        r"need n_users >= 1 and n_items >= 2, got 0 and",
        lambda ws: [ws.scratch / "syn"],
    ),
    Case(
        "synthetic-one-item",
        "glintru",
        lambda ws: ["synthetic", "--users", "5", "--items", "1", "--out", str(ws.scratch / "syn")],
        2,
        r"n_items >= 2, got 5 and 1",
        lambda ws: [ws.scratch / "syn"],
    ),
    Case(
        "synthetic-short-sequences",
        "glintru",
        lambda ws: ["synthetic", "--avg-length", "1", "--out", str(ws.scratch / "syn")],
        2,
        r"avg_length must be >= 3, got 1\.0",
        lambda ws: [ws.scratch / "syn"],
    ),
    Case(
        "synthetic-like-with-sizes",
        "glintru",
        lambda ws: ["synthetic", "--like", "beauty", "--users", "5", "--out", str(ws.scratch / "syn")],
        2,
        r"--like beauty sets the sizes itself; drop --users",
        lambda ws: [ws.scratch / "syn"],
    ),
    Case(
        "synthetic-scale-out-of-range",
        "glintru",
        lambda ws: ["synthetic", "--like", "beauty", "--scale", "2", "--out", str(ws.scratch / "syn")],
        2,
        r"scale must lie in \(0, 1\], got 2\.0",
        lambda ws: [ws.scratch / "syn"],
    ),
    Case(
        "synthetic-scale-without-like",
        "glintru",
        lambda ws: ["synthetic", "--scale", "0.5", "--out", str(ws.scratch / "syn")],
        2,
        r"--scale applies to --like shapes only",
        lambda ws: [ws.scratch / "syn"],
    ),
    Case(
        "synthetic-output-holds-other-files",
        "glintru",
        lambda ws: ["synthetic", "--users", "5", "--items", "4", "--out", str(ws.file("syn/notes.txt", "").parent)],
        2,
        r"--out .*syn holds files glintru did not write \(notes\.txt\), not a prepared dataset",
        lambda ws: [ws.scratch / "syn" / "meta.json"],
    ),
    Case(
        "synthetic-overwrite-a-run",
        "glintru",
        lambda ws: ["synthetic", "--users", "5", "--items", "4", "--overwrite", "--out", str(ws.copy(ws.run, "syn"))],
        2,
        r"--out .*syn holds a run directory \(glintru train\), not a prepared dataset",
        lambda ws: [ws.scratch / "syn" / "meta.json"],
    ),
    # --- glintru evaluate: the flags, then the run directory
    Case(
        "evaluate-not-a-run",
        "glintru",
        lambda ws: _evaluate(ws.file("notrun/notes.txt", "").parent),
        2,
        r"notrun is not a finished run directory \(missing config\.json\)",
    ),
    Case(
        "evaluate-unknown-mode",
        "glintru",
        lambda ws: _evaluate(ws.run, "--eval-mode", "pop-3"),
        2,
        r"unknown evaluation mode 'pop-3'",
        lambda ws: [ws.run / "eval-pop-3.json"],
    ),
    Case(
        "evaluate-negative-seed",
        "glintru",
        lambda ws: _evaluate(ws.run, "--eval-mode", "uni5", "--seed", "-1"),
        2,
        r"--seed -1: .*non-negative",
        lambda ws: [ws.run / "eval-uni5.json"],
    ),
    Case("evaluate-unknown-device", "glintru", lambda ws: _evaluate(ws.run, "--device", "tpu"), 2, r"--device tpu: "),
    Case(
        "evaluate-unknown-split",
        "glintru",
        lambda ws: _evaluate(ws.run, "--splits", "train"),
        2,
        r"argument --splits: invalid choice: 'train'",
    ),
    Case(
        "evaluate-damaged-config",
        "glintru",
        lambda ws: _evaluate(_damaged(ws, "config.json", '{"model": "gru4rec",\n oops', source="run")),
        2,
        r"ds/config\.json line 2: invalid JSON",
    ),
    Case(
        "evaluate-config-without-model",
        "glintru",
        lambda ws: _evaluate(ws.run_with_config(lambda c: c.pop("model"))),
        2,
        r"run/config\.json: no key 'model'",
        lambda ws: [ws.scratch / "run" / "eval-uni10.json"],
    ),
    Case(
        "evaluate-config-unknown-model",
        "glintru",
        lambda ws: _evaluate(ws.run_with_config(lambda c: c.update(model="gru5rec"))),
        2,
        r"run/config\.json: unknown model 'gru5rec'",
    ),
    Case(
        "evaluate-config-unknown-field",
        "glintru",
        lambda ws: _evaluate(ws.run_with_config(_bogus_field)),
        2,
        r"run/config\.json: model_config does not fit model 'gru4rec' .*'bogus'",
    ),
    Case(
        "evaluate-damaged-weights",
        "glintru",
        lambda ws: _evaluate(_damaged(ws, "model.pt", b"not a state dict", source="run")),
        2,
        r"ds/model\.pt: not readable as model weights",
        lambda ws: [ws.scratch / "ds" / "eval-uni10.json"],
    ),
    Case(
        "evaluate-weights-for-another-dataset",
        "glintru",
        lambda ws: _evaluate(ws.run, "--data", str(ws.other_data)),
        2,
        r"model\.pt: the weights do not fit gru4rec on .*other.*size mismatch for item_embedding\.weight",
    ),
    Case(
        "evaluate-damaged-dataset",
        "glintru",
        lambda ws: _evaluate(ws.run, "--data", str(_damaged(ws, "meta.json", ""))),
        2,
        r"ds/meta\.json line 1: invalid JSON",
    ),
    Case(
        "evaluate-data-other-than-trained-on",
        "glintru",
        lambda ws: _evaluate(ws.run_with_config(lambda c: c["dataset"].update(fingerprint="0" * 64))),
        2,
        r"data holds other data than .*run was trained on \(fingerprint [0-9a-f]{8}, the run's 00000000\); "
        r"pass the run's own dataset with --data",
        lambda ws: [ws.scratch / "run" / "eval-uni10.json"],
    ),
    # --- glintru train: every setting is refused before the data is read or an epoch runs
    Case(
        "train-set-wrong-type",
        "glintru",
        lambda ws: _train(ws, "--set", "kernel_size=abc", model="glintru"),
        2,
        r"GLINTRUConfig setting kernel_size='abc' \(str\) is invalid: expected int",
        _trained,
    ),
    Case(
        "train-set-lr-not-a-number",
        "glintru",
        lambda ws: _train(ws, "--set", "lr=fast"),
        2,
        r"training setting lr='fast' \(str\) is invalid: expected float",
        _trained,
    ),
    Case(
        "train-set-bool-as-word",
        "glintru",
        lambda ws: _train(ws, "--set", "bf16=yes"),
        2,
        r"training setting bf16='yes' \(str\) is invalid: expected bool",
        _trained,
    ),
    Case(
        "train-set-unknown-key",
        "glintru",
        lambda ws: _train(ws, "--set", "hiden_size=8"),
        2,
        r"unknown setting\(s\) hiden_size for model gru4rec; model keys: .*hidden_size",
        _trained,
    ),
    Case(
        "train-set-without-value",
        "glintru",
        lambda ws: _train(ws, "--set", "dropout"),
        2,
        r"--set expects key=value, got 'dropout'",
        _trained,
    ),
    Case(
        "train-set-key-twice",
        "glintru",
        lambda ws: _train(ws, "--set", "lr=0.1 lr=0.2"),
        2,
        r"--set sets 'lr' twice \(0\.1 and 0\.2\); keep one",
        _trained,
    ),
    Case(
        "train-ks-without-10",
        "glintru",
        lambda ws: _train(ws, "--set", "ks=5,20"),
        2,
        r"ks must contain 10 .*got \(5, 20\)",
        _trained,
    ),
    Case(
        "train-unknown-eval-mode",
        "glintru",
        lambda ws: _train(ws, "--eval-mode", "pop-3"),
        2,
        r"unknown evaluation mode 'pop-3'",
        _trained,
    ),
    Case(
        "train-recbole-uniform-mode",
        "glintru",
        lambda ws: _train(ws, "--eval-mode", "uni5-recbole"),
        2,
        r"unknown evaluation mode 'uni5-recbole': '-recbole' names a popularity basis",
        _trained,
    ),
    Case(
        "train-unknown-device",
        "glintru",
        lambda ws: _train(ws, "--device", "tpu"),
        2,
        r"device 'tpu' is not a device; expected auto, cpu, cuda or cuda:N",
        _trained,
    ),
    Case(
        "train-zero-epochs",
        "glintru",
        lambda ws: _train(ws, "--epochs", "0"),
        2,
        r"epochs must be >= 1, got 0",
        _trained,
    ),
    Case(
        "train-zero-patience",
        "glintru",
        lambda ws: _train(ws, "--patience", "0"),
        2,
        r"patience must be >= 1, got 0",
        _trained,
    ),
    Case(
        "train-unknown-model",
        "glintru",
        lambda ws: _train(ws, model="glintru2"),
        2,
        r"argument --model: invalid choice: 'glintru2'",
        _trained,
    ),
    Case(
        "train-missing-data",
        "glintru",
        lambda ws: _train(ws, data=ws.scratch / "nodata"),
        2,
        r"nodata: no such dataset directory",
        _trained,
    ),
    Case(
        "train-not-a-dataset",
        "glintru",
        lambda ws: _train(ws, data=ws.file("empty/notes.txt", "").parent),
        2,
        r"empty: not a prepared dataset",
        _trained,
    ),
    Case(
        "train-one-pass-on-bert4rec",
        "glintru",
        lambda ws: _train(ws, "--set", "one_pass=true", model="bert4rec"),
        2,
        r"one-pass training refused for BERT4Rec .*train per prefix \(one_pass=false\)",
        _trained,
    ),
    Case(
        "train-resume-without-a-run",
        "glintru",
        lambda ws: _train(ws, "--resume"),
        2,
        r"--resume: .*trained holds no interrupted run \(no checkpoint/checkpoint\.pt\)",
        _trained,
    ),
    Case(
        "train-resume-and-overwrite",
        "glintru",
        lambda ws: _train(ws, "--resume", "--overwrite"),
        2,
        r"argument --overwrite: not allowed with argument --resume",
        _trained,
    ),
    Case(
        "train-overwrite-its-own-dataset",
        "glintru",
        lambda ws: _train(ws, "--overwrite", out=ws.data),
        2,
        r"--out .*/data is this command's input \(--data .*/data\); choose another --out",
    ),
    Case(
        "train-overwrite-the-folder-of-its-dataset",
        "glintru",
        lambda ws: _train(ws, "--overwrite", out=ws.shared),
        2,
        r"--out .* holds this command's input \(--data .*/data\); choose another --out",
    ),
    Case(
        "train-overwrite-a-folder-of-other-files",
        "glintru",
        lambda ws: _train(ws, "--overwrite", out=ws.file("home/.ssh/id_ed25519", "secret").parents[1]),
        2,
        r"--out .*home holds files glintru did not write \(\.ssh/\), not a run directory",
        lambda ws: [ws.scratch / "home" / "config.json"],
    ),
    Case(
        "train-into-a-prepared-dataset",
        "glintru",
        lambda ws: _train(ws, out=ws.copy(ws.other_data, "other")),
        2,
        r"--out .*other holds a prepared dataset \(glintru prepare, glintru synthetic\), not a run directory",
        lambda ws: [ws.scratch / "other" / "config.json"],
    ),
    Case(
        "train-out-holds-a-finished-run",
        "glintru",
        lambda ws: _train(ws, out=ws.copy(ws.run, "finished")),
        2,
        r"finished already holds a finished run; choose another --out or pass --overwrite",
        lambda ws: [ws.scratch / "finished" / "checkpoint"],
    ),
    # values of the right type that no run means
    Case(
        "train-negative-grad-clip",
        "glintru",
        lambda ws: _train(ws, "--set", "grad_clip=-1"),
        2,
        r"grad_clip must be positive \(the largest gradient norm a step keeps; None clips nothing\), got -1\.0",
        _trained,
    ),
    Case(
        "train-zero-threads",
        "glintru",
        lambda ws: _train(ws, "--set", "num_threads=0"),
        2,
        r"num_threads must be >= 1 \(None keeps torch's default\), got 0",
        _trained,
    ),
    Case(
        "train-negative-weight-decay",
        "glintru",
        lambda ws: _train(ws, "--set", "weight_decay=-1"),
        2,
        r"weight_decay must be >= 0, got -1\.0",
        _trained,
    ),
    Case(
        "train-negative-seed",
        "glintru",
        lambda ws: _train(ws, "--seed", "-1"),
        2,
        r"seed must be an integer in \[0, 2\*\*32\), got -1",
        _trained,
    ),
    Case(
        "train-lr-overflows-the-first-step",
        "glintru",
        lambda ws: _train(ws, "--set", "lr=1e300"),
        2,
        r"lr=1e\+300 overflows the first step \(a float32 weight holds at most 3\.4e\+38\)",
        _trained,
    ),
    Case(
        "train-kernel-wider-than-a-history",
        "glintru",
        lambda ws: _train(ws, "--set", "kernel_size=11", model="glintru"),
        2,
        r"kernel_size 11 exceeds max_length 10: the convolution window must fit in a history",
        _trained,
    ),
    Case(
        "train-as-many-negatives-as-items",
        "glintru",
        lambda ws: _train(ws, "--eval-mode", "uni12"),
        2,
        r"eval_mode uni12 draws 12 negatives, but the dataset has only 12 items: .*use eval_mode full",
        _trained,
    ),
    Case(
        "evaluate-as-many-negatives-as-items",
        "glintru",
        lambda ws: _evaluate(ws.run, "--eval-mode", "pop12"),
        2,
        r"eval_mode pop12 draws 12 negatives, but the dataset has only 12 items",
        lambda ws: [ws.run / "eval-pop12.json"],
    ),
    # --resume: only what a resumed run applies, from a checkpoint it can read
    Case(
        "train-resume-with-another-lr",
        "glintru",
        lambda ws: _train(ws, "--resume", "--set", "lr=0.01", out=_interrupted(ws)),
        2,
        r"--resume continues the run in .*cut with the settings it was trained with; these would change "
        r"them: --set lr \(the run has 0\.001, given 0\.01\)\. Drop them",
        lambda ws: [ws.scratch / "cut" / "metrics.json"],
    ),
    Case(
        "train-resume-with-another-eval-mode",
        "glintru",
        lambda ws: _train(ws, "--resume", "--eval-mode", "uni6", out=_interrupted(ws)),
        2,
        r"--eval-mode \(the run has 'uni5', given 'uni6'\)",
        lambda ws: [ws.scratch / "cut" / "metrics.json"],
    ),
    Case(
        "train-resume-another-model",
        "glintru",
        lambda ws: _train(ws, "--resume", model="bert4rec", out=_interrupted(ws)),
        2,
        r"--model \(the run has 'gru4rec', given 'bert4rec'\)",
        lambda ws: [ws.scratch / "cut" / "metrics.json"],
    ),
    Case(
        "train-resume-on-other-data",
        "glintru",
        lambda ws: _train(ws, "--resume", data=ws.other_data, out=_interrupted(ws)),
        2,
        r"--data \(the run was trained on .*/data, fingerprint \w+; given .*/other\)",
        lambda ws: [ws.scratch / "cut" / "metrics.json"],
    ),
    Case(
        "train-resume-damaged-checkpoint",
        "glintru",
        lambda ws: _train(ws, "--resume", out=_interrupted(ws, b"not a checkpoint")),
        2,
        r"cut/checkpoint/checkpoint\.pt: not a readable training checkpoint \(UnpicklingError\); the run "
        r"cannot continue from it: start it again",
        lambda ws: [ws.scratch / "cut" / "metrics.json"],
    ),
    # --- analysis/significance.py
    Case(
        "significance-not-an-experiment",
        "significance",
        lambda ws: [str(ws.file("x/notes.txt", "").parent)],
        2,
        r"x: neither an experiment directory \(no trials\.parquet\) nor a run directory",
    ),
    Case(
        "significance-trials-without-model",
        "significance",
        lambda ws: [str(_experiment_without(ws, "model"))],
        2,
        r"trials\.parquet: missing column\(s\) model",
    ),
    Case(
        "significance-missing-user-metrics",
        "significance",
        lambda ws: [str(_experiment_missing_users(ws))],
        2,
        r"no per-user metrics for trial .*users/.*\.parquet is missing",
    ),
    Case(
        "significance-unknown-metric",
        "significance",
        lambda ws: [str(ws.exp), "--metric", "ndcg@100"],
        2,
        r"no column test/ndcg@100 in the trials",
    ),
    Case(
        "significance-unknown-select",
        "significance",
        lambda ws: [str(ws.exp), "--select", "valid/ndgc@10"],
        2,
        r"no column 'valid/ndgc@10' in the trials; available: valid/recall@10",
    ),
    Case(
        "significance-unknown-model",
        "significance",
        lambda ws: [str(ws.exp), "--models", "glinru,sasrec"],
        2,
        r"no model 'glinru' in the trials; they have glintru, gru4rec",
    ),
    Case(
        "significance-unknown-dataset",
        "significance",
        lambda ws: [str(ws.exp), "--datasets", "ml-1m,beuty"],
        2,
        r"no dataset 'beuty' in the trials; they have beauty, ml-1m",
    ),
    Case(
        "significance-reference-not-a-row",
        "significance",
        lambda ws: [str(ws.exp), "--models", "glintru,sasrec", "--reference", "gru4rec"],
        2,
        r"reference 'gru4rec' is not a row of the table; rows: glintru, sasrec",
    ),
    Case(
        "significance-alpha-out-of-range",
        "significance",
        lambda ws: [str(ws.exp), "--alpha", "5"],
        2,
        r"alpha must lie strictly between 0 and 1, got 5\.0",
    ),
    Case(
        "significance-only-without-value",
        "significance",
        lambda ws: [str(ws.exp), "--only", "config/lr"],
        2,
        r"expected COLUMN=VALUE .*got 'config/lr'",
    ),
    Case(
        "significance-only-unknown-column",
        "significance",
        lambda ws: [str(ws.exp), "--only", "config/gate=relu"],
        2,
        r"no column 'config/gate' in the trials",
    ),
    Case(
        "significance-unknown-ablation",
        "significance",
        lambda ws: [str(ws.exp), "--ablation", "config/gate"],
        2,
        r"no column 'config/gate' in the trials",
    ),
    Case(
        "significance-welch-with-one-seed",
        "significance",
        lambda ws: [str(ws.one_seed), "--test", "welch"],
        2,
        r"[Ww]elch.*(seed|seeds)",
    ),
    Case(
        "significance-unknown-test",
        "significance",
        lambda ws: [str(ws.exp), "--test", "ttest"],
        2,
        r"argument --test: invalid choice: 'ttest'",
    ),
    Case(
        "significance-out-is-a-directory",
        "significance",
        lambda ws: [str(ws.exp), "--out", str(ws.file("tables/notes.txt", "").parent)],
        2,
        r"--out .*tables is a directory; give a file name",
    ),
    Case(
        "significance-out-under-a-file",
        "significance",
        lambda ws: [str(ws.exp), "--out", str(ws.file("table2.md", "mine") / "x.md")],
        2,
        r"--out .*table2\.md/x\.md: .*table2\.md is a file, not a directory",
    ),
    Case(
        "significance-runs-of-different-data",
        "significance",
        lambda ws: [
            str(_fake_run(ws, "a", "glintru")),
            str(_fake_run(ws, "b", "sasrec", fingerprint="91c0" + "0" * 60)),
            "--metric",
            "ndcg@10",
        ],
        2,
        r"/a \(dataset beauty fingerprint [0-9a-f]{8}\) and .*/b \(dataset beauty fingerprint 91c00000\) were "
        r"trained on different data; compare runs of one dataset",
    ),
    Case(
        "significance-pop100-beside-full",
        "significance",
        lambda ws: [
            str(_fake_run(ws, "a", "glintru")),
            str(_fake_run(ws, "b", "sasrec", eval_mode="full")),
            "--metric",
            "ndcg@10",
        ],
        2,
        r"/a \(protocol pop100, negative seed 0\) and .*/b \(protocol full\) were evaluated under different "
        r"protocols; compare runs of one protocol",
    ),
    Case(
        "significance-other-negatives",
        "significance",
        lambda ws: [
            str(_fake_run(ws, "a", "glintru")),
            str(_fake_run(ws, "b", "sasrec", seed=1)),
            "--metric",
            "ndcg@10",
        ],
        2,
        r"/a \(GLINT-RU on Amazon Beauty: pop100, negative seed 0\) and .*/b \(SASRec on Amazon Beauty: pop100, "
        r"negative seed 1\) were ranked against different negatives",
    ),
    Case(
        "significance-input-with-nothing-to-tabulate",
        "significance",
        lambda ws: [str(ws.exp), str(_failed_experiment(ws))],
        2,
        r"failed: nothing to tabulate: none of its 1 trial\(s\) was trained to its end, tested and scored \(1 ERROR\)",
    ),
    # --- analysis/report.py: a failing report leaves no directory behind
    Case(
        "report-unknown-metric",
        "report",
        lambda ws: [str(ws.exp), "--metric", "ndcg@100", "--out", str(ws.scratch / "report")],
        2,
        r"no column test/ndcg@100 in the trials",
        lambda ws: [ws.scratch / "report"],
    ),
    Case(
        "report-unknown-reference",
        "report",
        lambda ws: [str(ws.exp), "--reference", "glinru", "--out", str(ws.scratch / "report")],
        2,
        r"reference 'glinru' is not a row of the table",
        lambda ws: [ws.scratch / "report"],
    ),
    Case(
        "report-unknown-ablation",
        "report",
        lambda ws: [str(ws.exp), "--ablation", "config/gate", "--out", str(ws.scratch / "report")],
        2,
        r"--ablation config/gate: no such column in the trials; config columns: config/hidden_size",
        lambda ws: [ws.scratch / "report"],
    ),
    Case(
        "report-top-zero",
        "report",
        lambda ws: [str(ws.exp), "--top", "0", "--out", str(ws.scratch / "report")],
        2,
        r"argument --top: must be at least 1, got 0",
        lambda ws: [ws.scratch / "report"],
    ),
    Case(
        "report-alpha-out-of-range",
        "report",
        lambda ws: [str(ws.exp), "--alpha", "0", "--out", str(ws.scratch / "report")],
        2,
        r"alpha must lie strictly between 0 and 1, got 0\.0",
        lambda ws: [ws.scratch / "report"],
    ),
    Case(
        "report-not-an-experiment",
        "report",
        lambda ws: [str(ws.scratch / "missing"), "--out", str(ws.scratch / "report")],
        2,
        r"missing: neither an experiment directory",
        lambda ws: [ws.scratch / "report"],
    ),
    Case(
        "report-out-is-a-file",
        "report",
        lambda ws: [str(ws.exp), "--out", str(ws.file("report.md", "mine"))],
        2,
        r"--out .*report\.md: exists and is not a directory",
    ),
    Case(
        "report-out-holds-other-files",
        "report",
        lambda ws: [str(ws.exp), "--out", str(ws.file("mine/notes.txt", "mine").parent)],
        2,
        r"--out .*mine holds files glintru did not write \(notes\.txt\), not a report",
        lambda ws: [ws.scratch / "mine" / "report.md", ws.scratch / "mine" / "tables"],
    ),
    Case(
        "report-out-is-above-its-experiment",
        "report",
        lambda ws: [str(ws.exp), "--out", str(ws.shared)],
        2,
        r"--out .* holds this command's input \(experiment .*/exp\); choose another --out",
    ),
    Case(
        "report-earlier-report-with-other-files",
        "report",
        lambda ws: [str(ws.exp), "--out", str(_with_file(ws.report_dir("earlier"), "mine.txt"))],
        2,
        r"--out .*earlier holds a report \(analysis/report\.py\), but also files glintru did not write \(mine\.txt\)",
        lambda ws: [ws.scratch / "earlier" / "report.html"],
    ),
    Case(
        "report-failure-keeps-the-earlier-report",
        "report",
        lambda ws: [str(ws.exp), "--metric", "ndcg@100", "--out", str(ws.report_dir("earlier"))],
        2,
        r"no column test/ndcg@100",
        lambda ws: [ws.scratch / "earlier" / "report.html"],
    ),
]


def _with_file(directory: Path, name: str) -> Path:
    (directory / name).write_text("mine")
    return directory


def _interrupted(ws: Workspace, checkpoint: bytes = b"") -> Path:
    """A run of `_train`'s settings stopped after an epoch, as `glintru train` leaves it: config.json
    and checkpoint/checkpoint.pt, here holding `checkpoint` (each row is refused before reading it,
    or because of it)."""
    import dataclasses

    from glintru.data.dataset import load_dataset
    from glintru.train import TrainConfig, resolve_configs

    model_cfg, cfg = resolve_configs(
        "gru4rec", None, {"hidden_size": 8, "max_length": 10}, TrainConfig(epochs=1, eval_mode="uni5", device="cpu")
    )
    ds = load_dataset(ws.data)
    dataset = {"path": str(ws.data), "name": ds.name, "stats": ds.meta["stats"], "fingerprint": ds.fingerprint}
    config = {"model": "gru4rec", "preset": None, "model_config": model_cfg.to_dict(), "dataset": dataset}
    ws.file("cut/config.json", json.dumps({**config, "train_config": dataclasses.asdict(cfg)}))
    return ws.file("cut/checkpoint/checkpoint.pt", checkpoint).parents[1]


def _damaged(ws: Workspace, name: str, content: str | bytes, source: str = "data") -> Path:
    """A copy of the shared dataset (or run) named `ds` with one file's content replaced."""
    copy = ws.copy(getattr(ws, source), "ds")
    (copy / name).unlink()
    ws.file(f"ds/{name}", content)
    return copy


def _edited(ws: Workspace, change: Callable[[Path], None]) -> Path:
    """A copy of the shared dataset named `ds`, changed behind glintru's back by `change(copy)`."""
    copy = ws.copy(ws.data, "ds")
    change(copy)
    return copy


def _flip_page_bytes(ds: Path) -> None:
    raw = bytearray((ds / "sequences.parquet").read_bytes())
    for k in range(100, 140):  # inside the first data page, past the magic and the page header
        raw[k] ^= 0xFF
    (ds / "sequences.parquet").write_bytes(bytes(raw))


def _rewrite(ds: Path, name: str, change: Callable) -> None:
    import pyarrow.parquet as pq

    pq.write_table(change(pq.read_table(ds / name)), ds / name)


def _drop_items(table):
    return table.drop_columns(["items"])


def _item_id_99(ds: Path) -> None:
    import pyarrow as pa

    def change(table):
        items = table.column("items").combine_chunks()
        values = items.values.to_numpy().copy()
        values[0] = 99
        return table.set_column(2, "items", pa.ListArray.from_arrays(items.offsets, pa.array(values)))

    _rewrite(ds, "sequences.parquet", change)


def _popularity_plus_one(ds: Path) -> None:
    import pyarrow as pa

    def change(table):
        popularity = table.column("popularity").to_numpy().copy()
        popularity[1:] += 1
        return table.set_column(2, "popularity", pa.array(popularity))

    _rewrite(ds, "items.parquet", change)


def _edit_meta(ds: Path, **stats: int) -> None:
    meta = json.loads((ds / "meta.json").read_text())
    meta["stats"].update(stats)
    (ds / "meta.json").write_text(json.dumps(meta))


def _swap_first_items(ds: Path) -> None:
    import pyarrow as pa

    def change(table):
        items = table.column("items").combine_chunks()
        values = items.values.to_numpy().copy()
        values[[0, 1]] = values[[1, 0]]
        return table.set_column(2, "items", pa.ListArray.from_arrays(items.offsets, pa.array(values)))

    _rewrite(ds, "sequences.parquet", change)


def _fake_run(ws: Workspace, name: str, model: str, **fields) -> Path:
    """A finished run of `model` on "beauty" with fake results, in the scratch directory; `fields`
    set FakeTrial fields (eval_mode, seed, fingerprint)."""
    trial = fakes.explicit_trial(model, "beauty", 0, {"ndcg@10": np.linspace(0.1, 0.5, 20) + (model == "glintru") / 10})
    for key, value in fields.items():
        setattr(trial, key, value)
    return fakes.write_run(ws.scratch / name, trial)


def _failed_experiment(ws: Workspace) -> Path:
    trial = fakes.explicit_trial("glintru", "beauty", 0, {"ndcg@10": [0.1, 0.2]})
    trial.status, trial.error = "ERROR", "RuntimeError: loss is NaN"
    return fakes.write_experiment(ws.scratch / "failed", [trial])


def _experiment_without(ws: Workspace, column: str) -> Path:
    import pyarrow.parquet as pq

    exp = ws.copy(ws.exp, "exp")
    trials = pq.read_table(exp / "trials.parquet")
    pq.write_table(trials.drop_columns([column]), exp / "trials.parquet")
    return exp


def _experiment_missing_users(ws: Workspace) -> Path:
    exp = ws.copy(ws.exp, "exp")
    next(iter(sorted((exp / "users").iterdir()))).unlink()
    return exp


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Workspace:
    import torch

    from glintru.models import build_model, get_model_class

    root = tmp_path_factory.mktemp("valid")
    rng = np.random.default_rng(0)

    def dataset(name: str, n_items: int) -> Path:
        seqs = [(rng.permutation(n_items)[:8] + 1).astype(np.int32) for _ in range(30)]
        return write_prepared(
            root / name,
            seqs,
            [f"u{u}" for u in range(30)],
            [f"i{i}" for i in range(n_items)],
            name=name,
            source={"format": "test"},
            params={},
        )

    data, other = dataset("data", 12), dataset("other", 20)
    # A finished run as `glintru train` leaves it, made without training: evaluate only reads these.
    run = root / "run"
    run.mkdir()
    model_config = {"hidden_size": 8, "max_length": 10, "num_layers": 1, "dropout": 0.0}
    torch.manual_seed(0)
    model = build_model("gru4rec", 12, get_model_class("gru4rec").config_class(**model_config))
    torch.save(model.state_dict(), run / "model.pt")
    (run / "config.json").write_text(
        json.dumps(
            {
                "model": "gru4rec",
                "model_config": model_config,
                "dataset": {"name": "data", "path": str(data)},
                "train_config": {"eval_mode": "uni10", "seed": 0, "ks": [5, 10]},
            }
        )
    )
    (run / "metrics.json").write_text("{}")
    trials = fakes.golden_trials(n_users=40)
    exp = fakes.write_experiment(root / "exp", trials, name="exp")
    one_seed = fakes.write_experiment(root / "one_seed", [t for t in trials if t.seed == 0], name="one_seed")
    return Workspace(root, data, other, run, exp, one_seed)


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else -1 for p in sorted(root.rglob("*"))}


def invoke(cli: str, argv: list[str], capsys) -> tuple[int, str]:
    """Run an entry point as its process would end: exit code and stderr."""
    main = ENTRY_POINTS[cli]()
    try:
        code = main(argv)
    except SystemExit as e:
        if isinstance(e.code, str):  # the interpreter prints the message and exits with 1
            print(e.code, file=sys.stderr)
            code = 1
        else:
            code = e.code or 0
    return code, capsys.readouterr().err


def test_the_table_is_large_and_its_ids_unique():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.cli for c in CASES} <= set(ENTRY_POINTS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, shared: Workspace, tmp_path, capsys, monkeypatch):
    import glintru.train

    def no_epoch(*args, **kwargs):
        pytest.fail("a training epoch ran before the mistake was reported")

    monkeypatch.setattr(glintru.train, "train_epoch", no_epoch)
    ws = Workspace(**{**shared.__dict__, "scratch": tmp_path / "scratch"})
    ws.scratch.mkdir()
    before = _listing(shared.shared)
    argv = case.argv(ws)
    scratch_before = _listing(ws.scratch)
    code, err = invoke(case.cli, argv, capsys)
    assert code == case.code, err
    assert re.search(case.message, err), f"{case.message!r} not in:\n{err}"
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err  # one error, said once
    for path in case.absent(ws):
        assert not path.exists(), f"{path} was left behind"
    assert _listing(ws.scratch) == scratch_before, "the scratch directory changed (a file left or rewritten)"
    assert _listing(shared.shared) == before, "a shared valid input was changed"


def test_the_valid_inputs_pass(shared: Workspace, tmp_path, capsys):
    """The rows' inputs are valid but for their one mistake: the same calls without it succeed."""
    ws = Workspace(**{**shared.__dict__, "scratch": tmp_path})
    assert invoke("glintru", _prepare(ws, "--format", "movielens", "--input", str(ws.good_ratings())), capsys)[0] == 0
    assert invoke("glintru", ["stats", str(ws.data)], capsys)[0] == 0
    assert invoke("glintru", _train(ws, "--set", "kernel_size=2 one_pass=true", model="glintru"), capsys)[0] == 0
    assert invoke("glintru", _train(ws, model="bert4rec", out=tmp_path / "bert"), capsys)[0] == 0
    assert (tmp_path / "trained" / "metrics.json").exists() and (tmp_path / "bert" / "metrics.json").exists()
    assert (
        invoke("glintru", ["synthetic", "--users", "5", "--items", "4", "--out", str(tmp_path / "syn")], capsys)[0] == 0
    )
    run = ws.copy(ws.run, "run")
    assert invoke("glintru", _evaluate(run, "--eval-mode", "uni5", "--splits", "valid", "test"), capsys)[0] == 0
    assert {"eval-uni5.json", "eval-uni5-valid_users.parquet", "eval-uni5-test_users.parquet"} <= {
        p.name for p in run.iterdir()
    }
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    assert (
        invoke(
            "significance",
            [
                str(ws.exp),
                "--models",
                "glintru,sasrec",
                "--reference",
                "glintru",
                "--out",
                str(tmp_path / "t" / "table2.md"),
            ],
            capsys,
        )[0]
        == 0
    )
    assert "| GLINT-RU |" in (tmp_path / "t" / "table2.md").read_text()
    earlier = ws.report_dir("report")
    (earlier / "tables" / "stale.md").write_text("from the earlier report")
    code, err = invoke("report", [str(ws.one_seed), "--out", str(earlier), "--title", "again"], capsys)
    assert code == 0, err
    assert "# again" in (earlier / "report.md").read_text() and not (earlier / "tables" / "stale.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
