"""Contract of every registered drift detector (parametrized over the registry), on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmforge.errors import ConfigError, DataError, NotFittedError
from lmforge.monitor import (
    DriftData,
    DriftDetector,
    DriftResult,
    detector_from_json,
    detector_names,
    get_detector,
    register_detector,
)
from lmforge.monitor._drift import decode_state, encode_state

CLASSES = ["negative", "neutral", "positive"]
WORDS = (
    "flight delayed late crew seat bag lost great thanks service gate plane airport hours "
    "refund agent food upgrade pilot landing boarding ticket staff rude friendly"
).split()


def synthetic(n: int, seed: int, shift: bool = False) -> DriftData:
    """English-like texts and Dirichlet outputs; ``shift`` changes words, lengths and outputs together."""
    rng = np.random.default_rng(seed)
    vocab = WORDS if not shift else [w[::-1] + "x" for w in WORDS]
    texts = [
        " ".join(rng.choice(vocab, rng.integers(4, 12) if not shift else rng.integers(14, 22)))
        for _ in range(n)
    ]
    alpha = [4.0, 1.0, 1.0] if not shift else [1.0, 1.0, 4.0]
    proba = rng.dirichlet(alpha, size=n) if not shift else rng.dirichlet(alpha, size=n) ** 0.3
    proba = proba / proba.sum(1, keepdims=True)
    labels = [CLASSES[int(i)] for i in proba.argmax(1)]
    return DriftData(texts, proba, CLASSES, labels)


@pytest.fixture(scope="module")
def reference() -> DriftData:
    return synthetic(160, seed=0)


@pytest.fixture(scope="module", params=detector_names())
def fitted(request: pytest.FixtureRequest, reference: DriftData, torch_one_thread: None) -> DriftDetector:
    return get_detector(request.param).fit(reference)


def test_registry_lists_every_builtin() -> None:
    assert set(detector_names()) >= {
        "prediction-psi",
        "prediction-chi2",
        "confidence-ks",
        "text-length-ks",
        "oov-rate",
        "embedding",
        "accuracy-estimate",
    }
    with pytest.raises(ConfigError, match="Unknown drift detector 'nope'. Available: accuracy-estimate"):
        get_detector("nope")
    with pytest.raises(ConfigError, match="Unknown option.*'alpah'.*Known: alpha"):
        get_detector("confidence-ks", alpah=0.05)


@pytest.mark.parametrize("name", detector_names())
def test_unfitted_detector_refuses_to_score(name: str) -> None:
    detector = get_detector(name)
    assert not detector.is_fitted
    with pytest.raises(NotFittedError, match=f"{name} drift detector is not fitted"):
        detector.score(synthetic(60, seed=1))
    with pytest.raises(NotFittedError):
        detector.to_json()


@pytest.mark.parametrize("name", detector_names())
def test_too_small_reference_is_a_data_error(name: str) -> None:
    detector = get_detector(name)
    with pytest.raises(DataError, match=f"needs at least {detector.min_samples}"):
        detector.fit(synthetic(detector.min_samples - 1, seed=2))


def test_fit_returns_self_and_stores_state_in_underscore_attributes(fitted: DriftDetector) -> None:
    assert fitted.is_fitted
    state = fitted.fitted_state()
    assert state and all(k.endswith("_") for k in state)
    assert set(fitted.get_params()) >= {"min_samples"}


def test_same_distribution_is_not_drift(fitted: DriftDetector) -> None:
    result = fitted.score(synthetic(100, seed=11))
    assert isinstance(result, DriftResult) and result.name == fitted.name
    assert result.drift is False, result.reason
    assert result.statistic is not None and result.reason


def test_shifted_batch_is_drift(fitted: DriftDetector) -> None:
    result = fitted.score(synthetic(100, seed=12, shift=True))
    assert result.drift is True, result.reason


def test_small_batch_gives_no_verdict_and_says_the_minimum(fitted: DriftDetector) -> None:
    n = fitted.min_samples - 1
    result = fitted.score(synthetic(n, seed=13, shift=True))
    assert result.drift is None and result.statistic is None
    assert f"has {n} examples" in result.reason and f"at least {fitted.min_samples}" in result.reason


def test_json_round_trip_gives_the_same_verdict(fitted: DriftDetector) -> None:
    batch = synthetic(60, seed=14, shift=True)
    text = json.dumps(fitted.to_json())  # plain JSON: no pickle anywhere
    loaded = detector_from_json(json.loads(text))
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
    a, b = fitted.score(batch), loaded.score(batch)
    assert (a.drift, a.threshold) == (b.drift, b.threshold)
    assert a.statistic == pytest.approx(b.statistic, rel=1e-3)


def test_output_detectors_need_outputs_and_matching_labels(reference: DriftData) -> None:
    det = get_detector("confidence-ks").fit(reference)
    no_outputs = DriftData(synthetic(50, seed=3).texts)
    assert det.score(no_outputs).drift is None and "outputs" in det.score(no_outputs).reason
    other = synthetic(50, seed=4)
    renamed = DriftData(other.texts, other.proba, ["a", "b", "c"])
    assert "differ" in det.score(renamed).reason


def test_state_json_refuses_unknown_dtypes_and_attributes() -> None:
    arr = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(decode_state(encode_state(arr)), arr)
    bad = encode_state(arr)
    bad["dtype"] = "object"
    with pytest.raises(DataError, match="dtype 'object'"):
        decode_state(bad)
    good = get_detector("text-length-ks").fit(synthetic(40, seed=5)).to_json()
    good["state"]["__class___"] = 1
    with pytest.raises(DataError, match="not a fitted attribute"):
        detector_from_json(good)


def test_a_new_detector_registers_and_fails_loudly_on_a_name_clash() -> None:
    @register_detector("test-always-drift")
    class Always(DriftDetector):
        def __init__(self, min_samples: int = 1) -> None:
            self.min_samples = min_samples

        def _fit(self, reference: DriftData) -> None:
            self.n_texts_ = len(reference)

        def _score(self, current: DriftData) -> DriftResult:
            return DriftResult(self.name, 1.0, None, 0.5, True, {}, "always")

    try:
        assert "test-always-drift" in detector_names()
        assert get_detector("test-always-drift").fit(DriftData(["a"])).score(DriftData(["b"])).drift is True
        with pytest.raises(ValueError, match="already registered"):
            register_detector("test-always-drift")(type("Other", (DriftDetector,), {}))
    finally:
        from lmforge.monitor._registry import DETECTORS

        DETECTORS.pop("test-always-drift", None)
