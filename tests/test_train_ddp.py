"""The one training loop under DistributedDataParallel: two CPU ranks over gloo."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, out: str, result_dir: str) -> None:
    from glintru.train import TrainConfig, train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    epochs = []
    try:
        res = train(
            data,
            "glintru",
            out,
            overrides={"hidden_size": 16, "max_length": 20},
            config=TrainConfig(epochs=2, batch_size=64, device="cpu", eval_mode="uni50"),
            rank=rank,
            world_size=world,
            reporter=lambda r: epochs.append(r.epoch),
            progress=False,
        )
        torch.save(res.model.state_dict(), os.path.join(result_dir, f"rank{rank}.pt"))
        with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"epochs": epochs, "metrics": bool(res.metrics)}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_rank_ddp_training_writes_one_run(tmp_path):
    from glintru.data.synthetic import generate

    data = generate(tmp_path / "data", n_users=200, n_items=60, avg_length=12, seed=0)
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text())["epochs"] == [1, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0 <= metrics["test"]["ndcg@10"] <= 1
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    # only rank 0 writes the run; gradients were averaged, so both ranks end with the same weights
    assert [json.loads((tmp_path / f"rank{r}.json").read_text())["metrics"] for r in (0, 1)] == [True, False]
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    saved = torch.load(out / "model.pt", weights_only=True)
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k])
        torch.testing.assert_close(w0[k], saved[k])
