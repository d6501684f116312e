"""Loads: idempotency, resume after a crash, the fetched_at guard, de-duplication, events, values."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from wh_factories import NASTY, T0, batch, chunked, event, mixed, result

from airflow_provider_parcels.models import ParcelStatus, TrackingError, TrackingEvent
from airflow_provider_parcels.warehouse import LoadCounts

PARCELS, EVENTS = "parcel_tracking", "parcel_tracking_events"
COLUMNS = [
    "provider", "carrier", "tracking_number", "client_id", "status", "provider_status", "status_text",
    "carrier_name", "estimated_delivery", "delivered_at", "last_event_at", "last_event_description",
    "last_event_location", "event_count", "origin_country", "destination_country", "error_code",
    "error_message", "fetched_at", "raw", "last_error_code", "last_error_message", "last_error_at",
]  # fmt: skip


def by_number(wh) -> dict[str, dict]:
    return {row[2]: dict(zip(COLUMNS, row, strict=True)) for row in wh.dump(PARCELS)}


def test_load_twice_gives_same_rows_and_counts_unchanged_then_updated(wh):
    data = mixed(60)
    events = sum(len({e.event_id for e in r.events}) for r in data)

    first = wh.load(data)
    assert first == LoadCounts(inserted=60, events_inserted=events)
    parcels, evs = wh.dump(PARCELS), wh.dump(EVENTS)
    assert len(parcels) == 60 and len(evs) == events

    second = wh.load(data)
    assert second == LoadCounts(unchanged=60, events_unchanged=events)
    assert wh.dump(PARCELS) == parcels
    assert wh.dump(EVENTS) == evs

    # A later fetch rewrites every row it covers, changed or not; new parcels are inserted.
    later = [replace(r, fetched_at=T0 + timedelta(hours=1)) for r in data[:20]]
    later += [replace(r, fetched_at=T0 + timedelta(hours=1), status=ParcelStatus.DELIVERED) for r in data[20:30]]
    third = wh.load([*later, *mixed(5, start=60)])
    assert (third.inserted, third.updated, third.unchanged) == (5, 30, 0)
    rows = by_number(wh)
    assert {rows[r.tracking_number]["status"] for r in data[20:30]} == {"delivered"}
    assert rows[data[0].tracking_number]["fetched_at"] == T0 + timedelta(hours=1)
    assert rows[data[40].tracking_number]["fetched_at"] == T0


def test_crash_after_chunk_k_then_rerun_equals_one_clean_run(make_warehouse):
    data = mixed(90)
    chunks = list(chunked(data, 20))
    clean = make_warehouse(table_prefix="clean_")
    for chunk in chunks:
        clean.load(chunk)

    wh = make_warehouse()
    for chunk in chunks[:2]:
        wh.load(chunk)

    def dies_half_way(chunk):
        yield from chunk[:10]
        raise ConnectionError("API went away")

    with pytest.raises(ConnectionError):
        wh.load(dies_half_way(chunks[2]))
    assert len(wh.dump(PARCELS)) == 40  # nothing of chunk 2

    # A result that fails inside the transaction (an event the database refuses) after the
    # parcel upsert of that chunk already ran: the whole chunk is rolled back.
    bad_event = TrackingEvent(T0, None, None, None, "no status", None)  # type: ignore[arg-type]
    poisoned = [*chunks[3][:-1], replace(chunks[3][-1], events=(bad_event,))]
    before = (wh.dump(PARCELS), wh.dump(EVENTS))
    with pytest.raises(Exception, match=r"(?i)not.null|null value"):
        wh.load(poisoned)
    assert (wh.dump(PARCELS), wh.dump(EVENTS)) == before

    total = sum((wh.load(chunk) for chunk in chunks), LoadCounts())
    assert total.inserted == 50 and total.unchanged == 40
    assert wh.dump(PARCELS) == clean.dump(PARCELS)
    assert wh.dump(EVENTS) == clean.dump(EVENTS)


def test_an_older_fetch_never_overwrites_a_newer_row(wh):
    newer = result(1, status=ParcelStatus.DELIVERED, fetched_at=T0 + timedelta(minutes=5))
    older = result(1, status=ParcelStatus.IN_TRANSIT, fetched_at=T0)
    same_time_changed = replace(newer, status_text="corrected")

    assert wh.load([newer]).inserted == 1
    counts = wh.load([older])
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 1)
    assert by_number(wh)["TN0000001"]["status"] == "delivered"

    counts = wh.load([same_time_changed])  # equally new and different: applied
    assert counts.updated == 1
    row = by_number(wh)["TN0000001"]
    assert (row["status"], row["status_text"]) == ("delivered", "corrected")


def test_duplicate_keys_in_one_batch_keep_the_newest_fetch(wh):
    versions = [
        result(7, status=ParcelStatus.IN_TRANSIT, fetched_at=T0 + timedelta(minutes=1), events=2),
        result(7, status=ParcelStatus.DELIVERED, fetched_at=T0 + timedelta(minutes=3), events=[event(0, "delivered")]),
        result(7, status=ParcelStatus.PENDING, fetched_at=T0, events=1),
        result(8),
    ]
    counts = wh.load(versions)
    assert (counts.inserted, counts.updated, counts.unchanged) == (2, 0, 0)
    row = by_number(wh)["TN0000007"]
    assert (row["status"], row["event_count"], row["last_event_description"]) == ("delivered", 1, "delivered")
    # The events of every version are facts and are kept, each once.
    stored = [e for e in wh.dump(EVENTS) if e[2] == "TN0000007"]
    expected = {e.event_id for r in versions[:3] for e in r.events}
    assert sorted(e[3] for e in stored) == sorted(expected)
    assert counts.events_inserted == len(expected) + 3


def test_events_are_not_duplicated_across_runs(wh):
    early = result(3, events=[event(2), event(1)])
    later = result(3, events=[event(0, "out for delivery"), event(2), event(1)], fetched_at=T0 + timedelta(hours=1))
    assert wh.load([early]).events_inserted == 2
    counts = wh.load([later])
    assert (counts.events_inserted, counts.events_unchanged) == (1, 2)
    assert wh.load([later, early]).events_inserted == 0
    assert len(wh.dump(EVENTS)) == 3
    assert by_number(wh)["TN0000003"]["event_count"] == 3


def test_zone_less_event_keeps_null_utc_time_and_its_local_text(wh):
    zoneless = event(0, "arrived", local="2015-10-25 15:01", zoned=False)
    wh.load([result(4, events=[zoneless])])
    (stored,) = wh.dump(EVENTS)
    assert stored[4] is None
    assert stored[5] == "2015-10-25 15:01"
    row = by_number(wh)["TN0000004"]
    assert row["last_event_at"] is None
    assert row["last_event_description"] == "arrived"


def test_unicode_quotes_and_control_characters_round_trip(wh):
    data = [result(i, text=text or None, events=[event(1, text)]) for i, text in enumerate(NASTY)]
    wh.load(data)
    rows = by_number(wh)
    for r in data:
        assert rows[r.tracking_number]["status_text"] == r.status_text
        assert rows[r.tracking_number]["last_event_description"] == r.events[0].description
    assert {e[8] for e in wh.dump(EVENTS)} == set(NASTY)
    assert wh.load(data).unchanged == len(data)


def test_timestamps_outside_the_nanosecond_range_round_trip(wh):
    # Both ends of the range every database holds (DuckDB reads rows through a pandas frame,
    # whose datetime64[ns] ends in 2262).
    far = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    early = datetime(1, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    old_scan = replace(event(1, "first scan"), occurred_at=early, raw={"t": "0001"})
    data = [result(1, eta=far, events=[old_scan, event(2, "later scan")]), result(2, eta=T0)]
    wh.load(data)
    rows = by_number(wh)
    assert rows["TN0000001"]["estimated_delivery"] == far
    assert rows["TN0000002"]["estimated_delivery"] == T0
    assert {e[4] for e in wh.dump(EVENTS) if e[2] == "TN0000001"} == {early, T0 - timedelta(hours=2)}
    assert wh.load(data).unchanged == 2


def test_row_mapping_of_a_result(wh):
    ok = result(5, eta=T0 + timedelta(days=2), events=[event(3), event(1, "newest", location="Berlin")])
    failed = result(6, status=ParcelStatus.UNKNOWN, events=0, error=TrackingError("rate_limited", "quota"))
    wh.load([ok, failed])
    rows = by_number(wh)
    assert rows["TN0000005"] == {
        **rows["TN0000005"],
        "provider": "whereparcel",
        "carrier": "kr.cj",
        "client_id": "order-5",
        "status": "in_transit",
        "provider_status": "raw-in_transit",
        "carrier_name": "CJ Logistics",
        "estimated_delivery": T0 + timedelta(days=2),
        "last_event_at": T0 - timedelta(hours=1),
        "last_event_description": "newest",
        "last_event_location": "Berlin",
        "event_count": 2,
        "origin_country": "KR",
        "destination_country": "DE",
        "error_code": None,
        "fetched_at": T0,
        "raw": '{"i": 5, "status": "in_transit", "text": null}',
    }
    assert (rows["TN0000006"]["error_code"], rows["TN0000006"]["error_message"]) == ("rate_limited", "quota")
    assert rows["TN0000006"]["status"] == "unknown"


def test_concurrent_loads_of_the_same_parcels_keep_the_newest(make_warehouse):
    versions = [batch(300, fetched_at=T0 + timedelta(minutes=m)) for m in range(4)]
    errors: list[BaseException] = []

    def run(data):
        try:
            wh = make_warehouse()
            for chunk in chunked(data, 100):
                wh.load(chunk)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = by_number(make_warehouse())
    assert len(rows) == 300
    assert {r["fetched_at"] for r in rows.values()} == {T0 + timedelta(minutes=3)}


def test_empty_load_does_nothing(wh):
    assert wh.load([]) == LoadCounts()
    assert wh.load(iter(())) == LoadCounts()


def test_nul_characters_do_not_lose_the_chunk(wh):
    """PostgreSQL text cannot hold NUL: those values load as U+FFFD; SQLite keeps them."""
    bad_key = replace(result(9), tracking_number="TN\x00BAD", status=ParcelStatus.UNKNOWN)
    bad_text = replace(result(1, text="bad\x00text"), events=(event(1, "De\x00livered"),))
    counts = wh.load([result(0), bad_text, bad_key, result(2)])
    assert counts.inserted == 4
    nul = "\x00" if wh.dialect.text_allows_nul else "\ufffd"
    rows = by_number(wh)
    assert set(rows) == {"TN0000000", "TN0000002", "TN0000001", f"TN{nul}BAD"}
    assert rows["TN0000001"]["status_text"] == f"bad{nul}text"
    assert f"De{nul}livered" in {e[8] for e in wh.dump(EVENTS)}
    assert wh.load([result(0), bad_text, bad_key, result(2)]).unchanged == 4
