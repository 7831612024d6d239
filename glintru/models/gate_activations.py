"""The activations of GLINT-RU's selective gate, by name: the set the model accepts, the set the
paper compares, and their labels. Free of torch, so search spaces and tables can read it cheaply."""

from __future__ import annotations

# Every value of GLINTRUConfig.gate_activation: the paper's four (below), then GELU (the
# activation of GLINT-RU's other two gates, the data-aware gate and the gated MLP) and Tanh
# (Appendix C argues against it, saturation, without measuring it).
GATE_ACTIVATION_NAMES: tuple[str, ...] = ("silu", "relu", "sigmoid", "elu", "gelu", "tanh")

# What Appendix C (Table 6, Amazon Beauty) compares, in its row order: SiLU, the default, then
# ReLU, Sigmoid and ELU. The gate-activation search samples this set and no other: a gate study
# over it reproduces Table 6 row for row, and no trial goes to an activation the paper has no
# number for (GELU and Tanh stay available for a run of their own).
PAPER_GATE_ACTIVATIONS: tuple[str, ...] = ("silu", "relu", "sigmoid", "elu")

# Display names (Table 6's spelling; it labels its SiLU row "Default (SiLU)").
GATE_ACTIVATION_LABELS: dict[str, str] = {
    "silu": "SiLU",
    "relu": "ReLU",
    "sigmoid": "Sigmoid",
    "elu": "ELU",
    "gelu": "GELU",
    "tanh": "Tanh",
}
