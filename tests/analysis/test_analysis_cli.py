"""analysis/report.py and analysis/significance.py end to end, as a user runs them from the repo root."""

import argparse
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import GOLDEN, REPO

from glintru.analysis import collect, performance_table
from glintru.analysis.cli import add_selection_arguments, split_list

import analysis_fakes as fakes
from doc_pages import pages


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def script(name: str):
    """The CLI module itself, so that most option checks skip a fresh interpreter."""
    spec = importlib.util.spec_from_file_location(f"cli_{name}", REPO / "analysis" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_end_to_end(golden_exp, tmp_path):
    # the seeds phase reruns GLINT-RU with the baselines' seeds, so that a test over users pairs
    # every side on the same negatives
    search_exp = fakes.search_like(tmp_path / "search", seeds=(0, 1))
    out = tmp_path / "report"
    proc = run(
        "analysis/report.py",
        str(golden_exp),
        str(search_exp),
        "--out",
        str(out),
        "--ablation",
        "config/gate_activation",
        "--reference",
        "glintru",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(out / "report.html"), str(out / "report.md")]
    md = (out / "report.md").read_text()
    table2 = performance_table(collect([golden_exp, search_exp]), reference="glintru").to_markdown()
    assert table2.strip() in md and (out / "tables" / "table2.md").read_text() == table2
    for heading in (
        "## Overall performance (Table 2)",
        "## Efficiency (Table 3)",
        "## Ablation: gate_activation",
        "## Parameter analysis",
        "## Search: search",
    ):
        assert heading in md
    assert "## Search: golden" not in md  # one configuration per model is no search
    assert "Wilcoxon signed-rank test over users as a check" in md
    assert "Welch's t-test over seeds as a check" in md  # the seeds phase gives GLINT-RU 2 seeds
    figures = [line[line.index("(") + 1 : -1] for line in md.splitlines() if line.startswith("![")]
    assert "figures/history_search.png" in figures and "figures/metric_vs_kernel_size_beauty.png" in figures
    for fig in figures:
        for ext in (".png", ".pdf"):
            assert (out / fig).with_suffix(ext).stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert html.count('<img src="figures/') == len(figures)
    assert "<sup>*</sup>" in html and "<table" in html
    for name in (
        "table2.md",
        "table2.tex",
        "table2.csv",
        "table2_comparisons.csv",
        "table3.tex",
        "ablation_gate_activation.md",
        "best_configs_search.csv",
    ):
        assert (out / "tables" / name).stat().st_size > 0


def test_significance_prints_the_golden_table(golden_exp, capsys):
    proc = run("analysis/significance.py", str(golden_exp))  # from a fresh interpreter, default md
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (GOLDEN / "table2.md").read_text()
    cli = script("significance")
    for fmt, ext in (("latex", "tex"), ("csv", "csv")):
        assert cli.main([str(golden_exp), "--format", fmt]) == 0
        assert capsys.readouterr().out == (GOLDEN / f"table2.{ext}").read_text()


def test_significance_options_and_run_dirs(tmp_path):
    base = 0.3 + 0.2 * np.sin(np.arange(40))
    runs = [
        fakes.write_run(
            tmp_path / f"{m}_{s}",
            fakes.explicit_trial(
                m, "ml-1m", s, {"ndcg@10": base + d + 0.01 * s * np.cos(np.arange(40)), "mrr@10": base}
            ),
        )
        for m, d in (("glintru", 0.1), ("sasrec", 0.0))
        for s in (0, 1)
    ]
    out = tmp_path / "t.md"
    code = script("significance").main(
        [*map(str, runs), "--metric", "ndcg@10", "--test", "welch", "--comparisons", "--out", str(out)]
    )
    assert code == 0
    text = out.read_text()
    assert "| Model | NDCG@10 |" in text and "**0.4" in text and "Welch's t-test over seeds" in text
    assert "hedges_g" in text  # the comparisons follow the table


def test_significance_ablation_rows(ablation_exp, capsys):
    cli = script("significance")
    assert (
        cli.main(
            [str(ablation_exp), "--ablation", "config/gate_activation", "--format", "csv", "--models", "silu,relu"]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Variant,Recall@10,MRR@10,NDCG@10"
    assert lines[1].startswith("Default (SiLU),0.8333*,") and lines[2].startswith("ReLU,")
    assert len(lines) == 3


def test_only_keeps_matching_trials_and_baselines(tmp_path, capsys):
    base = 0.3 + 0.2 * np.sin(np.arange(30))
    trials = [
        fakes.explicit_trial("glintru", "ml-1m", 0, {"ndcg@10": base + 0.2}, config={"ablation": "no_conv"}),
        fakes.explicit_trial("glintru", "ml-1m", 0, {"ndcg@10": base + 0.1}, config={"ablation": "full"}),
        fakes.explicit_trial("sasrec", "ml-1m", 0, {"ndcg@10": base}),
    ]
    exp = str(fakes.write_experiment(tmp_path / "exp", trials))
    cli = script("significance")
    assert cli.main([exp, "--metric", "ndcg@10", "--test", "wilcoxon", "--only", "config/ablation=full"]) == 0
    out = capsys.readouterr().out
    assert f"| GLINT-RU | **{(base + 0.1).mean():.4f}**" in out and "| SASRec |" in out
    assert cli.main([exp, "--metric", "ndcg@10"]) == 0  # without the filter the no_conv variant wins
    assert f"| GLINT-RU | **{(base + 0.2).mean():.4f}**" in capsys.readouterr().out
    assert cli.main([exp, "--only", "config/heads=2"]) == 2
    assert "no column 'config/heads'" in capsys.readouterr().err
    assert cli.main([exp, "--only", "full"]) == 2
    assert "expected COLUMN=VALUE (e.g. config/ablation=full), got 'full'" in capsys.readouterr().err


def test_significance_refusals_exit_with_a_message(tmp_path, capsys):
    cli = script("significance")
    one_seed = fakes.write_experiment(tmp_path / "one", fakes.golden_trials(n_users=20, seeds=(0,)))
    assert cli.main([str(one_seed), "--test", "welch"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith(
        "error: Welch's t-test over seeds needs at least 2 seeds on each side: "
        "GLINT-RU on ML-1M has 1, GRU4Rec on ML-1M has 1"
    )
    base = np.linspace(0.1, 0.5, 30)
    trials = [
        fakes.explicit_trial("glintru", "beauty", 0, {"ndcg@10": base + 0.1}),
        fakes.explicit_trial("sasrec", "beauty", 0, {"ndcg@10": base[:-1]}, users=range(1, 30)),
    ]
    exp = fakes.write_experiment(tmp_path / "mismatch", trials)
    assert cli.main([str(exp), "--metric", "ndcg@10"]) == 2
    assert "needs the same test users on both sides: GLINT-RU on Amazon Beauty has 30 users" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "nowhere")]) == 2
    assert "neither an experiment directory" in capsys.readouterr().err
    assert script("report").main([str(exp), "--out", str(tmp_path / "r"), "--metric", "recall@50"]) == 2
    assert "no column test/recall@50" in capsys.readouterr().err


def _help_flags(main, argv, capsys) -> set[str]:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    # option lines of the help ("  --flag ..."), not flags mentioned inside help texts
    return set(re.findall(r"^  (--[a-z][a-z-]*)", capsys.readouterr().out, re.MULTILINE)) - {"--help"}


def test_the_docs_document_exactly_the_analysis_flags(capsys):
    """Every flag of significance.py, report.py and glintru evaluate is in its own paragraph of the
    README or a docs/ page (docs/ANALYSIS.md, docs/TRAINING.md), and no flag that does not exist is."""
    from glintru.cli import main as glintru_main

    starts = {
        "significance": "`significance.py` prints",
        "report": "`report.py` writes",
        "evaluate": "`glintru evaluate` re-evaluates",
        "notebooks": "Notebooks:",
    }
    blocks = {}
    for text in pages().values():
        for name, marker in starts.items():
            if marker not in text:
                continue
            assert name not in blocks, f"{marker!r} begins a paragraph on two pages"
            pos = text.index(marker)
            # the block ends at the next block of the same page or at its section's end
            ends = [text.find(m, pos + 1) for m in starts.values()] + [text.find("\n## ", pos)]
            blocks[name] = text[pos : min([e for e in ends if e > pos], default=len(text))]
    assert set(blocks) == set(starts)
    documented = {name: set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)) for name, text in blocks.items()}
    assert documented["significance"] == _help_flags(script("significance").main, [], capsys)
    assert documented["report"] == _help_flags(script("report").main, [], capsys)
    assert documented["evaluate"] == _help_flags(glintru_main, ["evaluate"], capsys)


# -- the flags both scripts share (glintru.analysis.cli) --


def test_split_list_flattens_repeated_and_comma_separated_values():
    assert split_list(None) is None and split_list([]) is None
    assert split_list(["ndcg@10, mrr@10", "recall@10", " ,"]) == ["ndcg@10", "mrr@10", "recall@10"]


def test_both_scripts_parse_the_shared_flags_alike():
    argv = ["e1", "e2", "--metric", "ndcg@10", "--test", "welch", "--alpha", "0.01", "--only", "config/x=1"]
    argv += ["--select", "valid/mrr@10", "--reference", "glintru"]
    shared = ("experiments", "metric", "test", "alpha", "select", "only", "reference")
    parsed = [vars(script(n).parse_args(argv)) for n in ("report", "significance")]
    for key in shared:
        assert parsed[0][key] == parsed[1][key], key
    assert parsed[0]["experiments"] == ["e1", "e2"] and parsed[0]["alpha"] == 0.01


def test_an_unknown_test_is_refused():
    p = argparse.ArgumentParser()
    add_selection_arguments(p, test_help="which test")
    with pytest.raises(SystemExit):
        p.parse_args(["exp", "--test", "anova"])
    assert p.parse_args(["exp"]).test == "paired"


def test_configurations_are_chosen_on_validation_columns_only(capsys):
    p = argparse.ArgumentParser(prog="significance")
    add_selection_arguments(p, test_help="which test")
    with pytest.raises(SystemExit):
        p.parse_args(["exp", "--select", "test/ndcg@10"])
    err = capsys.readouterr().err
    assert "argument --select: 'test/ndcg@10' is not a validation column: configurations are chosen on valid/" in err
    assert p.parse_args(["exp", "--select", "valid/mrr@10"]).select == "valid/mrr@10"


# -- the same commands under `glintru` (glintru significance | report | reproduce) --


def test_glintru_significance_prints_what_the_script_prints(golden_exp, capsys):
    from glintru.cli import main as glintru_main

    assert glintru_main(["significance", str(golden_exp), "--format", "csv"]) == 0
    assert capsys.readouterr().out == (GOLDEN / "table2.csv").read_text()


def test_glintru_report_writes_the_report(golden_exp, tmp_path, capsys):
    from glintru.cli import main as glintru_main

    out = tmp_path / "report"
    assert glintru_main(["report", str(golden_exp), "--out", str(out), "--title", "one command"]) == 0
    assert capsys.readouterr().out.split() == [str(out / "report.html"), str(out / "report.md")]
    assert (out / "report.md").read_text().startswith("# one command")
    assert (out / "tables" / "table2.md").read_text() == (GOLDEN / "table2.md").read_text()


@pytest.mark.parametrize(
    "name, script_name", [("significance", "significance"), ("report", "report"), ("reproduce", "reproduction")]
)
def test_a_glintru_subcommand_has_the_flags_of_its_script(name, script_name, capsys):
    from glintru.cli import main as glintru_main

    assert _help_flags(glintru_main, [name], capsys) == _help_flags(script(script_name).main, [], capsys)


def _tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_file_outputs_are_refused_inside_any_glintru_output_and_keep_the_umask(tmp_path, capsys):
    from glintru.data.synthetic import generate

    runs = [
        fakes.write_run(tmp_path / f"{m}_0", fakes.explicit_trial(m, "ml-1m", 0, {"ndcg@10": [0.1, 0.3, 0.2]}))
        for m in ("glintru", "sasrec")
    ]
    other = fakes.write_run(tmp_path / "other", fakes.explicit_trial("gru4rec", "ml-1m", 0, {"ndcg@10": [0.2]}))
    data = generate(tmp_path / "data", n_users=20, n_items=10, avg_length=5, features=False)
    before = _tree(tmp_path)
    for out, kind in (
        (data / "meta.json", "a prepared dataset"),
        (other / "metrics.json", "a run directory"),
        (data / "tables" / "t.md", "a prepared dataset"),
    ):
        code = script("significance").main([*map(str, runs), "--metric", "ndcg@10", "--out", str(out)])
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: --out {out} is inside {kind}" + err[0].split(kind, 1)[1]]
        assert "whose files its own command writes; write it outside" in err[0]
    assert _tree(tmp_path) == before
    old = os.umask(0o022)
    try:
        assert (
            script("significance").main([*map(str, runs), "--metric", "ndcg@10", "--out", str(tmp_path / "t.md")]) == 0
        )
    finally:
        os.umask(old)
    assert (tmp_path / "t.md").stat().st_mode & 0o777 == 0o644


def test_significance_never_writes_over_its_input(tmp_path, capsys):
    runs = [
        fakes.write_run(tmp_path / f"{m}_{s}", fakes.explicit_trial(m, "ml-1m", s, {"ndcg@10": [0.1, 0.3, 0.2]}))
        for m in ("glintru", "sasrec")
        for s in (0, 1)
    ]
    before = _tree(tmp_path)
    for out in (runs[0] / "metrics.json", runs[1] / "notes.md", runs[0]):
        code = script("significance").main([*map(str, runs), "--metric", "ndcg@10", "--out", str(out)])
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --out ")
        assert ("is inside the input" in err[0]) or ("is a directory" in err[0])
    assert _tree(tmp_path) == before
