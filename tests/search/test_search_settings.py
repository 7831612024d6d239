"""Settings refused (or applied) before Ray starts: flags a resume would ignore, storage that a
cluster's nodes cannot reach, objectives and samplers."""

from __future__ import annotations

import pytest
from test_search_cli import _error

from glintru.search import plan, results
from glintru.search.objectives import Objective, check_sampler, parse_objectives
from glintru.search.plan import load_settings_for_resume, plan_search
from glintru.search.settings import SearchError, SearchSettings


def _stored_experiment(tmp_path, tiny_data, **settings) -> None:
    s = SearchSettings(space="glintru", data=str(tiny_data), storage=str(tmp_path), name="old", **settings)
    results.write_experiment(str(tmp_path / "old"), {"name": "old", "settings": s.to_dict()})


def test_resume_refuses_each_flag_it_would_ignore(capsys, tmp_path, tiny_data):
    """Tuner.restore takes these from the pickled experiment: silently dropping them misleads."""
    _stored_experiment(tmp_path, tiny_data, max_concurrent=2, gpus_per_trial=0.0)
    err = _error(
        capsys,
        "--resume",
        "--name",
        "old",
        "--storage",
        str(tmp_path),
        "--max-concurrent",
        "3",
        "--verbose",
        "2",
        "--mlflow",
        "--cpus-per-trial",
        "2",
        "--gpus-per-trial",
        "0.25",
    )
    for flag in (
        "--max-concurrent (the experiment has 2, given 3)",
        "--verbose",
        "--mlflow",
        "--cpus-per-trial",
        "--gpus-per-trial",
    ):
        assert flag in err, flag
    assert "--num-cpus" not in err


def test_resume_applies_how_it_reaches_ray(tmp_path, tiny_data):
    _stored_experiment(tmp_path, tiny_data, max_concurrent=2, num_samples=7)
    s = load_settings_for_resume(
        SearchSettings(
            space="",
            data="",
            storage=str(tmp_path),
            name="old",
            resume=True,
            num_cpus=4,
            max_concurrent=2,
            retry_errored=True,
        )
    )
    assert (s.num_cpus, s.max_concurrent, s.num_samples, s.retry_errored) == (4, 2, 7, True)
    assert s.space == "glintru" and s.data == str(tiny_data)


def test_a_cluster_refuses_storage_its_nodes_cannot_reach(capsys, tmp_path, tiny_data):
    err = _error(
        capsys, "--space", "glintru", "--data", str(tiny_data), "--storage", str(tmp_path), "--address", "auto"
    )
    assert "other nodes, which cannot reach it" in err and "s3://" in err and "NFS" in err
    err = _error(
        capsys, "--space", "glintru", "--data", str(tiny_data), "--storage", f"file://{tmp_path}", "--address", "auto"
    )
    assert "cannot reach it" in err
    base = dict(space="glintru", data=str(tiny_data), address="auto")
    plan.check_storage(SearchSettings(**base, storage="s3://bucket/results"), None)
    plan_search(SearchSettings(**base, storage=str(tmp_path), shared_storage=True))


def test_network_filesystems_are_recognised():
    mounts = "/dev/sda1 / ext4 rw 0 0\n10.0.0.2:/export /mnt/shared nfs4 rw 0 0\nbucket /mnt/gcs fuse.gcsfuse rw 0 0\n"
    assert plan.filesystem_type("/mnt/shared/results/x", mounts) == "nfs4"
    assert plan.filesystem_type("/mnt/gcs", mounts) == "fuse.gcsfuse"
    assert plan.filesystem_type("/home/me/results", mounts) == "ext4"
    assert plan.filesystem_type("/mnt/sharedother", mounts) == "ext4"


def test_objectives_parse_with_their_directions():
    assert parse_objectives("ndcg@10,infer_ms") == [
        Objective("ndcg@10", "valid/ndcg@10", "max"),
        Objective("infer_ms", "infer_ms_per_batch", "min"),
    ]
    assert parse_objectives("recall@20:max,memory_mb")[1] == Objective("memory_mb", "peak_memory_mb", "min")
    for bad, message in (
        ("latency", "unknown objective 'latency'"),
        ("infer_ms,ndcg@10", "first objective"),
        ("ndcg@10:up", "max or min"),
        ("ndcg@10,ndcg@10", "listed twice"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_objectives(bad)


def test_samplers_match_the_number_of_objectives():
    assert check_sampler(None, 1) == "tpe" and check_sampler("gp", 1) == "gp"
    assert check_sampler("nsga2", 2) == "nsga2"
    with pytest.raises(ValueError, match="does not serve 2 objectives"):
        check_sampler("gp", 2)
    with pytest.raises(ValueError, match="does not serve one objective"):
        check_sampler("nsga2", 1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--objective", "ndcg@50"], "evaluate at k in (5, 10, 20)"),
        (["--objective", "ndcg@10,infer_ms", "--seeds", "0,1"], "Pareto front"),
        (["--grid", "lr=1e-3", "--sampler", "random"], "--sampler applies to an Optuna search"),
        (["--objective", "nope"], "--objective: unknown objective"),
    ],
)
def test_bad_objectives_fail_before_ray(capsys, tiny_data, tmp_path, args, message):
    err = _error(capsys, "--space", "glintru", "--data", str(tiny_data), "--storage", str(tmp_path), *args)
    assert message in err


def test_several_objectives_default_to_fifo(tiny_data, tmp_path):
    plan = plan_search(
        SearchSettings(space="glintru", data=str(tiny_data), storage=str(tmp_path), objective="ndcg@10,infer_ms")
    )
    assert plan.scheduler == "fifo" and plan.sampler == "tpe" and plan.metric == "valid/ndcg@10"
    asha = plan_search(
        SearchSettings(
            space="glintru",
            data=str(tiny_data),
            storage=str(tmp_path),
            objective="ndcg@10,infer_ms",
            scheduler="asha",
            sampler="nsga2",
        )
    )
    assert asha.scheduler == "asha" and asha.sampler == "nsga2"
    with pytest.raises(SearchError):
        plan_search(
            SearchSettings(
                space="glintru", data=str(tiny_data), storage=str(tmp_path), objective="ndcg@10", sampler="nsga2"
            )
        )


def test_resume_refuses_a_flag_typed_with_its_default_value(capsys, tmp_path, tiny_data, monkeypatch):
    """--max-epochs 50 is the default, but typed: the experiment's 10 would silently win."""
    from glintru.search import runner

    def planned(*args, **kwargs):
        raise AssertionError("the resume went on to plan the search")

    monkeypatch.setattr(runner, "plan_search", planned)
    _stored_experiment(tmp_path, tiny_data, max_epochs=10, eval_mode="pop20")
    resume = ["--resume", "--name", "old", "--storage", str(tmp_path)]
    err = _error(capsys, *resume, "--max-epochs", "50", "--eval-mode", "full", "--verbose", "1")
    assert "--max-epochs (the experiment has 10, given 50)" in err
    assert "--eval-mode (the experiment has 'pop20', given 'full')" in err
    assert "--verbose" not in err  # typed, but the value the experiment has


def test_resume_takes_a_flag_typed_with_the_experiments_own_value(tmp_path, tiny_data):
    import dataclasses

    _stored_experiment(tmp_path, tiny_data, max_epochs=10, overrides={"ks": (5, 10, 20)}, seeds=[0, 1])
    # --set ks=5,10,20 parses to a tuple, which experiment.json holds as a list: the same value
    given = SearchSettings(
        space="", data="", storage=str(tmp_path), name="old", resume=True, max_epochs=10, seeds=[0, 1]
    )
    given.overrides = {"ks": (5, 10, 20)}
    s = load_settings_for_resume(given, {"max_epochs", "overrides", "seeds", "resume", "name", "storage"})
    assert (s.max_epochs, s.seeds, s.space) == (10, [0, 1], "glintru")
    with pytest.raises(SearchError, match=r"--max-epochs \(the experiment has 10, given 50\)"):
        load_settings_for_resume(dataclasses.replace(given, max_epochs=50), {"max_epochs"})


def test_the_command_line_knows_which_flags_were_typed():
    from test_search_cli import cli

    assert cli.typed_settings(["--resume", "--name", "x", "--max-epochs", "50", "--set", "lr=1", "--mlflow"]) == {
        "resume",
        "name",
        "max_epochs",
        "overrides",
        "mlflow",
    }
    assert cli.typed_settings([]) == set()


def test_the_settings_are_checked_in_one_pass(monkeypatch, tmp_path, tiny_data):
    """On the way to a Plan each module is asked once: the objectives parsed once (every trial's
    TrainConfig is built from that parse), the space looked up once."""
    from collections import Counter

    from glintru.search import objectives, settings, spaces

    calls: Counter[str] = Counter()

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    for name, owner in (("parse_objectives", objectives), ("get_space", spaces)):
        wrapper = counted(name, getattr(owner, name))
        for module in (owner, settings):  # wherever the pass finds it
            monkeypatch.setattr(module, name, wrapper, raising=module is owner)
    s = SearchSettings(
        space="glintru", data=str(tiny_data), storage=str(tmp_path), objective="mrr@10,infer_ms", overrides={"lr": 0.01}
    )
    planned = plan_search(s)
    assert calls == {"parse_objectives": 1, "get_space": 1}
    assert [o.name for o in planned.objectives] == ["mrr@10", "infer_ms"] and planned.sampler == "tpe"
