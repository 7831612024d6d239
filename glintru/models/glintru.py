"""GLINT-RU (Zhang et al., KDD'25): dense selective GRU and linear-attention experts, mixed by
trainable softmax weights and filtered by GELU gates; the config documents the reproduction choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from glintru.models.base import ModelConfig, SequentialRecommender, gather_at, xavier_init
from glintru.models.gate_activations import (  # noqa: F401  (the names, defined once, re-exported)
    GATE_ACTIVATION_LABELS,
    GATE_ACTIVATION_NAMES,
    PAPER_GATE_ACTIVATIONS,
)
from glintru.models.layers import (
    REFERENCE_NO_ONE_PASS,
    LinearAttention,
    pad_to_length,
    random_padding_row,
    reference_variant_loss,
)

# The selective gate's activation modules, keyed by GATE_ACTIVATION_NAMES (gate_activations.py
# says which of them the paper compares, and why the search samples only those).
GATE_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}
CONV_PADDINGS = ("same", "causal")
VARIANTS = ("masked", "reference")


class TemporalConv1d(nn.Module):
    """A d -> d convolution along the sequence; output position t sees t + offsets."""

    offsets: torch.Tensor  # buffer [k]

    def __init__(self, d: int, kernel_size: int, padding: str):
        super().__init__()
        left = (kernel_size - 1) // 2 if padding == "same" else kernel_size - 1
        self.pad = (left, kernel_size - 1 - left)  # (past, future) items a window spans
        self.conv = nn.Conv1d(d, d, kernel_size)
        self.register_buffer("offsets", torch.arange(kernel_size) - left, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x[B, N, d] with padding positions already zeroed -> [B, N, d]."""
        if self.pad[0] != self.pad[1]:
            x = F.pad(x, (0, 0, *self.pad))
        # [B, N, d] seen as [B, d, 1, N] is the channels-last layout: the 2-d convolution runs on
        # it without the two transposing copies a Conv1d call would make.
        y = F.conv2d(
            x.transpose(1, 2).unsqueeze(2),
            self.conv.weight.unsqueeze(2),
            self.conv.bias,
            padding=(0, self.pad[0] if self.pad[0] == self.pad[1] else 0),
        )
        return y.squeeze(2).transpose(1, 2)

    def window(self, rows: torch.Tensor) -> torch.Tensor:
        """The output at one position from its k input rows [..., k, d] (zeros off the sequence)."""
        w = self.conv.weight.permute(0, 2, 1).reshape(self.conv.out_channels, -1)  # [d, k*d]
        return F.linear(rows.flatten(-2), w, self.conv.bias)

    def cut(self, x: torch.Tensor, future: int) -> torch.Tensor:
        """The output at each position p of a sequence that ends `future` items after p (the
        window's later taps fall past the end and see zeros): x[B, N, d] -> [B, N - future, d]; no
        position has `future` items after it in a sequence of N <= future."""
        if x.size(1) <= future:
            return x.new_zeros(x.size(0), 0, self.conv.out_channels)
        left, k = self.pad[0], self.pad[0] + future + 1
        y = F.conv1d(F.pad(x, (0, 0, left, 0)).transpose(1, 2), self.conv.weight[..., :k], self.conv.bias)
        return y.transpose(1, 2)


def _window(last: torch.Tensor, lengths: torch.Tensor, offsets: torch.Tensor, n: int):
    """Positions last + offsets [B, k], clamped into range, and whether each is a real item.

    Clamping can repeat a position within a row; those taps are not real and are zeroed by
    `valid`, so the repeated rows add nothing (their gradients are multiplied by zero)."""
    idx = last.unsqueeze(1) + offsets
    valid = (idx >= 0) & (idx < lengths.unsqueeze(1))
    return idx.clamp(0, n - 1), valid


def _delay(x: torch.Tensor, s: int, n: int) -> torch.Tensor:
    """[B, n, d] whose row t is x[:, t - s] (zeros for t < s): aligns position t - s with t."""
    return F.pad(x, (0, 0, s, 0))[:, :n] if s > 0 else x[:, :n]


class DenseSelectiveGRU(nn.Module):
    """The GRU expert: temporal conv, GRU, selective gate on C, channel crossing, temporal conv."""

    def __init__(self, cfg: GLINTRUConfig):
        super().__init__()
        d = cfg.hidden_size
        self.w0 = nn.Linear(d, d)
        self.conv_in = TemporalConv1d(d, cfg.kernel_size, cfg.conv_padding) if cfg.use_conv else None
        self.gru = nn.GRU(d, d, num_layers=cfg.gru_num_layers, bias=cfg.gru_bias, batch_first=True)
        self.gate = nn.Sequential(
            nn.Linear(d, d // 2),
            GATE_ACTIVATIONS[cfg.gate_activation](),
            nn.Linear(d // 2, d),
            nn.Dropout(cfg.inner_dropout),
        )
        self.proj = nn.Linear(d, d)
        self.conv_out = TemporalConv1d(d, cfg.kernel_size, cfg.conv_padding) if cfg.use_conv else None

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor, last: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x[B, N, d] -> Y [B, N, d], or Y at positions `last` [B, d]."""
        m = mask.unsqueeze(-1).to(x.dtype)
        c = self.w0(x)
        if self.conv_in is not None:
            c = self.conv_in(c * m)
        # Right padding and a causal GRU: outputs at real positions never see the padding, so
        # the unpacked cuDNN-friendly call is exact there (packing would only cost time).
        h, _ = self.gru(c)
        if last is None:
            u = self.gate(c) * self.proj(h)
            return self.conv_out(u * m) if self.conv_out is not None else u
        if self.conv_out is None:
            return self.gate(gather_at(c, last)) * self.proj(gather_at(h, last))
        idx, valid = _window(last, lengths, self.conv_out.offsets, x.size(1))
        u = self.gate(gather_at(c, idx)) * self.proj(gather_at(h, idx)) * valid.unsqueeze(-1).to(c.dtype)
        return self.conv_out.window(u)

    def prefix(self, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Y [B, N, d] where row t is Y at the last position of the prefix x[:, :t+1].

        Causal convolutions: the full output already is. Centred ("same") ones: in the prefix
        ending at t the last `f` = future-tap positions see padding where the full sequence sees
        the next items, so only they are recomputed, for every t at once: C there by windows cut
        at t, the GRU re-run from the full sequence's state f steps back (exact, its inputs were
        whole), then the output convolution at t over those f rows, the exact row(s) before them
        and zeros after t. Needs a one-layer GRU (the state f steps back of each layer).
        """
        conv_in, conv_out = self.conv_in, self.conv_out
        f = conv_in.pad[1] if conv_in is not None else 0
        if conv_in is None or f == 0:
            return self.forward(x, mask, lengths)
        assert conv_out is not None  # use_conv builds both convolutions
        B, N, d = x.shape
        m = mask.unsqueeze(-1).to(x.dtype)
        w0x = self.w0(x) * m
        c = conv_in(w0x)
        h, _ = self.gru(c)
        u = self.gate(c) * self.proj(h) * m
        t = torch.arange(N, device=x.device)
        state = _delay(h, f, N).reshape(1, B * N, d)  # h_{t-f}: zero state before the sequence
        edge = []
        for j in range(1, f + 1):
            # Position p = t - f + j of the prefix ending at t has f - j items after it.
            c_j = _delay(conv_in.cut(w0x, f - j), f - j, N)
            out, new_state = self.gru(c_j.reshape(B * N, 1, d), state)
            # Positions before the sequence's start do not exist: the state stays at zero there.
            real = (t - f + j >= 0).view(1, N, 1).expand(B, N, 1).reshape(1, B * N, 1)
            state = torch.where(real, new_state, state)
            u_j = self.gate(c_j) * self.proj(out.view(B, N, d)) * real.view(B, N, 1).to(x.dtype)
            edge.append(u_j)
        # Output window at t: offsets -left..f; those <= -f come from the full sequence, the next
        # f are the recomputed edge rows, the ones after t are zeros.
        left = conv_out.pad[0]
        rows = [_delay(u, -o, N) for o in range(-left, -f + 1)] + edge + [torch.zeros_like(u)] * f
        return conv_out.window(torch.stack(rows, dim=2))


class GatedMLP(nn.Module):
    """P = GELU(Z W3 + b3) * (Z W + b); R = Dropout(P Wo + bo) (residual and norm outside)."""

    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.gate = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.out(F.gelu(self.gate(z)) * self.value(z)))


class GLINTRUBlock(nn.Module):
    """Expert mixing block (GRU and attention experts, mixing and data-aware gates) + gated MLP."""

    def __init__(self, cfg: GLINTRUConfig):
        super().__init__()
        d, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.attn = None
        if cfg.use_attention:
            assert cfg.attention_key_norm is not None  # resolved from the variant in __post_init__
            attn_dropout = cfg.dropout if cfg.attention_dropout is None else cfg.attention_dropout
            self.attn = LinearAttention(d, cfg.num_heads, attn_dropout, key_norm=cfg.attention_key_norm)
            self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.gru = DenseSelectiveGRU(cfg) if cfg.use_gru else None
        # (attention, GRU) logits; one expert alone takes the whole weight.
        self.mix_logits = nn.Parameter(torch.tensor([0.5, 0.5])) if cfg.use_gru and cfg.use_attention else None
        self.data_gate = nn.Linear(d, d)
        self.mix_out = nn.Linear(d, d)
        self.mix_dropout = nn.Dropout(cfg.inner_dropout)
        self.mix_norm = nn.LayerNorm(d, eps=eps)
        self.mlp = GatedMLP(d, cfg.inner_dropout) if cfg.use_gated_mlp else None
        self.mlp_norm = None
        if cfg.use_gated_mlp and not cfg.shared_layer_norm:
            self.mlp_norm = nn.LayerNorm(d, eps=eps)

    def mixing_weights(self) -> torch.Tensor:
        """(a1, a2) for (attention, GRU): a softmax, so they are positive and sum to 1."""
        if self.mix_logits is None:
            return torch.tensor([1.0 if self.attn is not None else 0.0, 1.0 if self.gru is not None else 0.0])
        return torch.softmax(self.mix_logits, dim=0)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor, last: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x[B, N, d] -> [B, N, d], or [B, d] at positions `last` when given."""
        xs = x if last is None else gather_at(x, last)
        a = y = None
        if self.attn is not None:
            a = self.attn_norm(self.attn(x, mask, index=last) + xs)
        if self.gru is not None:
            y = self.gru(x, mask, lengths, last)
        return self._mix(xs, a, y)

    def prefix(self, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, N, d]: row t is the block's output at the last position of the prefix x[:, :t+1]."""
        a = y = None
        if self.attn is not None:
            a = self.attn_norm(self.attn(x, mask, causal=True) + x)
        if self.gru is not None:
            y = self.gru.prefix(x, mask, lengths)
        return self._mix(x, a, y)

    def _mix(self, xs: torch.Tensor, a: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
        """Mixing, data-aware gate and gated MLP: position-wise, on the experts' outputs."""
        if self.mix_logits is not None:
            assert a is not None and y is not None  # the mixing logits exist only with both experts
            w = torch.softmax(self.mix_logits, dim=0)
            mixed = w[0] * a + w[1] * y
        else:
            expert = a if a is not None else y
            assert expert is not None  # at least one expert (GLINTRUConfig.validate)
            mixed = expert
        z = F.gelu(self.data_gate(xs)) * mixed
        z = self.mix_norm(self.mix_dropout(self.mix_out(z)) + xs)
        if self.mlp is not None:
            norm = self.mlp_norm if self.mlp_norm is not None else self.mix_norm
            z = norm(self.mlp(z) + z)
        return z


@dataclass
class GLINTRUConfig(ModelConfig):
    """GLINT-RU hyperparameters, and where they follow the paper or its public reference code
    (GLINT-RU.py in szhang-cityu/GLINT-RU, a RecBole model).

    - dropout (Table 5: 0.2 ML-1M, 0.5 Amazon) acts on the item embeddings and, unless
      attention_dropout is set, on the attention output; inner_dropout (0.3 in the reference) in
      the selective gate, after the mixing linear and after the gated MLP.
    - attention_dropout: the attention output's own rate, None (default) for `dropout`. The
      reference reads it from `hidden_dropout_prob` (0.2 in its run.py, which also sets n_heads
      4 at d=64): `--set attention_dropout=0.2 num_heads=4` with variant="reference" is the
      reference's configuration on Amazon.
    - num_layers: stacked blocks. Table 5 lists 2 for every model, but the text ("only requiring
      a single layer"), Table 3's timings (equal to Table 7's L=1 row) and the reference use one
      GLINT-RU layer, so the presets use 1. The reference has no layer count at all: its model
      is one block written out, and its run.py's `n_layers: 1` is a key the model never reads
      (an earlier run.py says so: "does not matter").
    - num_heads: 8 (Table 5; the reference run script uses 8 at d=128 and 4 at d=64).
    - kernel_size / conv_padding: "same" centres the window (k//2 items either side), as the
      reference does (kernel 3, padding 1) and the paper says ("each input state c_t
      incorporates information from both preceding and subsequent items"). The input is the
      user's history only, so seeing the next item of that history leaks nothing about the
      target. "causal" looks back k-1.
    - gate_activation: of the selective gate (Appendix C); one of GATE_ACTIVATION_NAMES
      (gate_activations.py, which also names the four the paper compares).
    - use_gru / use_attention / use_conv / use_gated_mlp: the ablations (Table 4). Without the
      gated MLP it is "Light GLINT-RU". One expert alone takes the whole mixing weight.
    - gru_bias: the reference GRU is bias-free (default); the paper's Eq. 1 has biases.
    - gru_num_layers: layers inside the GRU expert, 1. The reference builds its GRU with
      `num_layers=config["num_layers"]`, a key none of its published files sets (it reads
      embedding_size, num_layers, dropout_prob and loss_type: the keys of RecBole's
      GRU4Rec.yaml, where num_layers is 1), and it initialises the first layer's weights only
      (weight_ih_l0, weight_hh_l0): one layer is what it is written for.
    - variant: "masked" (default) or "reference", how padding is treated. "masked": padding
      never changes a result; positions after each sequence's end are zeroed before both
      convolutions and left out of the attention sums. "reference" reproduces what the
      reference code does, all at once:
        * padding to L: every input is right-padded to max_length inside the model, as RecBole
          stores every sequence (MAX_ITEM_LIST_LENGTH wide, real items first), so a result
          depends on max_length and not on the batch's width; a wider input is an error;
        * no masking: both convolutions and the attention sums see the padding positions, and
          the output convolution at the last real position reads the GRU's step into the
          padding after it (the GRU is causal, so real steps never see padding);
        * a random padding row: the reference's xavier_normal_ covers the whole embedding
          table, so the padding is a random vector e_0 (drawn here from the same
          N(0, 2 / (n_items + 1 + d))); what reaches the last real position through the first
          convolution is e_0 W0 + b0;
        * the padding id is a candidate in the training loss (RecBole's cross-entropy over the
          whole, tied embedding table); evaluation still never ranks it, nor does RecBole's.
          So e_0 is not frozen: padding_idx=0 zeroes the gradient of the lookup, but the loss
          pushes id 0 down as a never-right candidate, and that moves e_0 (and only that);
        * attention_key_norm defaults to "feature" and shared_layer_norm to True (below).
      One-pass training is refused: a prefix's representation depends on the padding after it.
    - attention_key_norm: "sequence" normalises each column of ELU(K) over the sequence, as the
      LinRec and GLINT-RU papers write it; "feature" normalises each key over its features per
      position, as the reference code computes it. "cumulative" is the causal form of "sequence":
      position t attends to items 0..t, normalised over them. A one-layer model's representation
      is the same as with "sequence"; stacked blocks become causal (exact one-pass training).
      None (default): "feature" for variant="reference", "sequence" otherwise.
    - shared_layer_norm: the reference applies one LayerNorm module to both the mixing and the
      gated-MLP residuals; True does that, False gives each its own. None (default): True for
      variant="reference", False otherwise.
    - layer_norm_eps: 1e-12 as in the reference.
    Not an option: the mixing weights are softmax(trainable logits) computed in each forward
    (the paper's Eq. 10 reads as re-applying softmax to the previous weights; the working
    reference does not). The reference lists the GRU expert's weight first, this code the
    attention's; both start at 0.5, so that is a naming difference only.
    """

    num_layers: int = 1
    kernel_size: int = 3
    num_heads: int = 8
    inner_dropout: float = 0.3
    attention_dropout: float | None = None
    gate_activation: str = "silu"
    use_gru: bool = True
    use_attention: bool = True
    use_conv: bool = True
    use_gated_mlp: bool = True
    conv_padding: str = "same"
    gru_bias: bool = False
    gru_num_layers: int = 1
    variant: str = "masked"
    attention_key_norm: str | None = None
    shared_layer_norm: bool | None = None
    layer_norm_eps: float = 1e-12

    # Table 5 (d, dropout and max length come from DATASET_PRESETS); one layer, see above.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ml-1m": {"num_layers": 1, "kernel_size": 3, "num_heads": 8},
        "beauty": {"num_layers": 1, "kernel_size": 3, "num_heads": 8},
        "video-games": {"num_layers": 1, "kernel_size": 3, "num_heads": 8},
    }

    def __post_init__(self) -> None:
        # Options left at None follow the variant; a value given explicitly wins (so one reference
        # behaviour at a time can be switched back, e.g. to measure its share of a difference).
        if self.attention_key_norm is None:
            self.attention_key_norm = "feature" if self.variant == "reference" else "sequence"
        if self.shared_layer_norm is None:
            self.shared_layer_norm = self.variant == "reference"
        self.validate()

    def validate(self) -> None:
        super().validate()
        if not (self.use_gru or self.use_attention):
            raise ValueError("GLINT-RU needs at least one expert: use_gru and use_attention cannot both be False")
        if self.gate_activation not in GATE_ACTIVATIONS:
            raise ValueError(
                f"unknown gate_activation {self.gate_activation!r}; choose one of {', '.join(GATE_ACTIVATIONS)}"
            )
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.conv_padding not in CONV_PADDINGS:
            raise ValueError(f"unknown conv_padding {self.conv_padding!r}; choose one of {', '.join(CONV_PADDINGS)}")
        if self.attention_key_norm not in LinearAttention.KEY_NORMS:
            raise ValueError(
                f"unknown attention_key_norm {self.attention_key_norm!r}; "
                f"choose one of {', '.join(LinearAttention.KEY_NORMS)}"
            )
        if self.kernel_size < 1 or self.gru_num_layers < 1 or self.num_heads < 1:
            raise ValueError("kernel_size, gru_num_layers and num_heads must be positive")
        if self.use_conv and self.kernel_size > self.max_length:
            # a window wider than the longest history only ever adds padding
            raise ValueError(
                f"kernel_size {self.kernel_size} exceeds max_length {self.max_length}: the convolution "
                "window must fit in a history; lower kernel_size or raise max_length"
            )
        if self.use_attention and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if not 0.0 <= self.inner_dropout < 1.0:
            raise ValueError(f"inner_dropout must lie in [0, 1); got {self.inner_dropout}")
        if self.attention_dropout is not None and not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"attention_dropout must lie in [0, 1); got {self.attention_dropout}")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be positive; got {self.layer_norm_eps}")


class GLINTRU(SequentialRecommender):
    """GLINT-RU over right-padded item sequences (id 0 = padding, no positional embedding).

    One block, for input X [B, N, d] (the item embeddings for the first block):
        C = TemporalConv1d_k(X W0 + b0);  H = GRU(C)
        Y = TemporalConv1d_k(G(C) * (H W_H + b_H)),  G = Linear(d, d/2), act, Linear(d/2, d), Dropout
        A = LayerNorm(Dropout(LinearAttention(X)) + X)
        M = a1 A + a2 Y,  (a1, a2) = softmax of two trainable scalars (initialised 0.5, 0.5)
        Z = LayerNorm(Dropout(Linear(GELU(X W + b) * M)) + X)
        R = LayerNorm(Dropout((GELU(Z W3 + b3) * (Z W + b)) Wo + bo) + Z)
    The representation is R at the last real position. Xavier init (normal for the embedding,
    uniform for Linear and GRU weights); the convolutions keep PyTorch's default, as in the
    reference. Only the last position is returned, so the last block computes its
    position-wise tail (second convolution, gates, mixing, gated MLP, attention queries) there
    alone; `sequence_output` gives every position. `prefix_outputs` gives, at every position t,
    the representation of the prefix ending at t (one-pass training, see `one_pass_support`).
    With variant="reference" (see the config) the blocks see the input padded to max_length
    with every position counted as real.
    """

    config_class = GLINTRUConfig
    config: GLINTRUConfig

    def __init__(self, config: GLINTRUConfig, n_items: int, item_features=None):
        super().__init__(config, n_items, item_features)
        config.validate()
        self.item_embedding = nn.Embedding(n_items + 1, config.hidden_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(GLINTRUBlock(config) for _ in range(config.num_layers))
        xavier_init(self)
        if config.variant == "reference":
            # xavier_normal_'s std for the [n_items + 1, d] table, the one the other rows got
            random_padding_row(self.item_embedding, math.sqrt(2.0 / (n_items + 1 + config.hidden_size)))

    def _inputs(self, item_seq: torch.Tensor, lengths: torch.Tensor):
        """(item ids, mask, lengths) as the blocks see them: the batch with its padding masked
        out, or (reference variant) padded to max_length with every position real."""
        if self.config.variant == "reference":
            item_seq = pad_to_length(item_seq, self.config.max_length)
            mask = torch.ones_like(item_seq, dtype=torch.bool)
            return item_seq, mask, torch.full_like(lengths, item_seq.size(1))
        mask = torch.arange(item_seq.size(1), device=item_seq.device).unsqueeze(0) < lengths.unsqueeze(1)
        return item_seq, mask, lengths

    def _encode(self, item_seq: torch.Tensor, lengths: torch.Tensor, last_only: bool) -> torch.Tensor:
        last = (lengths - 1).clamp(min=0)
        item_seq, mask, lengths = self._inputs(item_seq, lengths)
        x = self.emb_dropout(self.item_embedding(item_seq))
        for i, block in enumerate(self.blocks):
            final = last_only and i == len(self.blocks) - 1
            x = block(x, mask, lengths, last if final else None)
        return x

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self._encode(item_seq, lengths, last_only=True)

    def loss(
        self, item_seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        return reference_variant_loss(self, item_seq, lengths, targets, reduction)

    def one_pass_support(self) -> str | None:
        cfg = self.config
        if cfg.variant == "reference":
            return self.no_one_pass(REFERENCE_NO_ONE_PASS)
        same_conv = cfg.use_gru and cfg.use_conv and cfg.conv_padding == "same" and cfg.kernel_size > 1
        if cfg.num_layers > 1:
            # The last block is read per prefix; the blocks below it must already be causal.
            why = []
            if same_conv:
                why.append("conv_padding='same' lets a position see the next items")
            if cfg.use_attention and cfg.attention_key_norm != "cumulative":
                why.append(f"attention_key_norm={cfg.attention_key_norm!r} attends to later items")
            if why:
                return self.no_one_pass(
                    f"with num_layers={cfg.num_layers} the lower blocks must be causal, but "
                    f"{' and '.join(why)} (one pass needs num_layers=1, or conv_padding='causal' and "
                    "attention_key_norm='cumulative')"
                )
        if same_conv and cfg.gru_num_layers > 1:
            return self.no_one_pass(
                f"conv_padding='same' with gru_num_layers={cfg.gru_num_layers}: the prefix edge is "
                "recomputed from the GRU state k//2 steps back, which needs a one-layer GRU (one pass "
                "needs gru_num_layers=1 or conv_padding='causal')"
            )
        return None

    def prefix_outputs(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.require_one_pass()
        item_seq, mask, lengths = self._inputs(item_seq, lengths)
        x = self.emb_dropout(self.item_embedding(item_seq))
        for block in self.blocks[:-1]:
            x = block(x, mask, lengths)  # causal (one_pass_support): row t is the prefix's already
        return cast(GLINTRUBlock, self.blocks[-1]).prefix(x, mask, lengths)

    def sequence_output(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Block outputs at every position [B, N, d] (N = max_length for the reference variant);
        only real positions are meaningful."""
        return self._encode(item_seq, lengths, last_only=False)

    def mixing_weights(self) -> torch.Tensor:
        """[num_layers, 2]: each block's (attention, GRU) expert weights."""
        return torch.stack(
            [cast(GLINTRUBlock, b).mixing_weights().to(self.item_embedding.weight.device) for b in self.blocks]
        )
