"""The drift-detector contract: data in, :class:`DriftResult` out, fitted state as JSON.

Detectors follow the scikit-learn contract: ``__init__`` only stores parameters,
``fit(reference) -> self`` learns the reference (state in attributes ending in ``_``),
``score(current) -> DriftResult`` compares a batch with it, and scoring an unfitted
detector raises :class:`~lmforge.errors.NotFittedError`. The fitted state round-trips
through JSON (arrays as base64 of their raw bytes, a closed list of dtypes): no pickle.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from lmforge.errors import DataError, NotFittedError

__all__ = ["DriftData", "DriftDetector", "DriftResult", "decode_state", "encode_state"]

_DTYPES = {"float16", "float32", "float64", "int32", "int64"}


@dataclass(frozen=True)
class DriftData:
    """A batch of texts and, when known, the model's outputs and the true labels.

    ``proba`` columns follow ``classes`` (the model's labels). Text detectors use
    ``texts`` only; output detectors need ``proba``.
    """

    texts: list[str]
    proba: np.ndarray | None = None
    """Model probabilities, shape (N, C), columns in ``classes`` order."""
    classes: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    """True labels (reference data, or feedback), aligned with ``texts``."""

    def __post_init__(self) -> None:
        n = len(self.texts)
        if not all(isinstance(t, str) for t in self.texts):
            raise DataError("DriftData texts must all be strings.")
        if self.proba is not None:
            proba = np.asarray(self.proba, dtype=np.float64)
            if proba.ndim != 2 or proba.shape[0] != n or proba.shape[1] != len(self.classes):
                raise DataError(
                    f"DriftData proba must have shape ({n}, {len(self.classes)}) (texts x classes), "
                    f"got {proba.shape}."
                )
            object.__setattr__(self, "proba", proba)
        if self.labels is not None and len(self.labels) != n:
            raise DataError(f"DriftData has {n} texts but {len(self.labels)} labels.")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted label, shape (N,)."""
        return self._proba().max(axis=1)

    @property
    def predicted(self) -> np.ndarray:
        """Index of the predicted label in ``classes``, shape (N,)."""
        return self._proba().argmax(axis=1)

    def _proba(self) -> np.ndarray:
        if self.proba is None:
            raise DataError("This batch has no model outputs (proba); output detectors need them.")
        return self.proba

    def subset(self, index: Sequence[int] | np.ndarray) -> DriftData:
        """The rows at ``index``."""
        idx = np.asarray(index, dtype=np.int64)
        return DriftData(
            texts=[self.texts[i] for i in idx],
            proba=None if self.proba is None else self.proba[idx],
            classes=list(self.classes),
            labels=None if self.labels is None else [self.labels[i] for i in idx],
        )


@dataclass(frozen=True)
class DriftResult:
    """The verdict of one detector on one batch.

    ``drift`` is None when there is no verdict (batch or reference too small, missing
    inputs); ``reason`` then says why, and otherwise explains the verdict in one sentence.
    """

    name: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drift: bool | None
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "drift": self.drift,
            "detail": self.detail,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftResult:
        fields: dict[str, Any] = {k: data.get(k) for k in ("name", "statistic", "p_value", "threshold", "drift")}
        return cls(
            **fields,
            detail=dict(data.get("detail") or {}),
            reason=str(data.get("reason") or ""),
        )


def encode_state(value: Any) -> Any:
    """JSON-able form of fitted state (NumPy arrays and scalars included)."""
    if isinstance(value, np.ndarray):
        if value.dtype.name not in _DTYPES:
            value = value.astype(np.float64)
        arr = np.ascontiguousarray(value)
        return {
            "__ndarray__": base64.b64encode(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).decode(
                "ascii"
            ),
            "dtype": arr.dtype.name,
            "shape": list(arr.shape),
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): encode_state(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_state(v) for v in value]
    return value


def decode_state(value: Any) -> Any:
    """Inverse of :func:`encode_state`; only plain numeric dtypes are accepted."""
    if isinstance(value, dict):
        if "__ndarray__" in value:
            dtype = value.get("dtype")
            if dtype not in _DTYPES:
                raise DataError(
                    f"Drift state holds an array of dtype {dtype!r}; allowed: {', '.join(sorted(_DTYPES))}."
                )
            raw = base64.b64decode(value["__ndarray__"])
            return (
                np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
                .astype(dtype)
                .reshape(value["shape"])
            )
        return {k: decode_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_state(v) for v in value]
    return value


class DriftDetector:
    """Base of the drift detectors (see the module docstring for the contract).

    Subclasses set ``name`` (through :func:`~lmforge.monitor.register_detector`), ``needs``
    and ``description``, store their parameters in ``__init__`` and implement ``_fit`` and
    ``_score``. ``min_samples`` is the smallest reference and current batch they test.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[Literal["texts", "outputs"]] = "texts"
    """``texts``: fitted on the run's train+val texts; ``outputs``: on model outputs of held-out (val) data."""
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    """``(module, extra)`` pairs the detector imports when it runs."""
    description: ClassVar[str] = ""
    classes_: list[str]
    """Set by ``fit`` on detectors that need outputs: the label columns of the reference."""
    min_samples: int = 30

    # -- parameters ------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` parameters and their values (scikit-learn's ``get_params``)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- fit / score -----------------------------------------------------------------------
    def fit(self, reference: DriftData) -> DriftDetector:
        """Learn the reference distribution; returns ``self``.

        Raises:
            DataError: the reference is smaller than ``min_samples`` or lacks model outputs.
        """
        if len(reference) < self.min_samples:
            raise DataError(
                f"The reference has {len(reference)} examples; the {self.name} detector needs at "
                f"least {self.min_samples} (min_samples)."
            )
        if self.needs == "outputs" and reference.proba is None:
            raise DataError(f"The {self.name} detector needs the model's outputs on the reference.")
        self._fit(reference)
        self.n_reference_ = len(reference)
        return self

    def score(self, current: DriftData) -> DriftResult:
        """Compare ``current`` with the fitted reference.

        A batch smaller than ``min_samples`` gets a result with ``drift=None`` and a reason
        that states the minimum, never a verdict drawn from noise.

        Raises:
            NotFittedError: :meth:`fit` was not called.
        """
        if not self.is_fitted:
            raise NotFittedError(f"The {self.name} drift detector is not fitted; call fit(reference) first.")
        if len(current) < self.min_samples:
            return self.no_verdict(
                f"The current batch has {len(current)} examples; {self.name} needs at least "
                f"{self.min_samples} to test.",
                n_current=len(current),
            )
        if self.needs == "outputs":
            if current.proba is None:
                return self.no_verdict(
                    f"{self.name} needs the model's outputs (scores) for the current batch."
                )
            if list(current.classes) != list(self.classes_):
                return self.no_verdict(
                    f"{self.name}: the current labels {current.classes} differ from the "
                    f"reference's {self.classes_}."
                )
        return self._score(current)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "n_reference_")

    def no_verdict(self, reason: str, **detail: Any) -> DriftResult:
        return DriftResult(self.name, None, None, self._threshold(), None, detail, reason)

    def _threshold(self) -> float:
        return float(getattr(self, "alpha", getattr(self, "threshold", 0.0)))

    def _fit(self, reference: DriftData) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, current: DriftData) -> DriftResult:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- JSON ------------------------------------------------------------------------------
    def fitted_state(self) -> dict[str, Any]:
        """The fitted attributes (names ending in ``_``)."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def to_json(self) -> dict[str, Any]:
        """``{"name", "params", "state"}``, JSON-serializable; :func:`detector_from_json` reads it."""
        if not self.is_fitted:
            raise NotFittedError(f"The {self.name} drift detector is not fitted; nothing to save.")
        return {
            "name": self.name,
            "params": encode_state(self.get_params()),
            "state": encode_state(self.fitted_state()),
        }
