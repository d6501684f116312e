"""Reads: open parcels, late parcels, status counts."""

from __future__ import annotations

from datetime import timedelta

from wh_factories import T0, batch, event, result

from airflow_provider_parcels.models import TERMINAL_STATUSES, ParcelStatus

PARCELS = "parcel_tracking"
HOUR = timedelta(hours=1)


def test_open_parcels_streams_only_non_terminal_parcels_page_by_page(wh):
    data = [
        result(i, status=status, provider=provider)
        for i, (status, provider) in enumerate(
            (s, p) for p in ("whereparcel", "shipengine") for s in ParcelStatus for _ in range(3)
        )
    ]
    wh.load(data)
    expected = {(r.carrier, r.tracking_number, r.client_id) for r in data if r.status not in TERMINAL_STATUSES}

    for size in (1, 3, 4, 10_000):  # 3: pages end exactly at a status boundary
        rows = list(wh.open_parcels(batch_size=size))
        assert all(set(row) == {"carrier", "tracking_number", "client_id"} for row in rows)
        seen = [(row["carrier"], row["tracking_number"], row["client_id"]) for row in rows]
        assert len(seen) == len(set(seen)) == len(expected)
        assert set(seen) == expected

    only = {r.tracking_number for r in data if r.provider == "shipengine" and r.status not in TERMINAL_STATUSES}
    assert {row["tracking_number"] for row in wh.open_parcels(provider="shipengine", batch_size=2)} == only


def test_open_parcels_holds_no_lock_between_pages(wh):
    wh.load(batch(25))
    stream = wh.open_parcels(batch_size=10)
    seen = [next(stream)]
    # The caller tracks the page it got and loads the answers while still iterating.
    wh.load([result(1, status=ParcelStatus.DELIVERED, fetched_at=T0 + timedelta(hours=1))])
    wh.load(batch(5, start=100))
    seen += list(stream)
    numbers = {row["tracking_number"] for row in seen}
    assert {r.tracking_number for r in batch(25)} - {"TN0000001"} <= numbers


def test_open_parcels_reads_each_parcel_once_while_the_caller_moves_it(wh):
    """The caller tracks each parcel it gets and loads the answer while iterating (as the operator does)."""
    wh.load(batch(20, status=ParcelStatus.PENDING, events=0) + batch(10, start=20, status=ParcelStatus.INFO_RECEIVED))
    wh.load(batch(5, start=30, status=ParcelStatus.DELIVERED))
    moves = [ParcelStatus.IN_TRANSIT, ParcelStatus.OUT_FOR_DELIVERY, ParcelStatus.NOT_FOUND, ParcelStatus.DELIVERED]
    seen: list[str] = []
    for i, parcel in enumerate(wh.open_parcels(batch_size=4)):
        seen.append(parcel["tracking_number"])
        number = int(parcel["tracking_number"][2:])
        # a newer answer with a newer scan, into another open (or a terminal) status
        answer = result(number, status=moves[i % 4], events=[event(-1, "newer scan")], fetched_at=T0 + HOUR)
        assert wh.load([answer]).updated == 1
    assert sorted(seen) == [f"TN{i:07d}" for i in range(30)]  # each open parcel once, none delivered
    assert wh.status_counts() == {"delivered": 5 + 7, "in_transit": 8, "not_found": 7, "out_for_delivery": 8}


def test_late_parcels_past_estimated_delivery_exception_and_max_age(wh):
    now = T0
    data = [
        result(1, status=ParcelStatus.IN_TRANSIT, eta=now - timedelta(days=2)),  # late by 2 days
        result(2, status=ParcelStatus.DELIVERED, eta=now - timedelta(days=2)),  # delivered: fine
        result(3, status=ParcelStatus.EXCEPTION),  # exception
        result(4, status=ParcelStatus.IN_TRANSIT, eta=now + timedelta(days=1)),  # on time
        result(5, status=ParcelStatus.IN_TRANSIT, events=[event(24), event(24 * 10)]),  # shipped 10 days ago
        result(6, status=ParcelStatus.EXPIRED, events=[event(24 * 30)]),  # terminal
        result(7, status=ParcelStatus.IN_TRANSIT, events=[event(24 * 30, zoned=False)]),  # no UTC time
        result(8, status=ParcelStatus.IN_TRANSIT, eta=now - timedelta(days=1), provider="shipengine"),
    ]
    wh.load(data)

    late = wh.late_parcels(now=now)
    assert [r["tracking_number"] for r in late] == ["TN0000001", "TN0000008", "TN0000003"]
    first = late[0]
    assert first == {
        "provider": "whereparcel",
        "carrier": "kr.cj",
        "tracking_number": "TN0000001",
        "client_id": "order-1",
        "status": "in_transit",
        "last_event_at": T0,
        "last_event_description": "scan 0 of 1",
        "estimated_delivery": now - timedelta(days=2),
        "days_late": 2.0,
        "reasons": ["past_estimated_delivery"],
    }
    assert late[2]["reasons"] == ["exception"] and late[2]["days_late"] is None

    with_age = wh.late_parcels(now=now, max_age=timedelta(days=7))
    assert [r["tracking_number"] for r in with_age] == ["TN0000005", "TN0000001", "TN0000008", "TN0000003"]
    assert with_age[0]["days_late"] == 3.0
    assert with_age[0]["reasons"] == ["older_than_max_age"]

    assert [r["tracking_number"] for r in wh.late_parcels(now=now, provider="shipengine")] == ["TN0000008"]


def test_status_counts(wh):
    wh.load(batch(3, status=ParcelStatus.DELIVERED) + batch(2, start=10) + batch(1, start=20, provider="trackflow"))
    assert wh.status_counts() == {"delivered": 3, "in_transit": 3}
    assert wh.status_counts(provider="trackflow") == {"in_transit": 1}
    assert wh.status_counts(provider="nobody") == {}


def test_reads_on_an_empty_warehouse_create_the_tables(wh):
    assert list(wh.open_parcels()) == []
    assert wh.late_parcels() == []
    assert wh.status_counts() == {}
    assert wh.dump(PARCELS) == []
