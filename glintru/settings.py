"""Settings given as text (`--set key=value`, `--grid key=a,b`): one parser for every command line,
and a check of each value against the type of the dataclass field it sets, so that a bad value is
refused before any work starts with a message naming the key, the value and the expected type."""

from __future__ import annotations

import ast
import dataclasses
import numbers
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Union


def parse_value(text: str) -> Any:
    """A value as typed: ints, floats, booleans (true/false), None and tuples as Python literals,
    anything else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text


# A new pair starts where whitespace is followed by `name=`; other whitespace belongs to the value,
# so that `ks=(5, 10)` stays one pair.
_PAIR_START = re.compile(r"\s+(?=[A-Za-z_][\w.]*=)")


def split_pairs(items: Iterable[str], flag: str = "--set") -> list[tuple[str, str]]:
    """(key, raw value) from `key=value` words; a word may also hold several pairs separated by
    whitespace, so `--set a=1 --set b=2` and `--set a=1 b=2` mean the same."""
    pairs = []
    for item in items:
        for word in _PAIR_START.split(item.strip()):
            if not word:
                continue
            key, sep, value = word.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{flag} expects key=value, got {word!r}")
            pairs.append((key.strip(), value))
    return pairs


def parse_settings(items: Sequence[str], flag: str = "--set") -> dict[str, Any]:
    """`key=value` words -> {key: value}; a key given twice is an error, never silently dropped."""
    out: dict[str, Any] = {}
    for key, value in split_pairs(items, flag):
        if key in out:
            raise ValueError(f"{flag} sets {key!r} twice ({out[key]!r} and {parse_value(value)!r}); keep one")
        out[key] = parse_value(value)
    return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> tuple[bool, Any]:
    """(ok, value coerced to the field's type) for the simple types that configs use."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, coerced = _matches(value, arg)
            if ok:
                return True, coerced
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is Any:
        return True, value
    if tp is bool:
        return isinstance(value, bool), value
    # numbers.Integral/Real also admit numpy scalars (a search space may sample them); bool is an
    # Integral too, but `--set dropout=true` is a mistake, not 1.0
    if tp is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return ok, int(value) if ok else value
    if tp is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if origin is tuple or tp is tuple:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = (value,)  # `--set ks=10` means the one-element tuple
        if not isinstance(value, (tuple, list)):
            return False, value
        args = typing.get_args(tp)
        if args and args[-1] is Ellipsis:
            items = [_matches(v, args[0]) for v in value]
            return all(ok for ok, _ in items), tuple(v for _, v in items)
        return True, tuple(value)
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    return True, value  # a type this check does not know: the config's own validation decides


def check_fields(cls: type, values: dict[str, Any], what: str | None = None) -> dict[str, Any]:
    """Values for fields of dataclass `cls`, each checked (and ints widened to float) against the
    field's annotation. Unknown keys are left for the caller to report."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    out = dict(values)
    for key, value in values.items():
        if key not in names:
            continue
        ok, coerced = _matches(value, hints[key])
        if not ok:
            owner = what or cls.__name__
            raise ValueError(
                f"{owner} setting {key}={value!r} ({type(value).__name__}) is invalid: "
                f"expected {_type_name(hints[key])}"
            )
        out[key] = coerced
    return out
