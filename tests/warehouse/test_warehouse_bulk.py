"""Large loads: slices (flat memory, the same rows and counts as one statement), the MERGE opt-in."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from datetime import timedelta

import pytest
from wh_factories import T0, batch, mixed

from airflow_provider_parcels.models import ParcelStatus, TrackingError
from airflow_provider_parcels.warehouse import LoadCounts, ParcelWarehouse


def test_a_load_in_slices_gives_the_rows_and_counts_of_one_slice(make_warehouse):
    """Slices of 7 parcels (threads building the next one), versions and failures crossing them."""
    data = mixed(90)
    later = [replace(r, fetched_at=T0 + timedelta(hours=1), status=ParcelStatus.DELIVERED) for r in data[::3]]
    failed = [
        replace(r, fetched_at=T0 + timedelta(hours=2), status=ParcelStatus.UNKNOWN, events=(),
                error=TrackingError("server_error", "503"))
        for r in data[1::4]
    ]  # fmt: skip
    second = [*failed, *later, *mixed(10, start=90)]

    whole, sliced = make_warehouse(table_prefix="whole_"), make_warehouse(table_prefix="sliced_")
    sliced.slice_size = 7
    assert sliced.load(data) == whole.load(data)
    counts = sliced.load(second)
    assert counts == whole.load(second)
    assert counts.inserted == 10 and counts.updated == len({r.tracking_number for r in [*later, *failed]})
    for table in ("parcel_tracking", "parcel_tracking_events"):
        assert sliced.dump(table) == whole.dump(table)
    events = counts.events_inserted + counts.events_unchanged
    assert sliced.load(second) == LoadCounts(unchanged=len({r.key for r in second}), events_unchanged=events)


def _peak_of_load(wh: ParcelWarehouse, n: int, start: int) -> int:
    data = batch(n, start=start, events=10)
    for result in data:  # as parsing leaves them: event ids computed
        for event in result.events:
            _ = event.event_id
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        wh.load(data)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_peak_memory_of_a_load_does_not_grow_with_the_chunk(make_warehouse):
    wh = make_warehouse()
    wh.slice_size = 200
    wh.create_tables()
    small = _peak_of_load(wh, 400, 0)
    large = _peak_of_load(wh, 3_200, 10_000)
    # All rows at once would take about 8x; two slices of rows at a time, about 1x.
    assert large < 2.5 * small, (small, large)


def test_merge_is_opt_in_and_other_databases_are_refused_without_it(monkeypatch, sqlite_conn_id):
    monkeypatch.setenv("AIRFLOW_CONN_NOT_SQL", '{"conn_type": "http", "host": "example.com"}')
    with pytest.raises(ValueError, match="must be 'merge'"):
        ParcelWarehouse(sqlite_conn_id, dialect="upsert").dialect  # noqa: B018
    with pytest.raises(ValueError, match="dialect='merge'"):
        ParcelWarehouse("not_sql", hook=_NotOurs()).dialect  # noqa: B018
    # A database without a dialect here gets the generic one, with its hook's placeholder.
    merge = ParcelWarehouse("not_sql", hook=_NotOurs(), dialect="merge").dialect
    assert (merge.name, merge.placeholder, merge.status_index) == ("merge", ":1", False)


class _NotOurs:
    """A hook of a database the warehouse has no dialect for (only what ``dialect_for`` reads)."""

    conn_type = "oracle"
    placeholder = ":1"
