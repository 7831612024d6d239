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
    # pop20: fewer negatives than the tiny dataset's 50 items (as many would be full ranking, refused)
    base = dict(epochs=2, patience=5, batch_size=128, eval_batch_size=512, seed=0, device="cpu", eval_mode="pop20")
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
    assert cfg["train_config"]["eval_mode"] == "pop20"
    # what the numbers rest on: the data's fingerprint, the split, the protocol and its negatives' seed
    assert cfg["dataset"]["fingerprint"] == m["dataset_fingerprint"] == tiny.fingerprint
    assert (m["split"], m["eval_mode"], m["negative_seed"]) == ("leave-one-out", "pop20", cfg["train_config"]["seed"])


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


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
        ),
    ],
)
def test_resume_after_interruption_matches_an_uninterrupted_run(tiny, tmp_path, device):
    full = train(
        tiny, "glintru", tmp_path / "full", overrides=SMALL, config=_cfg(epochs=3, device=device), progress=False
    )

    def stop_after_two(report):
        if report.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            tiny,
            "glintru",
            tmp_path / "cut",
            overrides=SMALL,
            config=_cfg(epochs=3, device=device),
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
        config=_cfg(epochs=3, device=device),
        reporter=lambda r: epochs_run.append(r.epoch),
        progress=False,
    )
    assert epochs_run == [3]
    # epoch 3's loss depends on its dropout masks: equal only where the checkpoint restored the
    # generators they are drawn from (CUDA's own on a GPU)
    losses = {name: [h["train_loss"] for h in r.metrics["history"]] for name, r in (("full", full), ("cut", resumed))}
    if device == "cpu":
        assert losses["cut"] == losses["full"]
        assert resumed.metrics["test"] == full.metrics["test"]
        assert resumed.metrics["best_epoch"] == full.metrics["best_epoch"]
    else:  # CUDA's atomic adds sum in no fixed order: equal to rounding, not bit for bit
        assert losses["cut"] == pytest.approx(losses["full"], rel=1e-5)


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


def test_a_loss_that_turns_nan_mid_run_marks_the_run_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    from glintru.train import LossModule

    out, forward, poisoned = tmp_path / "run", LossModule.forward, []
    monkeypatch.setattr(LossModule, "forward", lambda self, *a: forward(self, *a) * (float("nan") if poisoned else 1))
    with pytest.raises(FloatingPointError, match=r"^training loss became nan at epoch 2, step 0 \(lr=0\.001\)"):
        train(tiny, "glintru", out, overrides=SMALL, config=_cfg(epochs=3), reporter=poisoned.append, progress=False)
    failed = json.loads((out / "failed.json").read_text())
    assert (failed["epoch"], failed["checkpoint_epoch"]) == (2, 1)
    assert failed["error"].startswith("training loss became nan at epoch 2")
    assert load_checkpoint(out / "checkpoint")["epoch"] == 1 and not (out / "metrics.json").exists()
    monkeypatch.undo()  # the cause fixed: the run continues from its last good epoch
    epochs_run = []
    res = train(
        tiny, "glintru", out, overrides=SMALL, config=_cfg(epochs=3), reporter=epochs_run.append, progress=False
    )
    assert [r.epoch for r in epochs_run] == [2, 3] and res.metrics["epochs"] == 3
    assert not (out / "failed.json").exists()


def test_weights_made_infinite_by_an_epoch_are_never_validated_or_checkpointed(tiny, tmp_path, monkeypatch):
    from glintru import train as loop

    epoch_of = loop.train_epoch

    def overflowing_second_epoch(net, loader, optimizer, cfg, device, epoch, **kw):
        stats = epoch_of(net, loader, optimizer, cfg, device, epoch, **kw)
        if epoch == 2:  # every loss was finite, the last step's update was not
            with torch.no_grad():
                net.model.item_embedding.weight[1] = float("inf")
        return stats

    monkeypatch.setattr(loop, "train_epoch", overflowing_second_epoch)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"the weights became non-finite in epoch 2 \(lr=0\.001\)"):
        train(tiny, "glintru", out, overrides=SMALL, config=_cfg(epochs=3), progress=False)
    assert load_checkpoint(out / "checkpoint")["epoch"] == 1
    assert json.loads((out / "failed.json").read_text())["checkpoint_epoch"] == 1


@pytest.mark.parametrize("content", [b"not a checkpoint", b"", b"\x00" * 512])
def test_a_damaged_checkpoint_is_one_error_naming_the_file(tiny, tmp_path, content):
    ckpt = tmp_path / "run" / "checkpoint" / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(content)
    with pytest.raises(ValueError, match=r"checkpoint\.pt: not a readable training checkpoint \(\w+\)") as e:
        train(tiny, "glintru", tmp_path / "run", overrides=SMALL, config=_cfg(), progress=False)
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)
    torch.save({"epoch": 3}, ckpt)  # readable, but not a training checkpoint
    with pytest.raises(ValueError, match=r"not a readable training checkpoint \(no 'model_name'\)"):
        load_checkpoint(ckpt.parent)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint"]  # nothing written


def test_a_checkpoint_keeps_the_cuda_generators_where_cuda_is_in_use(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    ckpt = TrainState().to_checkpoint("glintru", model, optimizer)
    if torch.cuda.is_initialized():
        assert len(ckpt["cuda_rng"]) == torch.cuda.device_count()
    else:  # a CPU run never starts CUDA for its checkpoint
        assert ckpt["cuda_rng"] == [] and not torch.cuda.is_initialized()


def test_as_many_negatives_as_items_is_refused_after_the_data_is_read(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"eval_mode uni50 draws 50 negatives, but the dataset has only 50 items"):
        train(tiny, "glintru", tmp_path / "r", overrides=SMALL, config=_cfg(eval_mode="uni50"), progress=False)
    assert not (tmp_path / "r").exists()
    res = train(
        tiny, "glintru", tmp_path / "ok", overrides=SMALL, config=_cfg(eval_mode="uni49", epochs=1), progress=False
    )
    assert res.metrics["eval_mode"] == "uni49"


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
        ({"grad_clip": -1.0}, r"grad_clip must be positive \(the largest gradient norm .*got -1\.0"),
        ({"grad_clip": 0}, r"grad_clip must be positive .*got 0\.0"),
        ({"num_threads": 0}, r"num_threads must be >= 1 \(None keeps torch's default\), got 0"),
        ({"weight_decay": -0.1}, r"weight_decay must be >= 0, got -0\.1"),
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*32\), got -1"),
        ({"lr": 1e300}, r"lr=1e\+300 overflows the first step \(a float32 weight holds at most 3\.4e\+38\)"),
        ({"kernel_size": 60}, r"kernel_size 60 exceeds max_length 50: the convolution window must fit"),
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


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/clear_refs"), reason="Linux peak-RSS reset")
def test_peak_memory_is_the_runs_own_in_a_process_that_ran_something_bigger(tiny, tmp_path):
    import numpy as np

    # a reused search process: an earlier trial held ~1.2 GB, this run needs far less
    big = np.ones(150_000_000)
    held = big.nbytes / 2**20
    del big
    m = train(tiny, "glintru", tmp_path / "run", overrides=SMALL, config=_cfg(epochs=1), progress=False).metrics
    assert 0 < m["peak_memory_mb"] < held


def _resident_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="glibc malloc arenas (Linux)")
def test_release_memory_returns_what_an_earlier_threads_run_freed():
    import threading

    from glintru.train import release_memory

    # a reused trial process: the earlier trial ran in a thread of its own (an arena of its own),
    # freed ~200 MB of small blocks but one, so the allocator keeps the pages resident
    kept: list[bytearray] = []

    def earlier_trial() -> None:
        blocks = [bytearray(4000) for _ in range(50_000)]
        kept.append(blocks[-1])

    before = _resident_mb()
    t = threading.Thread(target=earlier_trial)
    t.start()
    t.join()
    held = _resident_mb() - before
    assert release_memory() is True
    assert held > 150
    assert _resident_mb() - before < held / 4


def test_a_run_releases_memory_before_its_peak_count_starts(tiny, tmp_path, monkeypatch):
    import glintru.train as train_module

    calls: list[str] = []
    real_release, real_reset = train_module.release_memory, train_module.reset_peak_memory
    monkeypatch.setattr(train_module, "release_memory", lambda: calls.append("release") or real_release())
    monkeypatch.setattr(train_module, "reset_peak_memory", lambda d: calls.append("reset") or real_reset(d))
    train(tiny, "glintru", tmp_path / "run", overrides=SMALL, config=_cfg(epochs=1), progress=False)
    assert calls[:2] == ["reset", "release"]


# -- the epoch that ends training, the selection metric, the NaN check ------------------------------


def test_the_report_of_the_last_epoch_says_training_ends_there(tiny, tmp_path):
    reports = []
    train(
        tiny,
        "glintru",
        tmp_path / "r",
        overrides=SMALL,
        config=_cfg(epochs=3, patience=10, eval_mode="full"),
        reporter=reports.append,
        progress=False,
    )
    assert [(r.epoch, r.final) for r in reports] == [(1, False), (2, False), (3, True)]


def test_the_report_of_the_epoch_that_uses_up_patience_says_training_ends_there(tiny, tmp_path):
    # lr 1e-12: no epoch after the first validates better, so patience 1 ends training after epoch 2
    reports = []
    res = train(
        tiny,
        "glintru",
        tmp_path / "r",
        overrides=SMALL | {"lr": 1e-12},
        config=_cfg(epochs=6, patience=1, eval_mode="full"),
        reporter=reports.append,
        progress=False,
    )
    assert [(r.epoch, r.final) for r in reports] == [(1, False), (2, True)]
    assert res.metrics["epochs"] == 2 and res.metrics["stopped_early"] is True


def test_the_best_epoch_is_the_best_by_select_metric():
    model = torch.nn.Linear(2, 1)
    # NDCG@10 falls from epoch 1 to 2 while Recall@20 rises: each metric picks its own epoch
    first = {"epoch": 1, "valid": {"ndcg@10": 0.5, "recall@20": 0.6}}
    second = {"epoch": 2, "valid": {"ndcg@10": 0.4, "recall@20": 0.7}}
    for metric, best, bad in (("recall@20", 2, 0), ("ndcg@10", 1, 1)):
        state = TrainState()
        state.record(first, model, metric)
        state.record(second, model, metric)
        assert (state.best_epoch, state.bad_epochs) == (best, bad), metric


def test_a_run_selects_and_stops_on_its_select_metric(tiny, tmp_path, caplog):
    # in this run validation NDCG@10 peaks at epoch 3 and Recall@20 at epoch 6
    caplog.set_level(logging.INFO, logger="glintru")
    res = train(
        tiny,
        "glintru",
        tmp_path / "r",
        overrides=SMALL | {"lr": 3e-2, "select_metric": "recall@20"},
        config=_cfg(epochs=6, patience=10, seed=1, eval_mode="full"),
        progress=True,
    )
    m = res.metrics
    curve = [h["valid"]["recall@20"] for h in m["history"]]
    assert m["best_epoch"] == 1 + curve.index(max(curve))
    assert m["valid"] == m["history"][m["best_epoch"] - 1]["valid"]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train_config"]["select_metric"] == "recall@20"
    assert all("valid recall@20" in r.getMessage() for r in caplog.records if r.name == "glintru")


@pytest.mark.parametrize(
    "select_metric, message",
    [
        ("auc@10", r"select_metric must be a ranking metric at a cut-off, one of recall, hit, mrr, ndcg, precision"),
        ("ndcg", r"followed by @k \(e.g. ndcg@10\); got 'ndcg'"),
        ("ndcg@50", r"ks must contain 50 \(select_metric is ndcg@50\); got \(5, 10, 20\)"),
    ],
)
def test_a_select_metric_the_evaluator_does_not_compute_is_refused(select_metric, message):
    with pytest.raises(ValueError, match=message):
        resolve_configs("glintru", None, {"select_metric": select_metric})
    _, cfg = resolve_configs("glintru", None, {"select_metric": "mrr@5"})
    assert cfg.select_metric == "mrr@5"


class _LossesOf(torch.nn.Module):
    """The training loss as LossModule computes it, each step's value and target count kept; NaN
    from step `nan_at` on."""

    def __init__(self, model, nan_at: int | None = None):
        from glintru.train import LossModule

        super().__init__()
        self.inner = LossModule(model)
        self.nan_at = nan_at
        self.seen: list[tuple[float, int]] = []

    def forward(self, item_seq, lengths, targets):
        loss = self.inner(item_seq, lengths, targets)
        if self.nan_at is not None and len(self.seen) >= self.nan_at:
            loss = loss * float("nan")
        self.seen.append((loss.item(), targets.shape[0]))
        return loss


def _epoch_parts(tiny):
    from glintru.data.batches import BatchLoader
    from glintru.models import build_model, resolve_config

    torch.manual_seed(0)
    model = build_model("glintru", tiny.n_items, resolve_config("glintru", None, SMALL))
    loader = BatchLoader(tiny, SMALL["max_length"], 16, seed=0)
    return model, loader, torch.optim.Adam(model.parameters(), lr=1e-3)


def test_the_epoch_loss_summed_on_the_device_is_the_mean_of_the_step_losses(tiny):
    from glintru.train import NAN_CHECK_STEPS, train_epoch

    model, loader, optimizer = _epoch_parts(tiny)
    net = _LossesOf(model)
    stats = train_epoch(net, loader, optimizer, _cfg(), torch.device("cpu"), 1)
    assert stats.steps == len(net.seen) > NAN_CHECK_STEPS  # a check fell inside the epoch
    assert stats.targets == sum(n for _, n in net.seen)
    assert stats.train_loss == pytest.approx(sum(v * n for v, n in net.seen) / stats.targets, rel=1e-12)


@pytest.mark.parametrize("nan_at, checked_after", [(5, 8), (0, 4), (9, None)])
def test_a_nan_loss_is_caught_at_the_next_check_naming_its_epoch_and_step(tiny, monkeypatch, nan_at, checked_after):
    """Checked every NAN_CHECK_STEPS (4 here) steps and at the epoch's end (None: the last window)."""
    from glintru import train as loop

    monkeypatch.setattr(loop, "NAN_CHECK_STEPS", 4)
    model, loader, optimizer = _epoch_parts(tiny)
    net = _LossesOf(model, nan_at=nan_at)
    steps = len(loader)
    if checked_after is None:  # the last step, in a window shorter than 4: the epoch's end checks it
        assert steps % 4
        nan_at = net.nan_at = steps - 1
        checked_after = steps
    message = rf"^training loss became nan at epoch 3, step {nan_at} \(lr=0.001\); lower the learning rate"
    with pytest.raises(FloatingPointError, match=message):
        loop.train_epoch(net, loader, optimizer, _cfg(), torch.device("cpu"), 3)
    assert len(net.seen) == checked_after, "the steps run before the check that caught it"


def test_train_epoch_is_a_loop_over_train_step(tiny):
    """The epoch's losses and final weights are those of a hand loop over `train_step` (the step the
    benchmarks time), the gradient clip included."""
    from glintru.train import LossModule, train_epoch, train_step

    cfg, cpu = _cfg(grad_clip=0.5), torch.device("cpu")
    model, loader, optimizer = _epoch_parts(tiny)
    net = _LossesOf(model)
    stats = train_epoch(net, loader, optimizer, cfg, cpu, 2)

    by_hand, loader_2, optimizer_2 = _epoch_parts(tiny)
    loader_2.set_epoch(2)
    losses = [(train_step(LossModule(by_hand), b, optimizer_2, cfg, cpu).item(), len(b)) for b in loader_2]
    assert losses == net.seen and stats.steps == len(losses)
    assert stats.train_loss == pytest.approx(sum(v * n for v, n in losses) / stats.targets, rel=1e-12)
    for p, q in zip(model.parameters(), by_hand.parameters(), strict=True):
        assert torch.equal(p, q)
