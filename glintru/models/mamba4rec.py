"""Mamba4Rec (Liu et al., 2024): selective state-space (Mamba) blocks with LayerNorm and a
feed-forward network, in pure PyTorch on a parallel scan (optional mamba_ssm kernel on CUDA)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glintru.models.base import ModelConfig, SequentialRecommender, gather_last, normal_init
from glintru.models.scan import SCAN_BACKENDS, selective_scan


@dataclass
class Mamba4RecConfig(ModelConfig):
    """Defaults follow the Mamba4Rec repository (1 layer, d_state 32, d_conv 4, expand 2).

    The dataset presets apply the paper's Table 5 instead: 2 layers and kernel size 3.
    dt_rank 0 means Mamba's "auto", ceil(hidden_size / 16). scan: the selective-scan backend,
    one of glintru.models.scan.SCAN_BACKENDS ("auto" takes the mamba_ssm kernel on CUDA when it
    is installed, the parallel scan otherwise).
    dt_init: how the SSM step-size projection dt_proj starts. "mamba" (default): Mamba's own init,
    weight U(-dt_rank^-0.5, dt_rank^-0.5) and a bias giving softplus(bias) log-uniform in
    [1e-3, 1e-1], so each channel starts with a small step. "reference": what the Mamba4Rec
    reference code ends up with (mamba4rec.py applies its N(0, 0.02)-weight, zero-bias init to
    every nn.Linear after building mamba_ssm's Mamba, dt_proj included, which overwrites Mamba's
    step-size init): weight N(0, 0.02), bias 0, so every step starts near softplus(0) = 0.69.
    Mamba4Rec is not part of RecBole, so a RecBole-based rerun of it (as the GLINT-RU paper's
    baselines are) runs that code: choose "reference" to match it.
    """

    num_layers: int = 1
    d_state: int = 32
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 0
    scan: str = "auto"
    dt_init: str = "mamba"

    DT_INITS: ClassVar[tuple[str, ...]] = ("mamba", "reference")
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ml-1m": {"num_layers": 2, "d_conv": 3},
        "beauty": {"num_layers": 2, "d_conv": 3},
        "video-games": {"num_layers": 2, "d_conv": 3},
    }

    def validate(self) -> None:
        super().validate()
        if min(self.d_state, self.d_conv, self.expand) <= 0 or self.dt_rank < 0:
            raise ValueError("d_state, d_conv and expand must be positive and dt_rank >= 0")
        if self.scan not in SCAN_BACKENDS:
            raise ValueError(f"scan must be one of {', '.join(SCAN_BACKENDS)}; got {self.scan!r}")
        if self.dt_init not in self.DT_INITS:
            raise ValueError(f"dt_init must be one of {', '.join(self.DT_INITS)}; got {self.dt_init!r}")


class MambaBlock(nn.Module):
    """Mamba's selective SSM block: in_proj -> causal depthwise conv -> SiLU -> selective scan
    (input-dependent delta, B, C) with D skip -> gate with SiLU(z) -> out_proj."""

    def __init__(
        self,
        d_model: int,
        d_state: int,
        d_conv: int,
        expand: int,
        dt_rank: int = 0,
        scan: str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        d_inner = expand * d_model
        self.d_state, self.scan = d_state, scan
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        # S4D-real initialisation: A = -(1, 2, ..., N) for every channel.
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.dt_min, self.dt_max = dt_min, dt_max
        self.reset_dt()

    @torch.no_grad()
    def reset_dt(self) -> None:
        """Mamba's step-size init: softplus(bias) log-uniform in [dt_min, dt_max]."""
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        d_inner = self.dt_proj.out_features
        dt = torch.exp(torch.rand(d_inner) * (math.log(self.dt_max) - math.log(self.dt_min)) + math.log(self.dt_min))
        dt = dt.clamp(min=1e-4)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.size(1)
        u, z = self.in_proj(x).chunk(2, dim=-1)
        # With d_conv-1 zeros of padding, output t of the first L sees inputs t-d_conv+1..t only.
        u = F.silu(self.conv1d(u.transpose(1, 2))[..., :L].transpose(1, 2))
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log.float())
        y = selective_scan(u, delta, A, B, C, self.D, backend=self.scan)
        return self.out_proj(y * F.silu(z))


class ResidualFeedForward(nn.Module):
    """Mamba4Rec's FFN sublayer: LayerNorm(x + Dropout(W2 Dropout(GELU(W1 x)))).

    Not layers.FeedForward (the transformer baselines' FFN): this one holds its own residual and
    LayerNorm and drops out after the activation too, as Mamba4Rec's code does."""

    def __init__(self, d_model: int, inner_size: int, dropout: float):
        super().__init__()
        self.w_1 = nn.Linear(d_model, inner_size)
        self.w_2 = nn.Linear(inner_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.w_2(self.dropout(F.gelu(self.w_1(x)))))
        return self.norm(h + x)


class MambaLayer(nn.Module):
    """Mamba block, dropout, LayerNorm, then the FFN.

    Mamba4Rec adds the residual around the Mamba block only when layers are stacked; a single
    layer normalises the block output alone. We keep that behaviour (`residual`).
    """

    def __init__(self, config: Mamba4RecConfig, residual: bool):
        super().__init__()
        d = config.hidden_size
        self.residual = residual
        self.mamba = MambaBlock(d, config.d_state, config.d_conv, config.expand, config.dt_rank, config.scan)
        self.dropout = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.ffn = ResidualFeedForward(d, 4 * d, config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.mamba(x))
        h = self.norm(h + x if self.residual else h)
        return self.ffn(h)


class Mamba4Rec(SequentialRecommender):
    """Causal over right-padded input: the conv and the scan only look back, so the padding after
    the last real item cannot change the representation taken there."""

    config_class = Mamba4RecConfig

    def __init__(
        self, config: Mamba4RecConfig, n_items: int, item_features: dict[str, tuple[np.ndarray, int]] | None = None
    ):
        super().__init__(config, n_items, item_features)
        d = config.hidden_size
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.dropout = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(
            MambaLayer(config, residual=config.num_layers > 1) for _ in range(config.num_layers)
        )
        # Mamba4Rec's init (normal 0.02, zero biases) over every Linear, dt_proj included: that is
        # dt_init="reference". With dt_init="mamba" the SSM step size then gets Mamba's own
        # initialisation back (reset_dt), which this blanket init erases.
        normal_init(self)
        if config.dt_init == "mamba":
            for layer in self.layers:
                cast(MambaLayer, layer).mamba.reset_dt()

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return gather_last(self.prefix_outputs(item_seq, lengths), lengths)

    def one_pass_support(self) -> str | None:
        return None  # the conv and the scan only look back

    def prefix_outputs(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dropout(self.item_embedding(item_seq)))
        for layer in self.layers:
            h = layer(h)
        return h
