"""Drift detectors by registry name; each registers itself in its own module.

The table and the decorator live in ``_register``; this module looks detectors up, checks
their options and rebuilds fitted ones from JSON, after importing every shipped detector.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from typing import Any

import lmforge.monitor._plugins  # noqa: F401  (registers the detectors shipped with lmforge)
from lmforge.errors import ConfigError, DataError
from lmforge.monitor._drift import DriftDetector, decode_state
from lmforge.monitor._register import DETECTORS, register_detector

__all__ = [
    "DETECTORS",
    "available_detectors",
    "detector_from_json",
    "detector_names",
    "detector_problems",
    "get_detector",
    "register_detector",
]

_STATE_KEY = re.compile(r"^[a-z][a-z0-9_]*_$")  # fitted attributes only: never a dunder or a method


def detector_names() -> list[str]:
    """Every registered detector name, sorted."""
    return sorted(DETECTORS)


def available_detectors() -> list[str]:
    """Registered detectors whose optional dependencies are installed (the default set)."""
    return [
        n
        for n in sorted(DETECTORS)
        if all(importlib.util.find_spec(module) is not None for module, _ in DETECTORS[n].requires)
    ]


def _unknown(name: str) -> str:
    return f"Unknown drift detector {name!r}. Available: {', '.join(sorted(DETECTORS))}."


def get_detector(name: str, **params: Any) -> DriftDetector:
    """A new, unfitted detector.

    Raises:
        ConfigError: unknown name (the registered ones are listed) or unknown parameters.
    """
    cls = DETECTORS.get(name)
    if cls is None:
        raise ConfigError(_unknown(name))
    problems = _param_problems(cls, params)
    if problems:
        raise ConfigError(problems)
    return cls(**params)


def _param_problems(cls: type[DriftDetector], params: Any) -> list[str]:
    if not isinstance(params, dict):
        return [f"Options of drift detector {cls.name!r} must be a mapping, got {type(params).__name__}."]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        return [
            f"Unknown option(s) {', '.join(map(repr, unknown))} of drift detector {cls.name!r}. "
            f"Known: {', '.join(allowed)}."
        ]
    return []


def detector_problems(names: list[str] | None, options: dict[str, Any]) -> list[str]:
    """Problems with a detector list and per-detector options (for settings validation)."""
    problems: list[str] = []
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return [f"monitor detectors must be a list of names, got {names!r}."]
        problems += [_unknown(n) for n in names if n not in DETECTORS]
    if not isinstance(options, dict):
        return [*problems, f"monitor detector_options must be a mapping, got {type(options).__name__}."]
    for name, params in options.items():
        if name not in DETECTORS:
            problems.append(_unknown(name))
        else:
            problems += _param_problems(DETECTORS[name], params)
    return problems


def detector_from_json(data: dict[str, Any]) -> DriftDetector:
    """A fitted detector from :meth:`DriftDetector.to_json` output.

    Raises:
        DataError: the JSON does not describe a fitted detector of a registered name.
    """
    if not isinstance(data, dict) or not isinstance(data.get("state"), dict):
        raise DataError("Drift detector JSON must be an object with name, params and state.")
    try:
        detector = get_detector(str(data.get("name")), **decode_state(data.get("params") or {}))
    except ConfigError as exc:
        raise DataError(f"Cannot load drift detector state: {exc}") from None
    for key, value in decode_state(data["state"]).items():
        if not _STATE_KEY.match(key):
            raise DataError(f"Drift detector state key {key!r} is not a fitted attribute.")
        setattr(detector, key, value)
    if not detector.is_fitted:
        raise DataError(f"Drift detector state of {detector.name!r} lacks n_reference_; it is not fitted.")
    return detector
