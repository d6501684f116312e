"""TrackParcelsOperator within a day budget (issue 17, items 4 and 5): the most needed parcels first, and it says so."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_parcels.models import ParcelStatus, TrackingResult
from airflow_provider_parcels.quota.priority import budget_left, prioritise

NOW = datetime.now(timezone.utc)


def preload(warehouse_conn_id: str) -> list[dict[str, str]]:
    """Five parcels the warehouse knows (one delivered), three it does not; the run's input, in that order."""
    from airflow_provider_parcels.warehouse import ParcelWarehouse

    known = [  # number, status, last fetched, estimated delivery
        ("TRNRECENTFAR", ParcelStatus.IN_TRANSIT, NOW - timedelta(hours=1), NOW + timedelta(days=5)),
        ("TRNRECENTNEAR", ParcelStatus.IN_TRANSIT, NOW - timedelta(hours=1), NOW + timedelta(days=1)),
        ("TRNOLD5DAYS", ParcelStatus.IN_TRANSIT, NOW - timedelta(days=5), None),
        ("DLVDONE", ParcelStatus.DELIVERED, NOW - timedelta(days=20), None),
        ("TRNOLD10DAYS", ParcelStatus.IN_TRANSIT, NOW - timedelta(days=10), None),
    ]
    ParcelWarehouse(warehouse_conn_id).load(
        TrackingResult("trackflow", "ups", n, s, fetched_at=f, estimated_delivery=e) for n, s, f, e in known)
    return [{"carrier": "ups", "tracking_number": n} for n in
            ("TRNRECENTFAR", "TRNNEW1", "TRNRECENTNEAR", "TRNOLD5DAYS", "DLVDONE", "TRNNEW2", "TRNOLD10DAYS",
             "TRNNEW3")]


def run_operator(monkeypatch: pytest.MonkeyPatch, sandbox: Any, warehouse_conn_id: str, parcels: list[dict],
                 **kwargs: Any) -> dict[str, Any]:
    from airflow_provider_parcels.operators.tracking import TrackParcelsOperator

    extra = kwargs.pop("extra")
    monkeypatch.setenv(*sandbox.conn_env("trackflow", conn_id="track_budget", batch_size=1, **extra))
    operator = TrackParcelsOperator(task_id="track", conn_id="track_budget", parcels=parcels,
                                    warehouse_conn_id=warehouse_conn_id, **kwargs)
    return operator.execute(context={})


def test_within_the_day_budget_the_most_needed_parcels_go_first(parcels_sandbox_clean: Any, sqlite_conn_id: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    parcels = preload(sqlite_conn_id)
    out = run_operator(monkeypatch, parcels_sandbox_clean, sqlite_conn_id, parcels, extra={"requests_per_day": 6})

    assert parcels_sandbox_clean.stats()["trackflow"]["items"] == 6 and out["parcels"] == 6 and out["errors"] == 0
    quota = out["quota"]
    assert (quota["waiting_for_next_budget"], quota["skipped_terminal"]) == (1, 1)
    assert quota["day"]["used"] == 6 and quota["day"]["remaining"] == 0 and quota["key"].startswith("trackflow:")
    # the one left waiting is the one checked recently whose delivery is furthest away
    from airflow_provider_parcels.warehouse import ParcelWarehouse

    rows = {row[2]: row for row in ParcelWarehouse(sqlite_conn_id).dump("parcel_tracking")}
    assert rows["TRNRECENTFAR"][-1] is None  # untouched: no fresh fetch, no error recorded
    assert rows["TRNRECENTFAR"][4] == "in_transit" and rows["DLVDONE"][4] == "delivered"


def test_a_reserve_keeps_part_of_the_budget_for_sensors(parcels_sandbox_clean: Any, sqlite_conn_id: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    parcels = preload(sqlite_conn_id)
    out = run_operator(monkeypatch, parcels_sandbox_clean, sqlite_conn_id, parcels,
                       extra={"requests_per_day": 10}, budget_reserve=0.5)
    assert out["parcels"] == 5 and out["quota"]["waiting_for_next_budget"] == 2
    assert out["quota"]["day"]["remaining"] == 5  # left for the sensors and alerts


def test_prioritise_orders_new_then_oldest_check_then_nearest_delivery() -> None:
    day = 86_400
    known = {
        ("p", "c", "A"): ("in_transit", datetime.fromtimestamp(1000 * day, timezone.utc), None),
        ("p", "c", "B"): ("in_transit", datetime.fromtimestamp(900 * day, timezone.utc), None),
        ("p", "c", "C"): ("in_transit", datetime.fromtimestamp(1000 * day, timezone.utc),
                          datetime.fromtimestamp(1001 * day, timezone.utc)),
        ("p", "c", "D"): ("delivered", datetime.fromtimestamp(1 * day, timezone.utc), None),
    }
    items = [{"carrier": "c", "tracking_number": n} for n in "ABCDEF"]
    chosen, waiting, terminal = prioritise(items, 4, "p", lambda keys: {k: known[k] for k in keys if k in known},
                                           chunk_size=2)
    assert [i["tracking_number"] for i in chosen] == ["E", "F", "B", "C"] and (waiting, terminal) == (1, 1)
    none, waiting, _ = prioritise(items, 0, "p", None)
    assert none == [] and waiting == 6


def test_budget_left_is_the_smaller_budget_minus_the_reserve(tmp_path: Any) -> None:
    from airflow_provider_parcels.quota import QuotaLedger, QuotaLimits, SQLiteStore

    ledger = QuotaLedger("trackflow:abc", QuotaLimits(requests_per_day=100, requests_per_month=1000),
                         SQLiteStore(tmp_path / "q.db"))
    assert ledger.reserve(40).ok
    assert budget_left(ledger.status()) == 60 and budget_left(ledger.status(), 0.5) == 10
    assert budget_left(QuotaLedger("x:y", QuotaLimits(), SQLiteStore(tmp_path / "r.db")).status()) is None
