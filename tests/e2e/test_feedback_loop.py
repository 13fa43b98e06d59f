"""The feedback loop of docs/feedback-loop.md, for real on loopback with a tiny model: serve with
monitoring -> predictions -> an accuracy alert from feedback -> sample -> label import -> retrain
-> the running server takes the canary -> promote."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from tests._runs import NEG, POS, copy_run
from tests._serve import create_keys, serve_process

from lmforge.cli.__main__ import main
from lmforge.client import Client

TINY_SPEC = {"model": {"max_length": 32}, "train": {"max_steps": 4, "batch_size": 8, "learning_rate": 2e-4,
                                                     "warmup_ratio": 0.0, "precision": "fp32"}}


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_serve_label_retrain_canary_promote(trained_full: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from lmforge.config import spec_from_dict, spec_to_yaml

    parent = copy_run(trained_full, tmp_path / "airline")
    parent.spec_path.write_text(spec_to_yaml(spec_from_dict(TINY_SPEC)), encoding="utf-8")
    parent.update_manifest()
    state = tmp_path / "state"
    tokens = create_keys(state)
    config = {"batching": {"threads": 1}, "registry_poll_s": 0.5, "drain_s": 0.5,
              "monitor": {"flush_interval_s": 0.2, "detectors": ["prediction-psi"], "alerts": [
                  {"metric": "accuracy", "op": "<", "threshold": 1.01, "window": 50, "min_samples": 4,
                   "cooldown_s": 0, "name": "accuracy-low"}]}}
    truth = {f"{t}, again": "positive" for t in POS} | {f"{t}, again": "negative" for t in NEG}
    with serve_process(tmp_path, parent.root, "--allow-unsigned", "--state", str(state), "--monitor",
                       config=config, tokens=tokens) as server, \
            Client(server.url, tokens["predict"]) as client:
        predictions = client.predict(list(truth))
        assert {p["version"] for p in predictions} == {1}
        # The application reports the truth for four of them. The rule's threshold is above any accuracy, so it
        # fires once 4 labels are in: what is tested is that served feedback drives the alert, end to end.
        for text, p in list(zip(truth, predictions, strict=True))[:4]:
            client.feedback(p["prediction_id"], truth[text])
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        _wait(lambda: "accuracy-low" in server.output(), 30, "the accuracy alert in the server log")

        # Pick what to label (the served texts without feedback), label them, import.
        to_label = tmp_path / "to_label.jsonl"
        assert main(["monitor", "sample", "--state", str(state), "--n", "20", "--strategy", "margin",
                     "--out", str(to_label)]) == 0
        rows = [json.loads(line) for line in to_label.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == len(truth) - 4 and {r["text"] for r in rows} <= set(truth)
        to_label.write_text("".join(json.dumps({**r, "label": truth[r["text"]]}) + "\n" for r in rows),
                            encoding="utf-8")
        assert main(["label", "import", str(to_label), "--state", str(state)]) == 0

        # Retrain on all 16 labels and register the result as a 50 % canary of the running model.
        new = tmp_path / "airline-r1"
        assert main(["retrain", str(parent.root), "--state", str(state), "--out", str(new), "--allow-unsigned",
                     "--no-progress", "--set", "retrain.min_feedback=5", "--register", "--canary-percent", "50"]) == 0
        report = json.loads((new / "eval" / "retrain.json").read_text(encoding="utf-8"))
        assert report["feedback"]["feedback"] == len(truth) and report["promotable"] is True
        capsys.readouterr()

        # The running server picks the canary up from the registry and sends it traffic.
        def versions_served() -> set[int]:
            return {p["version"] for p in client.predict(["great crew, thanks"] * 8)}

        _wait(lambda: 2 in versions_served(), 60, "version 2 taking canary traffic")
        ready = httpx.get(f"{server.url}/readyz", headers=admin, timeout=10).json()
        assert ready["models"]["airline"] == {"stable": 1, "canary": 2}

        # Promote: all traffic to version 2.
        assert main(["registry", "activate", "airline", "2", "--state", str(state)]) == 0
        _wait(lambda: versions_served() == {2}, 60, "version 2 serving everything")
        assert server.stop() == 0
