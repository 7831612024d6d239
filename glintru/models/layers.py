"""Blocks shared by several models: masked linear attention (LinRec, GLINT-RU), feed-forward, and
the pieces of the RecBole-style reference variant (padding to L, the padding row, the loss)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from glintru.models.base import SequentialRecommender, gather_at


class LinearAttention(nn.Module):
    """LinRec's linear attention, O(N d^2): A = Q' (K'^T V) / sqrt(d_head) per head.

    Q' = L2-normalise ELU(Q) over features (rows). K' = L2-normalise ELU(K) over the sequence
    (columns of K, as LinRec's paper writes it: key_norm="sequence"), or over features of each
    position (key_norm="feature", what the LinRec and GLINT-RU reference code computes).
    key_norm="cumulative" is the causal form of "sequence": position t attends to keys 0..t only,
    each column normalised over those positions, so an output never depends on later items (and
    at the last position it equals "sequence").
    Padding positions are zeroed in K' (so their rows of V add nothing) before the sums: the
    output at real positions does not depend on how much padding follows. An all-True mask
    masks nothing, as the reference code does (its padding keys and values join the sums).
    """

    KEY_NORMS = ("sequence", "feature", "cumulative")

    def __init__(
        self, hidden_size: int, num_heads: int, dropout: float = 0.0, eps: float = 1e-12, key_norm: str = "sequence"
    ):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        if key_norm not in self.KEY_NORMS:
            raise ValueError(f"unknown key_norm {key_norm!r}; choose one of {', '.join(self.KEY_NORMS)}")
        self.h = num_heads
        self.dh = hidden_size // num_heads
        self.eps = eps
        self.key_norm = key_norm
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, index: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        """x[B, N, d], mask[B, N] (True at real items) -> [B, N, d] (before residual/norm).

        With index[B], only the rows x[b, index[b]] are queried and the result is [B, d]: the
        keys and values still cover the whole sequence (up to index for "cumulative"), so it
        equals the full output gathered at index, for a fraction of the cost (a model that only
        needs its last position). With causal=True (implied by key_norm="cumulative") row t is
        what the sequence cut after t would give at its last position, for every t at once.
        """
        if index is None and (causal or self.key_norm == "cumulative"):
            return self._causal(x, mask)
        B, N, d = x.shape
        if self.key_norm == "cumulative" and index is not None:
            mask = mask & (torch.arange(N, device=x.device).unsqueeze(0) <= index.unsqueeze(1))
        # Zero keys at padding: those rows then add nothing to K'^T V nor to the column norms.
        k = F.elu(self.key(x)) * mask.unsqueeze(-1).to(x.dtype)
        v = self.value(x)
        if self.key_norm == "feature":
            k = F.normalize(k.view(B, N, self.h, self.dh), dim=-1, eps=self.eps).view(B, N, d)
        # One batched product per head on strided views: no head-major copies of K and V.
        heads = [slice(i * self.dh, (i + 1) * self.dh) for i in range(self.h)]
        kv = [k[..., s].transpose(1, 2) @ v[..., s] for s in heads]  # h x [B, dh, dh]
        if self.key_norm != "feature":
            # Dividing column i of K by its norm over the sequence divides row i of K^T V by it:
            # done on the small [dh, dh] products rather than on the [N, d] keys.
            inv = 1.0 / k.norm(dim=1).clamp_min(self.eps).unsqueeze(-1)  # [B, d, 1]
            kv = [kv_h * inv[:, s] for kv_h, s in zip(kv, heads)]
        xq = x if index is None else gather_at(x, index).unsqueeze(1)
        n = xq.size(1)
        q = F.normalize(F.elu(self.query(xq)).view(B, n, self.h, self.dh), dim=-1, eps=self.eps).view(B, n, d)
        out = torch.cat([q[..., s] @ kv_h for kv_h, s in zip(kv, heads)], dim=-1) / math.sqrt(self.dh)
        if index is not None:
            out = out.squeeze(1)
        return self.dropout(self.dense(out))

    def _causal(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Row t attends to keys 0..t, normalised as the prefix 0..t would be: running sums of
        k_s v_s^T (and, for the sequence norms, of k_s^2) over s <= t."""
        B, N, d = x.shape
        k = F.elu(self.key(x)) * mask.unsqueeze(-1).to(x.dtype)
        v = self.value(x)
        q = F.normalize(F.elu(self.query(x)).view(B, N, self.h, self.dh), dim=-1, eps=self.eps)
        if self.key_norm == "feature":
            k = F.normalize(k.view(B, N, self.h, self.dh), dim=-1, eps=self.eps).view(B, N, d)
        else:
            # Column i of K divided by its norm over 0..t scales row i of K^T V: fold it into q_t.
            # clamped before the root: sqrt's gradient at 0 is infinite, and inf * 0 is NaN (a key
            # column that is all zero up to t, e.g. ELU(0), made training diverge)
            norm = k.square().cumsum(dim=1).clamp_min(self.eps**2).sqrt()
            q = q / norm.view(B, N, self.h, self.dh)
        kv = torch.einsum("bnhi,bnhj->bnhij", k.view(B, N, self.h, self.dh), v.view(B, N, self.h, self.dh)).cumsum(
            dim=1
        )  # [B, N, h, dh, dh]
        out = torch.einsum("bnhi,bnhij->bnhj", q, kv).reshape(B, N, d) / math.sqrt(self.dh)
        return self.dropout(self.dense(out))


class FeedForward(nn.Module):
    """Two-layer position-wise feed-forward with GELU (the transformer baselines' FFN)."""

    def __init__(self, hidden_size: int, inner_size: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, inner_size)
        self.fc2 = nn.Linear(inner_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


# -- the reference variant (RecBole-based reference code of LinRec and GLINT-RU) ---------------

# Why `one_pass_support` refuses the reference variant (the `why` of `no_one_pass`).
REFERENCE_NO_ONE_PASS = (
    "variant='reference' pads every input to max_length and masks nothing, so a prefix's "
    "representation depends on the padding after it, which one pass over the whole history "
    "replaces by the next items (variant='masked' allows one pass)"
)


def pad_to_length(item_seq: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad item ids [B, N] with 0 to [B, length], as RecBole stores every sequence (its
    item lists are `MAX_ITEM_LIST_LENGTH` wide, real items first)."""
    n = item_seq.size(1)
    if n > length:
        raise ValueError(
            f"sequence width {n} exceeds max_length {length}; the reference variant pads "
            "every input to max_length: truncate inputs to the last max_length items"
        )
    return F.pad(item_seq, (0, length - n)) if n < length else item_seq


def random_padding_row(embedding: nn.Embedding, std: float) -> None:
    """Draw the padding row from N(0, std), as an init that covers every row leaves it (the
    reference codes apply theirs to the whole table). `padding_idx` still zeroes that row's
    gradient through the lookup; it moves only where the table is used otherwise (a tied output
    layer whose loss counts id 0, `cross_entropy_all_ids`)."""
    with torch.no_grad():
        embedding.weight[embedding.padding_idx].normal_(0.0, std)


def cross_entropy_all_ids(
    rep: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of targets[n] under rep[n] @ items.T with every id a candidate, the padding
    id 0 included: RecBole's CE (logits against the whole item_embedding.weight). Scores in at
    least float32, as in `base.item_cross_entropy`, which leaves id 0 out."""
    logits = rep @ items.t()
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits, targets, reduction=reduction)


def reference_variant_loss(
    model: SequentialRecommender,
    item_seq: torch.Tensor,
    lengths: torch.Tensor,
    targets: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """The training loss of a model with a `variant` setting (GLINT-RU, LinRec): in the reference
    variant the padding id is a candidate, as in RecBole; otherwise the shared loss."""
    if getattr(model.config, "variant", None) == "reference":
        return cross_entropy_all_ids(model(item_seq, lengths), model.item_embeddings(), targets, reduction)
    return SequentialRecommender.loss(model, item_seq, lengths, targets, reduction)
