"""The paper's per-dataset settings (Table 5), kept free of torch so that command lines can list them."""

from __future__ import annotations

from typing import Any

# Table 5 of the paper: the settings shared by every model on each dataset.
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "ml-1m": {"hidden_size": 128, "dropout": 0.2, "max_length": 200},
    "beauty": {"hidden_size": 64, "dropout": 0.5, "max_length": 100},
    "video-games": {"hidden_size": 64, "dropout": 0.5, "max_length": 100},
}
