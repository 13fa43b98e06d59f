"""`lmforge.client.Client` against a real `lmforge serve --monitor`: the registry methods (versions,
register, canary, activate, rollback) and feedback, each with its exact result.

Version 2 is the tiny run with its classifier rows swapped (every label inverted, scores mirrored),
so which version answered is visible in the predictions themselves, not only in their ``version``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests._runs import copy_run
from tests._serve import Server, edit_classifier, serve_process

CONFIG = {"batching": {"threads": 1}, "registry_poll_s": 0, "drain_s": 0.5, "auth": {"rate_per_s": None},
          "monitor": {"flush_interval_s": 0.1}}
TEXTS = ["great flight, thank you", "lost my bag again, terrible", "the pilot was fantastic"]


@pytest.fixture(scope="module")
def served(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from lmforge.serve import ServeSettings, create_key, open_stores

    tmp = tmp_path_factory.mktemp("client-e2e")
    v1 = copy_run(trained_full, tmp / "sentiment").root  # the model is named after the run's folder
    v2 = edit_classifier(trained_full, tmp / "sentiment-flipped", "flipped").root
    state = tmp / "state"
    keys = {}
    with open_stores(ServeSettings(state_dir=str(state))) as stores:
        for name, role in (("admin", "admin"), ("alice", "predict"), ("bob", "predict")):
            keys[name] = create_key(stores, f"test-{name}", role, actor="tests")  # (token, ApiKey)
    tokens = {name: token for name, (token, _) in keys.items()}
    with serve_process(tmp, v1, "--allow-unsigned", "--state", str(state), "--monitor", config=CONFIG,
                       tokens=tokens) as server:
        yield {"server": server, "v1": v1, "v2": v2, "tokens": tokens, "admin_id": keys["admin"][1].key_id}


def client(server: Server, token: str) -> Any:
    from lmforge.client import Client

    return Client(server.url, token, timeout=60)


def version_record(run: Path, version: int, status: str, registered_by: str) -> dict[str, Any]:
    """What ``versions`` says of ``run``, but for the registration time."""
    return {"model": "sentiment", "version": version, "run_path": str(run), "variant": "fp32",
            "manifest_sha256": hashlib.sha256((run / "manifest.json").read_bytes()).hexdigest(), "signed": False,
            "key_id": None, "labels": ["negative", "positive"], "status": status, "registered_by": registered_by}


def without(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in keys}


def model_state(active: int, canary: int | None, percent: float) -> dict[str, Any]:
    """A model's state (``models``, ``activate``, ``canary``), but for its timestamps."""
    return {"name": "sentiment", "active_version": active, "canary_version": canary, "canary_percent": percent,
            "versions": 2, "loaded": {"stable": active, "canary": canary, "queued_texts": 0, "load_error": None}}


def answers(served: dict[str, Any], version: int) -> list[tuple[str, dict[str, float]]]:
    """(label, scores) the given version gives TEXTS, computed here from its run."""
    from lmforge.predict import load_predictor

    return [(p["label"], p["scores"]) for p in load_predictor(served[f"v{version}"]).predict(TEXTS)]


def assert_served_by(preds: list[dict[str, Any]], version: int, served: dict[str, Any]) -> None:
    assert [p["version"] for p in preds] == [version] * len(TEXTS)
    expected = answers(served, version)
    assert [p["label"] for p in preds] == [label for label, _ in expected]
    for pred, (_, scores) in zip(preds, expected, strict=True):
        assert pred["scores"] == pytest.approx(scores, abs=1e-5)


def test_feedback_from_the_key_that_predicted_and_an_admin_override(served: dict[str, Any]) -> None:
    from lmforge.client import ApiError

    server, tokens = served["server"], served["tokens"]
    with client(server, tokens["alice"]) as alice, client(server, tokens["bob"]) as bob, \
            client(server, tokens["admin"]) as admin:
        pred = alice.predict(["lost my bag again, terrible"])[0]
        pid, predicted = pred["prediction_id"], pred["label"]
        other = "positive" if predicted == "negative" else "negative"

        with pytest.raises(ApiError) as err:  # another key cannot label alice's prediction
            bob.feedback(pid, predicted)
        assert (err.value.status, err.value.code) == (403, "forbidden")

        first = alice.feedback(pid, predicted)
        assert first == {"prediction_id": pid, "label": predicted, "correct": True}
        assert alice.feedback(pid, predicted) == first  # a retry is answered as before

        with pytest.raises(ApiError) as err:  # the label is final for her
            alice.feedback(pid, other)
        assert (err.value.status, err.value.code, err.value.message) == (
            409, "feedback_conflict",
            f"Prediction '{pid}' already has the label '{predicted}'; a label is final unless an admin key "
            "overrides it.")

        assert admin.feedback(pid, other) == {"prediction_id": pid, "label": other, "correct": False}  # override
        with pytest.raises(ApiError) as err:  # and the admin's label is final too
            alice.feedback(pid, predicted)
        assert (err.value.status, err.value.code) == (409, "feedback_conflict")

        with pytest.raises(ApiError) as err:
            alice.feedback(pid, "meh")
        assert (err.value.status, err.value.code, err.value.message) == (
            422, "invalid_label", "Unknown label 'meh'. Valid labels: negative, positive.")
        with pytest.raises(ApiError) as err:
            alice.feedback("0" * 32, predicted)
        assert (err.value.status, err.value.code) == (404, "unknown_prediction")


def test_register_canary_activate_and_roll_back(served: dict[str, Any]) -> None:
    from lmforge.client import ApiError

    server, tokens, v1, v2 = served["server"], served["tokens"], served["v1"], served["v2"]
    by_admin = f"api-key:{served['admin_id']} (test-admin)"
    flip = {"negative": "positive", "positive": "negative"}
    assert [flip[label] for label, _ in answers(served, 1)] == [label for label, _ in answers(served, 2)]  # premise
    with client(server, tokens["admin"]) as admin, client(server, tokens["alice"]) as alice:
        before = admin.versions("sentiment")
        assert [without(v, "registered_at") for v in before] == [version_record(v1, 1, "active", "lmforge-serve")]
        assert_served_by(alice.predict(TEXTS), 1, served)
        stamps = [admin.models()[0]["updated_at"]]

        registered = admin.register("sentiment", str(v2))  # registered, not serving
        assert without(registered, "registered_at") == version_record(v2, 2, "registered", by_admin)
        assert [v["status"] for v in admin.versions("sentiment")] == ["active", "registered"]
        assert_served_by(alice.predict(TEXTS), 1, served)

        def step(result: dict[str, Any], active: int, canary: int | None, percent: float,
                 statuses: list[str]) -> None:
            assert without(result, "created_at", "updated_at") == model_state(active, canary, percent)
            assert result["created_at"] == before[0]["registered_at"]  # the model was made with version 1
            stamps.append(result["updated_at"])
            assert [v["status"] for v in admin.versions("sentiment")] == statuses

        step(admin.canary("sentiment", 2, 100), 1, 2, 100.0, ["active", "canary"])
        assert_served_by(alice.predict(TEXTS), 2, served)  # 100 %: every request to the canary
        step(admin.canary("sentiment", 2, 0), 1, None, 0.0, ["active", "registered"])  # 0 stops it
        assert_served_by(alice.predict(TEXTS), 1, served)

        step(admin.activate("sentiment", 2), 2, None, 0.0, ["retired", "active"])  # hot swap
        assert_served_by(alice.predict(TEXTS), 2, served)

        reverted = admin.rollback("sentiment")
        assert without(reverted, "model") == {"action": "reverted", "from_version": 2, "to_version": 1,
                                              "reason": "requested"}
        step(reverted["model"], 1, None, 0.0, ["active", "rolled_back"])
        assert_served_by(alice.predict(TEXTS), 1, served)

        step(admin.canary("sentiment", 2, 50), 1, 2, 50.0, ["active", "canary"])  # a rolled-back version again
        aborted = admin.rollback("sentiment")  # with a canary running, rollback stops the canary
        assert without(aborted, "model") == {"action": "canary_aborted", "from_version": 2, "to_version": 1,
                                             "reason": "requested"}
        step(aborted["model"], 1, None, 0.0, ["active", "rolled_back"])
        assert_served_by(alice.predict(TEXTS), 1, served)

        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # every action moved updated_at
        assert [without(v, "registered_at", "status") for v in admin.versions("sentiment")] == [
            without(version_record(v1, 1, "", "lmforge-serve"), "status"),
            without(version_record(v2, 2, "", by_admin), "status"),
        ]

        with pytest.raises(ApiError) as err:
            admin.rollback("sentiment")  # version 1 has no earlier version
        assert (err.value.status, err.value.code, err.value.message) == (
            409, "conflict", "Model 'sentiment' has no earlier version to roll back to (active: 1).")
        with pytest.raises(ApiError) as err:
            admin.activate("sentiment", 9)
        assert (err.value.status, err.value.code, err.value.message) == (
            404, "not_found", "Model 'sentiment' has no version 9. Versions: 1, 2.")
        with pytest.raises(ApiError) as err:  # the registry is an admin's
            alice.versions("sentiment")
        assert (err.value.status, err.value.code) == (403, "forbidden")
