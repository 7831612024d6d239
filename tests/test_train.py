"""The training loop: run directory contract, learning, determinism, resume, failure modes."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
import torch

from glintru.data.dataset import load_dataset
from glintru.evaluate import evaluate
from glintru.models.pop import PopularityRanker
from glintru.train import TrainConfig, TrainState, load_checkpoint, resolve_configs, split_overrides, train

SMALL = {"hidden_size": 16, "max_length": 20, "dropout": 0.1}


def _cfg(**kw):
    base = dict(epochs=2, patience=5, batch_size=128, eval_batch_size=512, seed=0, device="cpu", eval_mode="pop100")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from glintru.data.synthetic import generate

    return load_dataset(
        generate(tmp_path_factory.mktemp("tiny") / "tiny", n_users=150, n_items=50, avg_length=10, seed=2)
    )


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from glintru.data.synthetic import generate

    return load_dataset(
        generate(tmp_path_factory.mktemp("syn") / "syn", n_users=400, n_items=120, avg_length=20, seed=1)
    )


def test_run_directory_contract(tiny, tmp_path):
    res = train(tiny, "glintru", tmp_path / "run", overrides=SMALL, config=_cfg(), progress=False)
    out = tmp_path / "run"
    for name in (
        "config.json",
        "metrics.json",
        "test_users.parquet",
        "env.json",
        "model.pt",
        "checkpoint/checkpoint.pt",
    ):
        assert (out / name).exists(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m == json.loads(json.dumps(res.metrics))
    for split in ("valid", "test"):
        for name in ("recall@10", "mrr@10", "ndcg@10", "hit@5", "precision@20"):
            assert 0.0 <= m[split][name] <= 1.0
    assert m["epochs"] == 2 and 1 <= m["best_epoch"] <= 2 and len(m["history"]) == 2
    assert m["seconds_per_epoch"] > 0 and m["infer_ms_per_batch"] > 0 and m["peak_memory_mb"] > 0
    users = pd.read_parquet(out / "test_users.parquet")
    assert len(users) == tiny.n_users
    assert users["ndcg@10"].mean() == pytest.approx(m["test"]["ndcg@10"], abs=1e-6)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "glintru" and cfg["model_config"]["hidden_size"] == 16
    assert cfg["train_config"]["eval_mode"] == "pop100"


def test_glintru_beats_popularity_by_a_wide_margin(synthetic, tmp_path):
    res = train(
        synthetic,
        "glintru",
        tmp_path / "run",
        overrides=SMALL | {"hidden_size": 32},
        config=_cfg(epochs=8, batch_size=256, eval_mode="full"),
        progress=False,
    )
    pop = evaluate(PopularityRanker(synthetic.popularity, 20), synthetic, "test", mode="full").metrics
    assert res.metrics["test"]["ndcg@10"] > 2 * pop["ndcg@10"], (res.metrics["test"], pop)
    assert res.metrics["test"]["recall@10"] > pop["recall@10"] + 0.1


def test_same_seed_same_metrics(tiny, tmp_path):
    a = train(tiny, "glintru", tmp_path / "a", overrides=SMALL, config=_cfg(), progress=False)
    b = train(tiny, "glintru", tmp_path / "b", overrides=SMALL, config=_cfg(), progress=False)
    assert a.metrics["test"] == b.metrics["test"]
    assert [h["train_loss"] for h in a.metrics["history"]] == [h["train_loss"] for h in b.metrics["history"]]


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny, tmp_path):
    full = train(tiny, "glintru", tmp_path / "full", overrides=SMALL, config=_cfg(epochs=3), progress=False)

    def stop_after_two(report):
        if report.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            tiny,
            "glintru",
            tmp_path / "cut",
            overrides=SMALL,
            config=_cfg(epochs=3),
            reporter=stop_after_two,
            progress=False,
        )
    assert not (tmp_path / "cut" / "metrics.json").exists()
    epochs_run = []
    resumed = train(
        tiny,
        "glintru",
        tmp_path / "cut",
        overrides=SMALL,
        config=_cfg(epochs=3),
        reporter=lambda r: epochs_run.append(r.epoch),
        progress=False,
    )
    assert epochs_run == [3]
    assert resumed.metrics["test"] == full.metrics["test"]
    assert resumed.metrics["best_epoch"] == full.metrics["best_epoch"]


def test_early_stopping_keeps_the_best_epoch(tiny, tmp_path):
    res = train(
        tiny,
        "glintru",
        tmp_path / "run",
        overrides=SMALL | {"lr": 0.5},
        config=_cfg(epochs=30, patience=2),
        progress=False,
    )
    m = res.metrics
    assert m["epochs"] <= m["best_epoch"] + 2
    best = max(h["valid"]["ndcg@10"] for h in m["history"])
    assert m["valid"]["ndcg@10"] == best


def test_reporter_sees_every_epoch_with_a_loadable_checkpoint(tiny, tmp_path):
    reports = []
    train(tiny, "glintru", tmp_path / "run", overrides=SMALL, config=_cfg(), reporter=reports.append, progress=False)
    assert [r.epoch for r in reports] == [1, 2]
    state = load_checkpoint(reports[-1].checkpoint_dir)
    assert state["epoch"] == 2 and state["model_name"] == "glintru"


def test_nan_loss_is_an_error_naming_the_epoch(tiny, tmp_path):
    with pytest.raises(FloatingPointError, match="epoch 1"):
        train(tiny, "glintru", tmp_path / "run", overrides=SMALL | {"lr": 1e30}, config=_cfg(epochs=3), progress=False)


def test_settings_are_routed_and_unknown_ones_rejected():
    model, trainer = split_overrides("glintru", {"hidden_size": 8, "kernel_size": 5, "lr": 0.01})
    assert model == {"hidden_size": 8, "kernel_size": 5} and trainer == {"lr": 0.01}
    with pytest.raises(ValueError, match="unknown setting\\(s\\) hiden_size"):
        split_overrides("glintru", {"hiden_size": 8})


def test_bad_train_config_is_rejected(tiny, tmp_path):
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train(tiny, "glintru", tmp_path / "r", config=_cfg(epochs=0), progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is missing")
def test_cuda_requested_without_cuda_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        train(tiny, "glintru", tmp_path / "r", overrides=SMALL, config=_cfg(device="cuda"), progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_run_learns(tiny, tmp_path):
    res = train(
        tiny,
        "glintru",
        tmp_path / "r",
        overrides=SMALL,
        config=_cfg(device="cuda", bf16=True, epochs=3),
        progress=False,
    )
    assert res.metrics["test"]["ndcg@10"] > 0
    assert json.loads((tmp_path / "r" / "env.json").read_text())["gpu"]


def test_pipeline_is_recorded_and_one_pass_is_the_default_where_exact(tiny, tmp_path):
    from glintru.data.batches import BatchLoader
    from glintru.data.sequences import SequenceLoader

    runs = {
        "one-pass": dict(),
        "bucketed": dict(one_pass=False),
        "random": dict(one_pass=False, bucketing=False),
    }
    loaders = {
        "one-pass": lambda: SequenceLoader(tiny, SMALL["max_length"], 128, seed=0),
        "bucketed": lambda: BatchLoader(tiny, SMALL["max_length"], 128, seed=0, bucketing=True),
        "random": lambda: BatchLoader(tiny, SMALL["max_length"], 128, seed=0, bucketing=False),
    }
    widths = {}
    for pipeline, over in runs.items():
        res = train(tiny, "glintru", tmp_path / pipeline, overrides=SMALL | over, config=_cfg(epochs=1), progress=False)
        m = res.metrics
        widths[pipeline] = m["mean_padded_width"]
        assert m["pipeline"] == pipeline and m["history"][0]["pipeline"] == pipeline
        assert json.loads((tmp_path / pipeline / "config.json").read_text())["pipeline"] == pipeline
        # the recorded width is the mean width of the epoch's batches, replayed from the same loader
        loader = loaders[pipeline]()
        loader.set_epoch(1)
        batch_widths = [batch.item_seq.size(1) for batch in loader]
        assert m["mean_padded_width"] == pytest.approx(sum(batch_widths) / len(batch_widths))
        assert m["history"][0]["steps"] >= 1
        # Every pipeline trains on every target once: n - 3 per user.
        h = m["history"][0]
        assert round(h["samples_per_second"] * h["seconds"]) == int((tiny.lengths - 3).clip(min=0).sum())
    # sorting by prefix length never widens batches: bucketed pads no more than random batches
    assert widths["bucketed"] <= widths["random"]


def test_one_pass_where_not_exact_is_refused_naming_the_model_and_why(tiny, tmp_path):
    with pytest.raises(ValueError, match="one-pass training refused for GLINTRU.*num_layers=2"):
        train(
            tiny,
            "glintru",
            tmp_path / "r",
            overrides=SMALL | {"num_layers": 2, "one_pass": True},
            config=_cfg(epochs=1),
            progress=False,
        )
    assert not (tmp_path / "r").exists()  # refused before the run directory is made
    res = train(
        tiny, "glintru", tmp_path / "d", overrides=SMALL | {"num_layers": 2}, config=_cfg(epochs=1), progress=False
    )
    assert res.metrics["pipeline"] == "bucketed"  # the default falls back to per-prefix batches


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"kernel_size": "abc"}, r"kernel_size='abc' \(str\) is invalid: expected int"),
        ({"lr": "fast"}, r"training setting lr='fast' \(str\) is invalid: expected float"),
        ({"eval_mode": "pop-3"}, r"unknown evaluation mode 'pop-3'"),
        ({"device": "tpu"}, r"device 'tpu' is not a device"),
        ({"epochs": 0}, r"epochs must be >= 1, got 0"),
        ({"ks": (5, 20)}, r"ks must contain 10"),
        ({"ks": (0, 10)}, r"ks must be positive integers, got \(0, 10\)"),
        ({"batch_size": 0}, r"batch_size must be positive, got 0"),
        ({"hiden_size": 8}, r"unknown setting\(s\) hiden_size"),
    ],
)
def test_bad_settings_are_refused_before_the_data_is_read(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve_configs("glintru", None, overrides)
    # the dataset path does not exist: the settings error comes first, and nothing is written
    with pytest.raises(ValueError, match=message):
        train(tmp_path / "no-data", "glintru", tmp_path / "r", overrides=overrides, progress=False)
    assert not (tmp_path / "r").exists()


def test_settings_are_typed_on_the_way_in():
    model_cfg, cfg = resolve_configs(
        "glintru", None, {"dropout": 0, "lr": 1, "ks": [5, 10], "kernel_size": 5}, TrainConfig(epochs=3)
    )
    assert model_cfg.dropout == 0.0 and isinstance(model_cfg.dropout, float) and model_cfg.kernel_size == 5
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.ks == (5, 10) and cfg.epochs == 3


def test_train_state_round_trips_through_a_checkpoint(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = TrainState(
        epoch=4,
        best_epoch=3,
        bad_epochs=1,
        best_valid={"ndcg@10": 0.5},
        best_model={k: v.clone() for k, v in model.state_dict().items()},
        history=[{"epoch": e} for e in range(1, 5)],
    )
    torch.save(state.to_checkpoint("glintru", model, optimizer), tmp_path / "checkpoint.pt")
    expected_draw = torch.rand(3)  # the RNG state was saved before this draw

    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.Adam(fresh.parameters())
    ckpt = load_checkpoint(tmp_path)
    back = TrainState.from_checkpoint(ckpt, "glintru", fresh, fresh_opt, tmp_path)
    assert back.epoch == 4 and back.best_epoch == 3 and back.bad_epochs == 1
    assert back.best_valid == state.best_valid and back.history == state.history
    torch.testing.assert_close(fresh.weight, model.weight)
    assert fresh_opt.state_dict()["state"][0]["step"] == 1
    assert torch.equal(torch.rand(3), expected_draw)
    with pytest.raises(ValueError, match="is for glintru, not sasrec"):
        TrainState.from_checkpoint(ckpt, "sasrec", fresh, fresh_opt, tmp_path)


def test_the_epoch_line_goes_to_the_glintru_logger(tiny, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="glintru")
    train(tiny, "glintru", tmp_path / "a", overrides=SMALL, config=_cfg(epochs=1), progress=False)
    assert [(r.levelno, r.getMessage()[:9]) for r in caplog.records if r.name == "glintru"] == [
        (logging.DEBUG, "epoch   1")
    ]
    caplog.clear()
    train(tiny, "glintru", tmp_path / "b", overrides=SMALL, config=_cfg(epochs=1), progress=True)
    lines = [r for r in caplog.records if r.name == "glintru"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO and "valid ndcg@10" in lines[0].getMessage()
