"""A server's monitor verifies its drift reference run before fitting on it (``verify_reference``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests._runs import copy_run

from lmforge.guard import IntegrityError
from lmforge.monitor import Monitor, MonitorSettings

pytest.importorskip("sqlalchemy")


def _settings(tmp_path: Path, run: Path, **trust: object) -> MonitorSettings:
    return MonitorSettings(url=f"sqlite:///{tmp_path / 'monitor.db'}", reference_run=str(run),
                           reference_state=str(tmp_path / "reference.json"), detectors=["text-length-ks"],
                           flush_interval_s=0.05, **trust)  # type: ignore[arg-type]


def test_a_tampered_reference_is_refused_at_start(trained_full: Path, tmp_path: Path) -> None:
    run = copy_run(trained_full, tmp_path / "run")
    with Monitor(_settings(tmp_path, run.root, verify_reference=True, reference_allow_unsigned=True),
                 ["negative", "positive"]) as monitor:
        assert "text-length-ks" in monitor.reference.names  # a clean run: fitted (and cached)
    run.split_path("train").write_text('{"text": "planted", "label": "positive"}\n' * 40, encoding="utf-8")
    for trust in ({"verify_reference": True, "reference_allow_unsigned": True}, {"verify_reference": True}):
        monitor = Monitor(_settings(tmp_path, run.root, **trust), ["negative", "positive"])
        with pytest.raises(IntegrityError, match="tampered file: data/train.jsonl|the run is unsigned"):
            monitor.start()  # the cached reference is not even looked at
        monitor.close()


def test_an_unsigned_reference_needs_permission_when_verified(trained_full: Path, tmp_path: Path) -> None:
    run = copy_run(trained_full, tmp_path / "run")
    monitor = Monitor(_settings(tmp_path, run.root, verify_reference=True), ["negative", "positive"])
    with pytest.raises(IntegrityError, match="the run is unsigned"):
        monitor.start()
    monitor.close()
    with Monitor(_settings(tmp_path, run.root), ["negative", "positive"]) as monitor:  # a library monitor
        assert monitor.reference is not None
