"""Alert rules: one notification per incident, cooldown, resolve; webhooks to a real local receiver."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lmforge.monitor import AlertRule, Monitor, MonitorSettings
from lmforge.monitor._alerts import AlertEngine, WebhookNotifier

LABELS = ["negative", "positive"]


class Receiver:
    """A webhook receiver on 127.0.0.1 that records JSON bodies; the first ``fail_first`` posts get a 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                else:
                    receiver.events.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_one_notification_per_incident_with_cooldown() -> None:
    clock, events = Clock(), []
    rule = AlertRule(metric="accuracy", op="<", threshold=0.8, cooldown_s=60)
    engine = AlertEngine([rule], lambda e, r: events.append(e), clock)
    statuses = []
    for t, value in [
        (0, 0.9),
        (1, 0.7),
        (2, 0.6),
        (3, 0.5),
        (4, None),
        (5, 0.85),  # incident 1: fire, resolve
        (20, 0.7),
        (21, 0.9),  # incident 2 within the cooldown: suppressed, no resolve
        (100, 0.7),
        (101, 0.75),
        (102, 0.9),
    ]:  # incident 3 after the cooldown: fire, resolve
        clock.t = 1000.0 + t
        event = engine.update(0, "m", "1", value)
        statuses.append(event["status"] if event else None)
    assert statuses == [
        None,
        "firing",
        None,
        None,
        None,
        "resolved",
        "suppressed",
        None,
        "firing",
        None,
        "resolved",
    ]
    assert [e["status"] for e in events] == ["firing", "resolved", "suppressed", "firing", "resolved"]
    assert events[0]["value"] == 0.7 and events[0]["model"] == "m" and events[0]["actions"] == ["log"]
    # Versions are separate incidents.
    assert engine.update(0, "m", "2", 0.1)["status"] == "firing"
    assert [a["version"] for a in engine.active()] == ["2"]


def firing(rule: str, value: float) -> dict[str, object]:
    """An alert event as the monitor hands it to the webhook notifier."""
    return {
        "status": "firing",
        "rule": rule,
        "actions": ["webhook"],
        "value": value,
        "op": "<",
        "threshold": 0.0,
        "model": "m",
        "version": "1",
    }


def test_webhook_is_retried_once(receiver: Receiver) -> None:
    receiver.fail_first = 1
    notifier = WebhookNotifier(retry_delay_s=0.05)
    notifier.start()
    rule = AlertRule(metric="accuracy", actions=["webhook"], webhook_url=receiver.url, timeout_s=2)
    notifier.submit(firing(rule.name, value=0.1), rule)
    assert notifier.flush(10)
    notifier.close()
    assert receiver.attempts == 2 and len(receiver.events) == 1 and notifier.delivered == 1


def test_unreachable_webhook_is_counted_not_raised() -> None:
    notifier = WebhookNotifier(retry_delay_s=0.01)
    notifier.start()
    rule = AlertRule(
        metric="accuracy", actions=["webhook"], webhook_url="http://127.0.0.1:9/none", timeout_s=1
    )
    notifier.submit(firing("r", value=0.0), rule)
    assert notifier.flush(10)
    notifier.close()
    assert notifier.failed == 1 and notifier.delivered == 0 and notifier.last_error


def test_shuffled_labels_fire_one_webhook_then_resolve(
    tmp_path: Path, make_records, receiver: Receiver
) -> None:
    rule = {
        "metric": "accuracy",
        "op": "<",
        "threshold": 0.8,
        "window": 50,
        "min_samples": 30,
        "cooldown_s": 3600,
        "actions": ["log", "webhook"],
        "webhook_url": receiver.url,
    }
    settings = MonitorSettings(url=f"sqlite:///{tmp_path / 'm.db'}", alerts=[rule], flush_interval_s=0.05)
    rng = random.Random(0)
    with Monitor(settings, LABELS) as monitor:
        bad = make_records(60, t0=time.time() - 1000)
        monitor.record_many(bad)
        monitor.flush()
        for rec in bad:  # feedback with shuffled labels: accuracy near 0.5
            monitor.add_feedback(rec.id, rng.choice(LABELS))
        monitor.flush()
        firing_accuracy = monitor.live_metrics("m", "1", 50)["accuracy"]
        for rec in make_records(20, t0=time.time() - 500):  # still bad: same incident, no new webhook
            monitor.record_many([rec])
            monitor.add_feedback(rec.id, "negative" if rec.label == "positive" else "positive")
        monitor.flush()
        assert len(receiver.events) == 1
        good = make_records(60, t0=time.time())
        monitor.record_many(good)
        monitor.flush()
        for rec in good:  # the model is right again on the newest 50
            monitor.add_feedback(rec.id, rec.label)
        monitor.flush()
        summary = monitor.summary()
    assert firing_accuracy < 0.8
    assert [e["status"] for e in receiver.events] == ["firing", "resolved"]
    fired = receiver.events[0]
    assert fired["rule"] == "accuracy < 0.8" and fired["model"] == "m" and fired["version"] == "1"
    # Alerts are evaluated while feedback arrives, so the values are those of that moment.
    assert fired["value"] < 0.8 and receiver.events[1]["value"] >= 0.8
    assert [a["status"] for a in summary["alerts"]["recent"]] == ["resolved", "firing"]
    assert summary["alerts"]["active"] == [] and summary["alerts"]["webhooks"]["delivered"] == 2


def test_feedback_alone_fires_the_alert_without_a_flush_or_more_predictions(
    tmp_path: Path, make_records
) -> None:
    # The predictions are stored (and their acknowledgements evaluated) before any feedback comes: the
    # rules must still be evaluated for the feedback, on the writer's thread, with nothing else recorded.
    rule = {"metric": "accuracy", "op": "<", "threshold": 0.9, "window": 50, "min_samples": 4, "cooldown_s": 0}
    settings = MonitorSettings(url=f"sqlite:///{tmp_path / 'm.db'}", alerts=[rule], flush_interval_s=0.05)
    with Monitor(settings, LABELS) as monitor:
        records = make_records(8)
        monitor.record_many(records)
        monitor.flush()
        assert monitor.active_alerts() == []
        for rec in records[:4]:  # all four wrong: accuracy 0
            monitor.add_feedback(rec.id, "negative" if rec.label == "positive" else "positive")
        deadline = time.monotonic() + 20
        while not monitor.active_alerts() and time.monotonic() < deadline:
            time.sleep(0.05)
        active = monitor.active_alerts()
    assert [(a["rule"], a["metric"], a["model"], a["version"]) for a in active] == [
        ("accuracy < 0.9", "accuracy", "m", "1")
    ]
