"""cluster/gpu.yaml against Ray's own cluster-config schema, offline."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from search_helpers import REPO

CONFIG = REPO / "cluster" / "gpu.yaml"


def _load() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def _check(raw: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    return prepared


def test_gpu_yaml_validates_and_describes_the_intended_cluster():
    cfg = _check(_load())
    assert cfg["provider"]["type"] == "aws"
    nodes = cfg["available_node_types"]
    head, worker = nodes[cfg["head_node_type"]], nodes["gpu_worker"]
    assert head["resources"]["CPU"] == 0 and "GPU" not in head["resources"]
    assert worker["resources"]["GPU"] >= 1 and worker["min_workers"] == 0 < worker["max_workers"]
    assert worker["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert cfg["file_mounts"]["~/glintru"] == "."
    assert "~/.ray/auth_token" in cfg["file_mounts"]
    setup = " ".join(cfg["worker_setup_commands"])
    assert "download.pytorch.org/whl/cu" in setup and "pip install" in setup and "glintru[tune]" in setup
    starts = [c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token ray start" in c for c in starts)


@pytest.mark.parametrize("breakage, error", [
    (lambda c: c.update(max_wokers=4), jsonschema.ValidationError),            # misspelt key
    (lambda c: c.update(max_workers="eight"), jsonschema.ValidationError),     # wrong type
    (lambda c: c.update(head_node_type="gpu_head"), ValueError),              # no such node type
    (lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=20), ValueError),  # > max
    (lambda c: c["available_node_types"]["gpu_worker"].pop("node_config"), jsonschema.ValidationError),
])
def test_broken_copies_are_rejected(breakage, error):
    raw = _load()
    breakage(raw)
    with pytest.raises(error):
        _check(raw)
