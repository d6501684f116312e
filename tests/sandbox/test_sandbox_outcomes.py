"""The tracking-number scheme and the sliding window, without HTTP."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_parcels.sandbox.outcomes import OutcomeBook, classify, day_start
from airflow_provider_parcels.sandbox.ratelimit import SlidingWindowLimiter
from airflow_provider_parcels.sandbox.settings import FaultInjector, parse_faults


@pytest.mark.parametrize(("number", "outcome", "mode"), [
    ("DLV1", "delivered", "fixed"), ("dlv1", "delivered", "fixed"), ("TRN", "in_transit", "fixed"),
    ("OFD-2", "out_for_delivery", "fixed"), ("EXC9", "exception", "fixed"), ("FAT1", "failed_attempt", "fixed"),
    ("PUP1", "available_for_pickup", "fixed"), ("EXP1", "expired", "fixed"), ("PEN1", "pending", "fixed"),
    ("INF1", "info_received", "fixed"), ("UNK1", "unknown", "fixed"), ("NFD1", "not_found", "fixed"),
    ("POLLD3X", "delivered", "polls"), ("pollx2", "exception", "polls"), ("SECD5", "delivered", "seconds"),
    ("SECX1", "exception", "seconds"),
])
def test_prefixes(number, outcome, mode):
    rule = classify(number)
    assert (rule.outcome, rule.mode, rule.registered) == (outcome, mode, True)


def test_new_prefix():
    assert classify("NEWDLV1").outcome == "delivered" and not classify("NEWDLV1").registered
    assert classify("NEWPOLLD2").mode == "polls"
    assert classify("NEW123").mode == "hash"


def test_hash_numbers_are_plausible_and_stable():
    now = datetime(2026, 3, 1, 15, 0, tzinfo=timezone.utc).timestamp()
    book = OutcomeBook(clock=lambda: now)
    outcomes = Counter()
    late = 0
    for index in range(600):
        first = book.lookup("api", f"1Z{index:08d}")
        again = OutcomeBook(clock=lambda: now + 3600).lookup("api", f"1Z{index:08d}")
        assert first == again  # stable within the day
        outcomes[first.outcome] += 1
        assert 1 <= len(first.events) <= 6
        assert all(e.at < day_start(now) for e in first.events)
        assert [e.at for e in first.events] == sorted((e.at for e in first.events), reverse=True)
        if first.outcome != "delivered" and first.estimated_delivery < day_start(now):
            late += 1
    assert set(outcomes) == {"delivered", "in_transit", "out_for_delivery", "exception", "failed_attempt",
                             "available_for_pickup"}
    assert outcomes["delivered"] > outcomes["exception"] and late > 30
    next_day = OutcomeBook(clock=lambda: now + 86400).lookup("api", "1Z00000001")
    assert next_day.events[0].at == book.lookup("api", "1Z00000001").events[0].at + timedelta(days=1)


def test_peek_does_not_count():
    book = OutcomeBook()
    assert book.lookup("a", "POLLD1", count=False).outcome == "in_transit"
    assert book.lookups("a", "POLLD1") == 0
    assert [book.lookup("a", "POLLD1").outcome for _ in range(2)] == ["in_transit", "delivered"]


def test_sliding_window():
    clock = [100.0]
    limiter = SlidingWindowLimiter(clock=lambda: clock[0])
    assert limiter.acquire("k", 2).allowed
    clock[0] = 105.0
    assert limiter.acquire("k", 2).remaining == 0
    clock[0] = 110.0
    refused = limiter.acquire("k", 2)
    assert not refused.allowed and refused.wait == pytest.approx(50.0)
    clock[0] = 160.0
    assert limiter.acquire("k", 2).allowed  # the first request expired; the refusal was not counted
    assert not limiter.acquire("k", 2).allowed
    assert limiter.acquire("other", 2).allowed
    weighted = SlidingWindowLimiter(clock=lambda: clock[0])
    assert weighted.acquire("k", 10, weight=6).remaining == 4
    assert not weighted.acquire("k", 10, weight=5).allowed
    assert weighted.acquire("k", 3, weight=50).allowed is False
    assert SlidingWindowLimiter().acquire("k", 3, weight=50).allowed  # an empty window lets it through


def test_fault_spec():
    assert parse_faults("503=0.1, timeout=0.05,badjson=0.02,reset=0.01,429=0.05") == {
        "503": 0.1, "timeout": 0.05, "badjson": 0.02, "reset": 0.01, "429": 0.05}
    assert parse_faults("") == {}
    for bad in ("503", "x=0.1", "503=abc", "503=2", "503=0.6,429=0.6"):
        with pytest.raises(ValueError):
            parse_faults(bad)
    draws = [FaultInjector("429=0.5,503=0.5", seed=1).draw() for _ in range(3)]
    assert len(set(draws)) == 1
    injector = FaultInjector("429=0.25,503=0.25,timeout=0.25,reset=0.25", seed=5)
    assert set(injector.draw() for _ in range(200)) == {"429", "503", "timeout", "reset"}
