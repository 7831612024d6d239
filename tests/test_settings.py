"""Typed settings: parsing `key=value` words and checking values against config field types."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from glintru.settings import check_fields, parse_settings, parse_value


@dataclass
class Example:
    kernel_size: int = 3
    dropout: float = 0.2
    use_conv: bool = True
    gate_activation: str = "silu"
    grad_clip: float | None = None
    ks: tuple[int, ...] = (5, 10)


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("0.5", 0.5),
        ("1e-3", 1e-3),
        ("true", True),
        ("False", False),
        ("none", None),
        ("(5, 10)", (5, 10)),
        ("relu", "relu"),
        ("abc", "abc"),
        (" 7 ", 7),
    ],
)
def test_parse_value(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_both_set_forms_mean_the_same_and_a_repeated_key_is_refused():
    assert parse_settings(["a=1", "b=x"]) == parse_settings(["a=1 b=x"]) == {"a": 1, "b": "x"}
    with pytest.raises(ValueError, match="sets 'a' twice"):
        parse_settings(["a=1", "a=2"])
    with pytest.raises(ValueError, match="--set expects key=value, got 'a'"):
        parse_settings(["a"])


def test_good_values_pass_and_ints_widen_to_float():
    out = check_fields(Example, {"kernel_size": 5, "dropout": 0, "grad_clip": 1, "ks": 10, "other": "x"})
    assert out == {"kernel_size": 5, "dropout": 0.0, "grad_clip": 1.0, "ks": (10,), "other": "x"}
    assert isinstance(out["dropout"], float)
    assert check_fields(Example, {"grad_clip": None, "ks": (5, 10, 20)})["ks"] == (5, 10, 20)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("kernel_size", "abc", "expected int"),
        ("kernel_size", 2.5, "expected int"),
        ("kernel_size", True, "expected int"),
        ("dropout", "high", "expected float"),
        ("use_conv", 1, "expected bool"),
        ("gate_activation", 3, "expected str"),
        ("grad_clip", "x", "expected float | None"),
        ("ks", ("a",), r"expected tuple\[int, \.\.\.\]"),
    ],
)
def test_bad_values_name_key_value_and_type(key, value, expected):
    with pytest.raises(ValueError, match=re.escape(f"Example setting {key}={value!r}") + ".*" + expected):
        check_fields(Example, {key: value})


def test_a_value_with_spaces_stays_one_pair():
    assert parse_settings(["ks=(5, 10) lr=0.1"]) == {"ks": (5, 10), "lr": 0.1}
    assert parse_settings(["ks=(5, 10)", "lr=0.1"]) == {"ks": (5, 10), "lr": 0.1}


def test_numpy_scalars_count_as_numbers():
    np = pytest.importorskip("numpy")
    out = check_fields(Example, {"kernel_size": np.int64(5), "dropout": np.float32(0.5), "ks": np.int64(10)})
    assert out == {"kernel_size": 5, "dropout": 0.5, "ks": (10,)}
    assert type(out["kernel_size"]) is int and type(out["dropout"]) is float
    with pytest.raises(ValueError, match="expected int"):
        check_fields(Example, {"kernel_size": np.float64(2.5)})
