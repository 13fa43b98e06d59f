"""Turn YAML and ``--set key=value`` overrides into a validated :class:`Spec`, and back.

Every problem in a spec is collected before raising, so `lmforge validate` can list them all
at once; unknown keys get a "did you mean" suggestion.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from lmforge.config._schema import Spec
from lmforge.config._tune import UNSEARCHABLE, space_keys
from lmforge.errors import ConfigError

__all__ = ["apply_overrides", "load_spec", "range_kind", "spec_from_dict", "spec_to_dict", "spec_to_yaml",
           "spec_with_params"]

_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
"""A number in exponent notation that YAML 1.1 leaves a string (``2e-5``, ``1E3``): read as a float."""

_MISSING = object()


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else f" Known keys: {', '.join(sorted(choices))}."


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_describe(get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to floats)."""
    origin = get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.append(f"{where} must be a mapping of settings, got {value!r}.")
            return _MISSING
        return _build(tp, value, where, problems)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _coerce(value, arg, where, trial)
            if not trial:
                return out
        problems.append(f"{where} must be {_describe(tp)}, got {value!r}.")
        return _MISSING
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            problems.append(f"{where} must be {_describe(tp)}, got {value!r}.{hint}")
            return _MISSING
        return value
    if origin is dict:  # a mapping checked by its section (tune.space)
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            problems.append(f"{where} must be a mapping of names to values, got {value!r}.")
            return _MISSING
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{where} must be {_describe(tp)}, got {value!r}.")
            return _MISSING
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value):
            value = float(value)  # YAML 1.1 reads 2e-5 (no dot) as a string; every user means the number
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{where} must be a number, got {value!r}.")
            return _MISSING
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where} must be an integer, got {value!r}.")
            return _MISSING
        return value
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{where} must be true or false, got {value!r}.")
            return _MISSING
        return value
    if tp is str:
        if not isinstance(value, str) or not value:
            problems.append(f"{where} must be a non-empty string, got {value!r}.")
            return _MISSING
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {where}")  # a bug in the schema, not user input


def _build(cls: type, raw: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            problems.append(f"Unknown key '{where}'.{_suggest(str(key), names)}")
            continue
        out = _coerce(value, hints[key], where, problems)
        if out is not _MISSING:
            kwargs[key] = out
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return _MISSING


def spec_from_dict(raw: dict[str, Any] | None) -> Spec:
    """Build a :class:`Spec` from plain data, raising one :class:`ConfigError` with every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"A spec must be a mapping of sections (data, model, train, evaluate), got {raw!r}.")
    problems: list[str] = []
    spec = _build(Spec, raw, "", problems)
    if not problems and spec is not _MISSING and spec.tune.space:
        _check_space(raw, spec.tune.space, problems)
    if problems or spec is _MISSING:
        raise ConfigError(problems or ["The spec is invalid."])
    return typing.cast(Spec, spec)


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *sections, leaf = key.split(".")
    node = raw
    for part in sections:
        child = node.get(part)
        node = node.setdefault(part, {}) if not isinstance(child, dict) else child
    node[leaf] = value


def _numeric(tp: Any) -> type | None:
    """``int`` or ``float`` when ``tp`` is one (or one or None), else None: what a range may search."""
    args = [a for a in get_args(tp) if a is not type(None)] if get_origin(tp) in (Union, types.UnionType) else [tp]
    return args[0] if len(args) == 1 and args[0] in (int, float) else None


def _check_space(raw: dict[str, Any], space: dict[str, Any], problems: list[str]) -> None:
    """Every ``tune.space`` key names a searchable spec key, and every value it may take (each
    choice, a range's bounds) is one that key accepts in a spec that is valid as a whole."""
    keys = {k: tp for k, tp in space_keys(Spec).items() if k.split(".")[0] not in UNSEARCHABLE}
    base = copy.deepcopy(raw)
    base.pop("tune", None)
    for key, value in space.items():
        where = f"tune.space.{key}"
        top = key.split(".")[0]
        if top in UNSEARCHABLE:
            problems.append(f"{where}: {top} cannot be searched: {UNSEARCHABLE[top]}.")
            continue
        if key not in keys:
            close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else " Use a dotted spec key such as train.learning_rate."
            problems.append(f"Unknown key '{where}': the spec has no key '{key}'.{hint}")
            continue
        tp, candidates = keys[key], value
        if isinstance(value, dict):
            kind = _numeric(tp)
            if kind is None:
                problems.append(f"{where}: a range needs a numeric key, and {key} is {_describe(tp)}; "
                                "give a list of choices instead.")
                continue
            if kind is int and not all(isinstance(value.get(b, 1), int) for b in ("low", "high", "step")):
                problems.append(f"{where}: {key} is an integer, so low, high and step must be integers.")
                continue
            candidates = [value["low"], value["high"]]
        for candidate in candidates:
            wrong: list[str] = []
            _coerce(candidate, tp, f"{where} (choice {candidate!r})", wrong)
            if wrong:
                problems.extend(wrong)
                continue
            trial = copy.deepcopy(base)
            _set_dotted(trial, key, candidate)
            try:
                spec_from_dict(trial)
            except ConfigError as exc:
                problems.extend(f"{where}: with {key} = {candidate!r}: {p}" for p in exc.problems)


def range_kind(key: str) -> type:
    """``int`` or ``float``: how `lmforge tune` samples a range of the spec key ``key`` (checked by the spec)."""
    kind = _numeric(space_keys(Spec)[key])
    if kind is None:
        raise ConfigError(f"{key} is not a numeric spec key: a range cannot search it.")
    return kind


def spec_with_params(spec: Spec, params: dict[str, Any]) -> Spec:
    """``spec`` with each dotted key of ``params`` set to its value and no ``tune`` section: a trial's spec.

    Raises:
        ConfigError: the values make an invalid spec (a combination the space allowed key by key).
    """
    raw = spec_to_dict(spec)
    raw.pop("tune", None)
    for key, value in params.items():
        _set_dotted(raw, key, value)
    return spec_from_dict(raw)


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"Override '{item}' is not of the form key=value (e.g. --set train.epochs=2).")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML) to a raw spec mapping, in place."""
    for item in overrides:
        path, value = _parse_override(item)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"Override '{item}': '{part}' is a value, not a section.")
            node = child
        node[path[-1]] = value
    return raw


def load_spec(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Load a spec from YAML (or the embedded default when ``path`` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Spec file not found: {p}. Pass the path to a YAML spec, or no spec for the default.")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p} must hold a mapping of sections (data, model, train, evaluate).")
    return spec_from_dict(apply_overrides(raw, overrides))


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The spec as plain data (round-trips through :func:`spec_from_dict`)."""
    return dataclasses.asdict(spec)


def spec_to_yaml(spec: Spec) -> str:
    """The spec as YAML, every field spelled out."""
    return yaml.safe_dump(spec_to_dict(spec), sort_keys=False, allow_unicode=True)
