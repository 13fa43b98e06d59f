"""Admission control and the per-key token bucket."""

from __future__ import annotations

import pytest

from lmforge.serve._admission import Admission, KeyedBuckets, Overloaded, TokenBucket


def test_in_flight_and_text_budgets() -> None:
    adm = Admission(max_in_flight=2, max_texts=10, deadline_s=10)
    a = adm.admit(4)
    b = adm.admit(4)
    with pytest.raises(Overloaded, match="2 requests in flight") as err:
        adm.admit(1)
    assert err.value.retry_after == 1  # no model call measured yet: the floor
    adm.release(b)
    with pytest.raises(Overloaded, match="texts queued"):
        adm.admit(7)
    c = adm.admit(6)
    adm.release(a)
    adm.release(c)
    assert (adm.in_flight, adm.texts, adm.rejected) == (0, 0, 2)


def test_refuses_what_would_miss_its_deadline_and_sizes_retry_after() -> None:
    adm = Admission(max_in_flight=100, max_texts=10_000, deadline_s=2)
    adm.observe(100, 1.0)  # 100 texts/s measured
    held = adm.admit(150)  # 1.5 s of work: within 0.8 x 2 s
    with pytest.raises(Overloaded, match="estimated wait") as err:
        adm.admit(50)  # 2 s of work would miss the deadline
    assert err.value.retry_after == 2  # ceil(200 texts / 100 per s)
    adm.release(held)
    adm.release(adm.admit(50))


class FakeClock:
    """Stands in for the ``time`` module of ``_admission``: ``monotonic()`` moves only when the test says."""

    def __init__(self) -> None:
        self.now = 1024.0

    def monotonic(self) -> float:
        return self.now


def test_token_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmforge.serve._admission as admission

    clock = FakeClock()  # times in binary fractions, so the bucket's arithmetic is exact
    monkeypatch.setattr(admission, "time", clock)
    bucket = TokenBucket(rate=4, burst=2)
    assert bucket.take() == 0 and bucket.take() == 0  # the burst
    assert bucket.take() == 0.25  # empty: one token comes in 1/rate
    clock.now += 0.125
    assert bucket.take() == 0.125  # half a token saved up: half the wait left
    clock.now += 0.125
    assert bucket.take() == 0
    clock.now += 60  # a long idle spell saves up only the burst
    assert [bucket.take() for _ in range(3)] == [0, 0, 0.25]


def test_keyed_buckets_are_bounded_and_follow_the_rate() -> None:
    buckets = KeyedBuckets(limit=2)
    assert buckets.take("a", 1.0, 1) == 0.0
    assert buckets.take("a", 1.0, 1) > 0  # its one token is spent
    assert buckets.take("b", 1.0, 1) == 0.0
    assert buckets.take("c", 1.0, 1) == 0.0  # three names, room for two: "a" is the least recently used
    assert len(buckets) == 2
    assert buckets.take("a", 1.0, 1) == 0.0  # so "a" starts again with a full bucket
    assert buckets.take("a", 1.0, 1) > 0
    assert buckets.take("a", 5.0, 1) == 0.0  # a new rate starts a new bucket
