"""The contract every registered model keeps, run over the registry: a model added to
glintru.models.MODELS is covered here by that entry alone (CONTRIBUTING.md, "Add a model").

The contract: item 0 is padding and real items are 1..n_items; `forward(item_seq [B, L], lengths
[B]) -> [B, d]` is the representation after the last real item, and scores are
`rep @ item_embeddings().T` (`item_embeddings()` is [n_items + 1, d], the padding column scores
-inf); padding never changes a result; the same seed gives the same weights and outputs; the state
dict and the config's dict rebuild the model; where one pass is declared exact, position t of one
pass equals the forward of the prefix ending at t; a few Adam steps learn a next-item pattern.

Each check builds the model by name from its spec's `small` settings (d=16, max_length 40, every
dropout at 0 unless a check sets it) and without item side features. Options of a model (RecBole
or reference variants, some of which depend on padding on purpose) are its own test file's
business: only the default configuration is checked here.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from glintru.models import MODELS, build_model, get_model_class, resolve_config
from glintru.models.base import gather_at, gather_last
from glintru.models.transformer import TransformerConfig, TransformerRecommender

from model_checks import (  # noqa: F401  (one_thread: autouse fixture, toy_registered: fixture)
    N_ITEMS,
    TOY,
    assert_attention_presets,
    assert_contract,
    assert_cuda_matches_cpu_and_trains_in_bf16,
    assert_deterministic_given_seed,
    assert_padding_invariant,
    assert_rejects_wider_than_max_length,
    assert_state_dict_round_trip,
    cycle_task,
    histories,
    one_thread,
    toy_registered,
    train_steps,
)

HIDDEN, MAX_LENGTH = 16, 40


def build(name: str, seed: int = 0, **overrides):
    """The registered model `name`, small and dropout-free, its weights drawn after manual_seed(seed)."""
    spec = MODELS[name]
    config_class = get_model_class(name).config_class
    no_dropout = {f: 0.0 for f in config_class.field_names() if f.endswith("dropout")}
    cfg = resolve_config(
        name, None, {"hidden_size": HIDDEN, "max_length": MAX_LENGTH, **no_dropout, **spec.small, **overrides}
    )
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        # A model may warn that the data has no side features; here that is the point.
        warnings.simplefilter("ignore", UserWarning)
        return build_model(name, N_ITEMS, cfg)


def check_forward_and_scores(name: str) -> None:
    """forward gives [B, d'] for the d' of item_embeddings() [n_items + 1, d']; scores are
    rep @ item_embeddings().T with the padding column at -inf; the loss is a finite scalar with
    finite gradients."""
    m = build(name).eval()
    width = m.item_embeddings().size(1)
    assert_contract(m, hidden_size=width, encodes=False)
    m.eval()
    seq, lengths = histories(20)
    with torch.no_grad():
        scores = m.scores(seq, lengths)
        expected = m(seq, lengths) @ m.item_embeddings().t()
    torch.testing.assert_close(scores[:, 1:], expected[:, 1:])
    assert scores.dtype == torch.float32


def check_padding_invariance(name: str) -> None:
    """The same histories padded to 20 and to max_length columns give the same representation
    and scores, in eval and in train mode."""
    m = build(name)
    for train_mode in (False, True):
        assert_padding_invariant(m.train(train_mode), scores=True, wide=MAX_LENGTH)


def check_determinism(name: str) -> None:
    """Same seed, same weights and outputs; another seed, other outputs; dropout and the loss
    follow torch's seed."""
    assert_deterministic_given_seed(lambda seed, **overrides: build(name, seed, **overrides))


def check_save_and_load(name: str) -> None:
    """The state dict carries the whole model, and the resolved config rebuilds itself from its dict
    (what a checkpoint and a run directory's config.json hold)."""
    assert_state_dict_round_trip(lambda seed, **overrides: build(name, seed, **overrides))
    cfg = build(name).config
    assert type(cfg).from_preset(None, **cfg.to_dict()) == cfg


def check_one_pass_or_refusal(name: str) -> None:
    """Where one pass is declared exact (one_pass_support() is None), prefix_outputs row t equals
    forward on the history cut after item t; elsewhere prefix_outputs refuses with an error that
    names the model and gives its reason."""
    m = build(name).eval()
    seq, lengths = histories(20)
    reason = m.one_pass_support()
    if reason is not None:
        with pytest.raises(ValueError) as err:
            m.prefix_outputs(seq, lengths)
        assert type(m).__name__ in str(err.value) and reason in str(err.value)
        return
    with torch.no_grad():
        rows = m.prefix_outputs(seq, lengths)
        assert rows.shape[:2] == seq.shape
        for t in range(int(lengths.max())):
            real = lengths > t
            prefix = m(seq[real, : t + 1], torch.full((int(real.sum()),), t + 1))
            torch.testing.assert_close(rows[real, t], prefix, msg=f"position {t}")


def check_learns_next_item(name: str) -> None:
    """60 Adam steps on a small cyclic log (the next item follows the last one around a cycle of
    N_ITEMS): held-out next-item cross-entropy falls by a quarter and hit@1 clears popularity."""
    (seq, lengths, targets), (test_seq, test_lengths, test_targets) = cycle_task(N_ITEMS)
    m = build(name)

    def held_out() -> tuple[float, float]:
        m.eval()
        with torch.no_grad():
            scores = m.scores(test_seq, test_lengths)
        m.train()
        hit = (scores.argmax(1) == test_targets).float().mean().item()
        return F.cross_entropy(scores, test_targets).item(), hit

    loss_before, _ = held_out()
    train_steps(m, seq, lengths, targets, 60, lr=1e-2, generator=torch.Generator().manual_seed(0))
    loss_after, hit = held_out()
    popular = torch.bincount(targets, minlength=N_ITEMS + 1).argmax()
    popularity_hit = (test_targets == popular).float().mean().item()
    assert loss_after < 0.75 * loss_before, (loss_before, loss_after)
    assert hit > popularity_hit + 0.15, (hit, popularity_hit)


CONTRACT = (
    check_forward_and_scores,
    check_padding_invariance,
    check_determinism,
    check_save_and_load,
    check_one_pass_or_refusal,
    check_learns_next_item,
)


@pytest.mark.parametrize("check", CONTRACT, ids=lambda check: check.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", list(MODELS))
def test_contract(name, check):
    check(name)


@pytest.mark.usefixtures("toy_registered")
def test_a_model_registered_in_one_place_is_held_to_the_whole_contract():
    # toy_model.MeanPool, written as CONTRIBUTING.md says, is known to the platform by its ModelSpec
    # alone; every check above then runs on it by name.
    assert TOY in MODELS
    for check in CONTRACT:
        check(TOY)


def test_gather_at_reads_one_or_k_positions_of_each_row():
    # The one way models read chosen positions (the last real item, a window around it).
    x = torch.arange(2 * 5 * 3).view(2, 5, 3)
    torch.testing.assert_close(gather_at(x, torch.tensor([4, 1])), torch.stack([x[0, 4], x[1, 1]]))
    torch.testing.assert_close(gather_at(x, torch.tensor([[0, 2], [3, 3]])), torch.stack([x[0, [0, 2]], x[1, [3, 3]]]))
    torch.testing.assert_close(gather_last(x, torch.tensor([2, 0])), torch.stack([x[0, 1], x[1, 0]]))


# -- what a kind of model declares ------------------------------------------------------------

POSITION_TABLES = [n for n in MODELS if issubclass(get_model_class(n), TransformerRecommender)]
TRANSFORMER_CONFIGS = [n for n in MODELS if issubclass(get_model_class(n).config_class, TransformerConfig)]


@pytest.mark.parametrize("name", POSITION_TABLES)
def test_models_with_a_position_table_refuse_wider_input(name):
    assert_rejects_wider_than_max_length(lambda **overrides: build(name, **overrides))


@pytest.mark.parametrize("name", TRANSFORMER_CONFIGS)
def test_transformer_baselines_take_table_5_presets(name):
    assert_attention_presets(name, get_model_class(name), get_model_class(name).config_class)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(MODELS))
def test_cuda_matches_cpu_and_trains_in_bf16(name):
    assert_cuda_matches_cpu_and_trains_in_bf16(build(name))
