"""Disk use stays bounded under sustained traffic, and a store that cannot write never stops serving."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests._wait import wait_until

from lmforge.errors import ConfigError
from lmforge.monitor import Monitor, MonitorSettings, PredictionRecord

LABELS = ["negative", "positive"]


def test_max_rows_keeps_the_newest_predictions(store_url: str, make_records: Any) -> None:
    records = make_records(200)
    settings = MonitorSettings(url=store_url, max_rows=50, prune_interval_s=3600, retention_days=None,
                               batch_size=20, flush_interval_s=0.05)
    with Monitor(settings, LABELS) as monitor:
        for i in range(0, 200, 20):
            monitor.record_many(records[i : i + 20])
            monitor.flush()
        # every batch of 20 is over a tenth of max_rows, so the writer prunes after each one
        assert wait_until(lambda: monitor.store.count_predictions() == 50), monitor.store.count_predictions()
        kept = {r.id for r in records if monitor.store.get_prediction(r.id) is not None}
        assert kept == {r.id for r in records[-50:]}
        assert monitor.pruned == 150


def test_retention_days_deletes_what_is_older(store_url: str, make_records: Any) -> None:
    old = make_records(30, t0=time.time() - 40 * 86400)
    new = make_records(10)
    keep_all = MonitorSettings(url=store_url, retention_days=None, max_rows=None, flush_interval_s=0.05)
    with Monitor(keep_all, LABELS) as monitor:  # a store from before retention: everything kept
        monitor.record_many(old + new)
        monitor.flush()
        monitor.add_feedback(old[0].id, old[0].label)
        monitor.add_feedback(new[0].id, new[0].label)
        assert monitor.store.count_predictions() == 40
    settings = MonitorSettings(url=store_url, retention_days=30, max_rows=None, prune_interval_s=0.05,
                               flush_interval_s=0.05)
    with Monitor(settings, LABELS) as monitor:
        assert wait_until(lambda: monitor.store.count_predictions() == 10)
        assert all(monitor.store.get_prediction(r.id) is None for r in old)
        assert all(monitor.store.get_prediction(r.id) is not None for r in new)
        assert monitor.store.get_feedback(old[0].id) is None
        assert monitor.store.get_feedback(new[0].id) == {"label": new[0].label, "key_id": None}


def test_a_store_that_cannot_write_drops_and_counts_and_never_blocks(store_url: str, make_records: Any) -> None:
    import sqlalchemy as sa
    from prometheus_client import CollectorRegistry, generate_latest

    from lmforge.monitor._store import Store

    records: list[PredictionRecord] = make_records(40)
    with Monitor(MonitorSettings(url=store_url, flush_interval_s=0.05), LABELS) as monitor:
        # The writer process's inserts fail for real: its table is gone.
        with monitor.store.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE predictions"))
        monitor.record_many(records)  # only buffers: the failures happen in the writer process
        monitor.flush(timeout=30)
        assert monitor.failed == 40 and monitor.written == 0
        registry = CollectorRegistry()
        registry.register(monitor.collector())
        text = generate_latest(registry).decode()
        assert "lmforge_monitor_write_failed_total 40.0" in text
        Store(store_url).close()  # the database is back (the table created again): the next ones are stored
        monitor.record_many(make_records(5, t0=time.time() + 1))
        monitor.flush()
        assert monitor.written == 5


@pytest.mark.parametrize("bad", [{"retention_days": 0}, {"max_rows": 0}, {"max_rows": 1.5}, {"prune_interval_s": 0}])
def test_bad_retention_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        MonitorSettings(**bad)
