"""benchmarks/gpu.sh --quick (its CPU mode) and the efficiency benchmark's epoch estimate, so the GPU
turn's script keeps working between GPU turns."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _efficiency():
    spec = importlib.util.spec_from_file_location("bench_efficiency", ROOT / "benchmarks" / "efficiency.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_timed_batches_cover_the_width_range_and_estimate_a_linear_cost_exactly():
    eff = _efficiency()
    widths = np.array([1, 1, 2, 3, 5, 8, 13, 100, 100, 40])
    sizes = np.array([256] * 9 + [100])
    chosen = eff.sample_batches(widths, sizes, 5)
    assert widths[chosen].min() == 1 and widths[chosen].max() == 100 and len(set(widths[chosen])) == len(chosen)
    assert eff.sample_batches(np.full(6, 50), np.array([9, 9, 9, 9, 9, 3]), 5).tolist() == [0]
    # a step cost linear in the width is recovered exactly, the short batch weighted by its size
    cost = lambda w: 0.05 + 0.01 * w  # noqa: E731
    est = eff.estimate_epoch(widths, sizes, widths[chosen], cost(widths[chosen]), 256)
    assert est == pytest.approx((cost(widths) * np.minimum(sizes / 256, 1)).sum())


def test_every_mode_is_one_registry_entry():
    eff = _efficiency()
    assert list(eff.MODES) == ["fixed", "random", "bucketed", "one-pass"]
    from glintru.models import MODELS

    assert eff.ALL_MODELS == tuple(MODELS)  # the default model list is the registry
    assert eff.MODES["fixed"].loader_options(100) == {"bucketing": False, "pad_to": 100}
    assert eff.MODES["bucketed"].loader_options(100) == {"bucketing": True}
    assert eff.MODES["one-pass"].one_pass and not eff.MODES["bucketed"].one_pass


def test_the_one_pass_epoch_trains_every_target_once(tmp_path):
    from types import SimpleNamespace

    from glintru.data.batches import train_samples
    from glintru.data.dataset import load_dataset
    from glintru.data.synthetic import generate

    eff = _efficiency()
    ds = load_dataset(generate(tmp_path / "syn", n_users=80, n_items=30, avg_length=12, seed=2))
    a = SimpleNamespace(max_length=8, batch_size=64, full_epoch=False, train_batches=1)
    plan = eff._one_pass_plan(ds, a, torch.device("cpu"))
    assert plan["sizes"].sum() == train_samples(ds)[0].size  # every (user, target) pair once
    assert len(plan["batches"]) == len(plan["chosen"]) and max(plan["widths"]) <= 8
    n = len(plan["indices"])
    assert n <= 16 and plan["chosen"].tolist() == list(range(n))  # a short epoch is timed whole
    small = SimpleNamespace(max_length=8, batch_size=8, full_epoch=False, train_batches=1)
    long_epoch = eff._one_pass_plan(ds, small, torch.device("cpu"))
    assert len(long_epoch["indices"]) > 16 and len(long_epoch["chosen"]) == 16  # a long one is sampled


def _measure_args(data, modes):
    from types import SimpleNamespace

    return SimpleNamespace(
        data=str(data),
        device="cpu",
        hidden_size=8,
        max_length=8,
        batch_size=32,
        repeats=1,
        train_batches=2,
        full_epoch=False,
        compile=False,
        sweep=[],
        bf16=False,
        modes=modes,
    )


def test_the_benchmark_times_the_training_loops_own_step(tmp_path, monkeypatch):
    import glintru.train
    from glintru.data.batches import BatchLoader
    from glintru.data.dataset import load_dataset
    from glintru.data.synthetic import generate
    from glintru.models import build_model, resolve_config

    eff = _efficiency()
    data = generate(tmp_path / "syn", n_users=40, n_items=20, avg_length=8, seed=1)
    cpu, cfg = torch.device("cpu"), glintru.train.TrainConfig(grad_clip=0.5)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(build_model("sasrec", 20, resolve_config("sasrec", None, {"hidden_size": 8, "max_length": 8})))
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in models]
    step = eff.loop_step(glintru.train.LossModule(models[0]), opts[0], cfg, cpu)
    assert eff.train_step is glintru.train.train_step and step.func is glintru.train.train_step
    batch = next(iter(BatchLoader(load_dataset(data), 8, 16, seed=0)))
    # the same step as the loop's: same loss, same weights after it (the same dropout masks)
    torch.manual_seed(1)
    loss = step(batch)
    torch.manual_seed(1)
    assert torch.equal(loss, glintru.train.train_step(glintru.train.LossModule(models[1]), batch, opts[1], cfg, cpu))
    assert all(torch.equal(p, q) for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True))

    calls = []

    def counted(net, batch, **kw):
        calls.append(type(net).__name__)
        return glintru.train.train_step(net, batch, **kw)

    monkeypatch.setattr(eff, "train_step", counted)
    result = eff.measure_one("sasrec", _measure_args(data, ["random", "one-pass"]))
    timed = sum(len(row["timed_batches"]) for row in result["modes"].values())
    # every pipeline's warm-up and timed steps, and the breakdown's whole steps, are the loop's step
    assert calls and set(calls) == {"LossModule"} and len(calls) >= 2 * timed
    assert result["breakdown"]["at_full_width"]["step_s"] > 0


def test_a_pipeline_is_one_modes_entry(tmp_path, monkeypatch):
    from glintru.data.synthetic import generate

    eff = _efficiency()
    data = generate(tmp_path / "syn", n_users=40, n_items=20, avg_length=8, seed=1)
    toy = eff.Mode("toy: bucketed, padded to L", lambda L: {"bucketing": True, "pad_to": L}, headline=True)
    monkeypatch.setitem(eff.MODES, "toy", toy)
    result = eff.measure_one("gru4rec", _measure_args(data, ["random", "toy"]))
    row = result["modes"]["toy"]
    assert row["label"] == toy.label and row["mean_padded_width"] == 8 and row["train_s_per_epoch"] > 0
    assert row["samples"] == result["modes"]["random"]["samples"] and "speedup_vs_random" in row
    meta = dict(
        dataset="syn", n_users=40, n_items=20, samples=row["samples"], device="cpu", hidden_size=8, max_length=8,
        batch_size=32, bf16=False, threads=1, repeats=1, train_batches=2, full_epoch=False, compile=False,
        modes=["random", "toy"],
    )  # fmt: skip
    header = eff.markdown([result], meta).splitlines()[4]
    assert "| toy: bucketed, padded to L |" in header and "| toy vs random |" in header


@pytest.mark.slow
def test_gpu_script_quick_mode_writes_every_json_under_one_folder(tmp_path):
    out = tmp_path / "gpu"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    ran = {s["step"]: s for s in summary["steps"]}
    assert ran["efficiency-beauty"]["exit"] == 0 and ran["efficiency-ml-1m"]["exit"] == 0
    assert ran["cuda-tests"]["skipped"] and ran["search-overhead"]["skipped"]
    assert summary["json"] == ["efficiency-beauty.json", "efficiency-ml-1m.json"]
    report = json.loads((out / "efficiency-beauty.json").read_text())
    assert report["meta"]["like"] == "beauty" and report["meta"]["max_length"] == 20
    assert {r["model"] for r in report["models"]} == {"glintru", "sasrec"}
    for row in report["models"]:
        modes = row["modes"]
        assert set(modes) == {"fixed", "random", "bucketed", "one-pass"}  # both models offer one-pass
        assert modes["fixed"]["mean_padded_width"] == 20
        # the Beauty shape's short prefixes: bucketed batches are far narrower than random ones
        assert modes["bucketed"]["mean_padded_width"] < 0.6 * modes["random"]["mean_padded_width"]
        assert all(m["train_s_per_epoch"] > 0 for m in modes.values())
        assert row["breakdown"]["at_full_width"]["width"] == 20
        assert row["infer_ms_per_batch"] > 0
    assert "length-bucketed batches" in (out / "efficiency-beauty.md").read_text()
