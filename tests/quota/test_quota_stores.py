"""The ledger's rules, the same in every store (the Redis Lua script mirrors the Python step)."""

from __future__ import annotations

import calendar
import time
import uuid

import pytest

from airflow_provider_parcels.quota.state import Lower, Pause, Peek, Reserve, day_end, month_end
from airflow_provider_parcels.quota.stores import QuotaStore

T0 = float(calendar.timegm((2026, 12, 4, 10, 0, 0)))


def key() -> str:
    return f"trackflow:{uuid.uuid4().hex[:16]}"


def test_reservations_are_paced_one_interval_apart(store: QuotaStore) -> None:
    k = key()
    waits = [store.apply(k, Reserve(1, 0.5, 120, None, None), now=T0).wait for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.5, 1.0, 1.5])
    # a batch costs its units: 10 parcels push the next slot 5 s on
    assert store.apply(k, Reserve(10, 0.5, 120, None, None), now=T0).wait == pytest.approx(2.0)
    assert store.apply(k, Reserve(1, 0.5, 120, None, None), now=T0).wait == pytest.approx(7.0)
    # idle time is not saved up: after a long pause the next one goes at once, and only one does
    assert store.apply(k, Reserve(1, 0.5, 120, None, None), now=T0 + 100).wait == 0.0
    assert store.apply(k, Reserve(1, 0.5, 120, None, None), now=T0 + 100).wait == pytest.approx(0.5)


def test_day_budget_is_refused_not_queued_and_resets_at_midnight_utc(store: QuotaStore) -> None:
    k = key()
    assert all(store.apply(k, Reserve(1, 0, None, 3, None), now=T0).exhausted is None for _ in range(3))
    refused = store.apply(k, Reserve(1, 0, None, 3, None), now=T0 + 1)
    assert refused.exhausted == "day"
    assert refused.wait == 0.0
    assert refused.state.day_used == 3
    assert refused.state.day_end == calendar.timegm((2026, 12, 5, 0, 0, 0))
    tomorrow = store.apply(k, Reserve(1, 0, None, 3, None), now=calendar.timegm((2026, 12, 5, 0, 0, 1)))
    assert tomorrow.exhausted is None
    assert tomorrow.state.day_used == 1
    assert tomorrow.state.month_used == 4  # the month goes on counting


def test_a_spent_month_is_named_before_the_day(store: QuotaStore) -> None:
    k = key()
    assert store.apply(k, Reserve(5, 0, None, 5, 5), now=T0).exhausted is None
    refused = store.apply(k, Reserve(1, 0, None, 5, 5), now=T0)
    assert refused.exhausted == "month"
    assert refused.state.month_end == calendar.timegm((2027, 1, 1, 0, 0, 0))


def test_a_batch_larger_than_what_is_left_is_refused(store: QuotaStore) -> None:
    k = key()
    store.apply(k, Reserve(7, 0, None, 10, None), now=T0)
    assert store.apply(k, Reserve(5, 0, None, 10, None), now=T0).exhausted == "day"
    assert store.apply(k, Reserve(3, 0, None, 10, None), now=T0).exhausted is None


@pytest.mark.parametrize(
    "moment",
    [
        (2026, 12, 31, 23, 59, 59),
        (2027, 1, 1, 0, 0, 0),
        (2028, 2, 28, 12, 0, 0),  # a leap year: the month ends on March 1
        (2027, 2, 28, 23, 59, 59),
        (2026, 4, 30, 0, 0, 0),
        (2100, 2, 28, 1, 0, 0),  # not a leap year
        (1999, 12, 15, 0, 0, 0),
    ],
)
def test_periods_end_at_utc_midnight_and_the_first_of_the_month(store: QuotaStore, moment: tuple[int, ...]) -> None:
    now = float(calendar.timegm(moment))
    state = store.apply(key(), Reserve(1, 0, None, None, None), now=now).state
    assert state.day_end == day_end(now)
    assert state.month_end == month_end(now)
    year, month = (moment[0] + 1, 1) if moment[1] == 12 else (moment[0], moment[1] + 1)
    assert state.month_end == calendar.timegm((year, month, 1, 0, 0, 0))


def test_lower_remaining_only_lowers_and_is_forgotten_at_the_reset(store: QuotaStore) -> None:
    k = key()
    store.apply(k, Reserve(10, 0, None, 1000, None), now=T0)
    store.apply(k, Lower("day", 5, None), now=T0)
    assert store.apply(k, Lower("day", 50, None), now=T0).state.day_cap == 15  # higher: ignored
    assert store.apply(k, Reserve(5, 0, None, 1000, None), now=T0).exhausted is None
    assert store.apply(k, Reserve(1, 0, None, 1000, None), now=T0).exhausted == "day"
    # the API's reset time replaces the calendar's for this period
    state = store.apply(k, Lower("day", 0, 3600.0), now=T0).state
    assert state.day_end == T0 + 3600
    after = store.apply(k, Reserve(1, 0, None, 1000, None), now=T0 + 3601)
    assert after.exhausted is None
    assert after.state.day_cap is None
    assert after.state.day_end == day_end(T0 + 3601)


def test_a_month_budget_learned_from_the_api_without_a_configured_one(store: QuotaStore) -> None:
    k = key()
    store.apply(k, Lower("month", 2, None), now=T0)
    assert [store.apply(k, Reserve(1, 0, None, None, None), now=T0).exhausted for _ in range(3)] == [
        None, None, "month"]


def test_pause_holds_every_reservation_back(store: QuotaStore) -> None:
    k = key()
    store.apply(k, Reserve(1, 1.0, 60, None, None), now=T0)
    store.apply(k, Pause(30), now=T0)
    assert store.apply(k, Reserve(1, 1.0, 60, None, None), now=T0 + 1).wait == pytest.approx(29)
    assert store.apply(k, Reserve(1, 1.0, 60, None, None), now=T0 + 1).wait == pytest.approx(30)
    # a minute window the API says is spent: everyone waits for its reset
    store.apply(k, Lower("minute", 0, 100.0), now=T0 + 1)
    assert store.apply(k, Reserve(1, 1.0, 60, None, None), now=T0 + 1).wait == pytest.approx(100)
    with pytest.raises(ValueError, match="unknown quota period"):
        Lower("week", 0, None)


def test_peek_writes_nothing(store: QuotaStore) -> None:
    k = key()
    assert store.apply(k, Peek(), now=T0).state.day_used == 0
    assert k not in store.list_keys()
    store.apply(k, Reserve(2, 0, None, None, None), now=T0)
    assert store.apply(k, Peek(), now=T0).state.day_used == 2
    assert k in store.list_keys()


def test_the_store_clock_is_used(store: QuotaStore) -> None:
    """Without an override the store's own clock answers (Redis TIME, PostgreSQL clock_timestamp())."""
    result = store.apply(key(), Reserve(1, 0, None, None, None))
    assert abs(result.now - time.time()) < 5
    assert result.state.updated_at == pytest.approx(result.now)
