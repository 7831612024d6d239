"""Search spaces: every sampled configuration is a valid config of its model; ablations; ranges."""

from __future__ import annotations

import pickle

import optuna
import pytest

from glintru.models import MODELS, get_model_class, resolve_config
from glintru.search.spaces import ABLATIONS, GATE_ACTIVATIONS, SPACES, ablation_flags, format_spaces, get_space
from glintru.train import TrainConfig, split_overrides

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sample(space, n: int, seed: int = 0, fixed=None, tpe: bool = True) -> list[dict]:
    sampler = (
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=5) if tpe else optuna.samplers.RandomSampler(seed=seed)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    out = []
    for i in range(n):
        trial = study.ask()
        extra = space.sampler(fixed)(trial) or {}
        out.append({**trial.params, **extra})
        study.tell(trial, float(i % 7) / 7)
    return out


def test_every_model_has_a_space():
    assert set(SPACES) == set(MODELS)
    for name, space in SPACES.items():
        assert space.model == name
        assert space.doc


@pytest.mark.parametrize("name", sorted(SPACES))
def test_sampled_configs_resolve(name):
    space = get_space(name)
    fields = get_model_class(space.model).config_class.field_names()
    for p in space.describe():
        assert p.name in fields | TrainConfig.field_names() | set(space.labels), p.name
    for config in _sample(space, 40):
        model_over, train_over = split_overrides(space.model, space.to_overrides(config))
        cfg = resolve_config(space.model, None, model_over)
        for key, value in model_over.items():
            assert getattr(cfg, key) == value
        TrainConfig(**train_over).validate()
        assert 1e-4 <= train_over["lr"] <= 1e-2


def test_glintru_space_covers_the_paper_axes():
    names = {p.name: p for p in get_space("glintru").describe()}
    assert {
        "kernel_size",
        "hidden_size",
        "num_layers",
        "dropout",
        "attention_dropout",
        "lr",
        "weight_decay",
        "gate_activation",
        "ablation",
    } == set(names)
    assert names["hidden_size"].choices == (32, 64, 128)
    assert (names["num_layers"].low, names["num_layers"].high) == (1, 2)
    assert 0.0 in names["weight_decay"].choices
    assert set(names["gate_activation"].choices) == {"silu", "relu", "sigmoid", "elu"}  # Table 6's rows
    assert set(names["ablation"].choices) == set(ABLATIONS)


def test_ablations_remove_one_component_and_never_both_experts():
    assert ablation_flags("full") == {"use_gru": True, "use_attention": True, "use_conv": True, "use_gated_mlp": True}
    for name in ABLATIONS:
        flags = ablation_flags(name)
        assert flags["use_gru"] or flags["use_attention"]
        assert sum(not v for v in flags.values()) == (0 if name == "full" else 1)
    assert ablation_flags("no_gru")["use_gru"] is False
    with pytest.raises(ValueError, match="unknown ablation 'no_everything'"):
        ablation_flags("no_everything")
    seen = {c["ablation"] for c in _sample(get_space("glintru"), 60, seed=3, tpe=False)}
    assert seen == set(ABLATIONS)


def test_to_overrides_expands_labels_and_drops_bookkeeping():
    space = get_space("glintru")
    out = space.to_overrides({"ablation": "no_attention", "lr": 0.01, "source_trial": "abc", "seed": 2})
    assert out == {
        "use_gru": True,
        "use_attention": False,
        "use_conv": True,
        "use_gated_mlp": True,
        "lr": 0.01,
        "seed": 2,
    }


def test_fixed_settings_leave_the_search():
    space = get_space("sasrec")
    configs = _sample(space, 12, fixed={"hidden_size": 32, "lr": 0.002})
    for config in configs:
        assert "hidden_size" not in config and "lr" not in config and "num_heads" in config
    study = optuna.create_study()
    trial = study.ask()
    space.sampler({"hidden_size": 32})(trial)
    assert "hidden_size" not in trial.params and "num_heads" in trial.params
    # OptunaSearch pickles its space with the searcher state
    restored = pickle.loads(pickle.dumps(space.sampler({"hidden_size": 32})))
    assert restored.args[1] == {"hidden_size": 32}


def test_tpe_is_deterministic_by_seed():
    space = get_space("glintru")
    assert _sample(space, 8, seed=5) == _sample(space, 8, seed=5)
    assert _sample(space, 8, seed=5) != _sample(space, 8, seed=6)


def test_format_spaces_lists_every_space_with_ranges():
    text = format_spaces()
    for name in SPACES:
        assert f"{name}  (model {name})" in text
    assert "lr float [0.0001, 0.01] log" in text
    assert "gate_activation in {" + ", ".join(GATE_ACTIVATIONS) + "}" in text
    assert "no_gru = use_gru=False" in text
    with pytest.raises(ValueError, match="unknown space 'nope'"):
        get_space("nope")
