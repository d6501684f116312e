"""Failed fetches and older answers never replace a newer good state (issue 16, point 2).

Each test runs on a SQLite file and on the session's PostgreSQL (``warehouse_conn_id``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from wh_factories import T0, event, result

from airflow_provider_parcels.models import ParcelStatus, TrackingError, TrackingResult
from airflow_provider_parcels.warehouse import LoadCounts
from airflow_provider_parcels.warehouse.rows import LAST_ERROR_COLUMNS, PARCELS, TableSpec, parcel_row

S = ParcelStatus
HOUR = timedelta(hours=1)


def failed(i: int, code: str, at: datetime, message: str | None = None) -> TrackingResult:
    """Parcel ``i`` as a hook returns it when the request failed: status unknown, no events, ``error`` set."""
    error = TrackingError(code, message or f"{code} (after retries)")
    return result(i, status=S.UNKNOWN, events=0, fetched_at=at, error=error)


def delivered(i: int, at: datetime = T0) -> TrackingResult:
    """Parcel ``i`` delivered at ``T0`` (its newest event), fetched at ``at``."""
    events = [event(0, "delivered", S.DELIVERED), event(5, "in transit"), event(30, "label created")]
    return replace(result(i, status=S.DELIVERED, events=events, fetched_at=at), delivered_at=T0)


def rows(wh) -> dict[str, dict[str, Any]]:
    return {row[2]: dict(zip(PARCELS.names, row, strict=True)) for row in wh.dump(PARCELS.name)}


def state(row: dict[str, Any]) -> dict[str, Any]:
    """A row without the ``last_error_*`` columns."""
    return {k: v for k, v in row.items() if k not in LAST_ERROR_COLUMNS}


def counts(c: LoadCounts) -> tuple[int, int, int]:
    return c.inserted, c.updated, c.unchanged


def test_a_failed_fetch_is_recorded_beside_the_last_good_answer(wh):
    assert counts(wh.load([delivered(1)])) == (1, 0, 0)
    good = rows(wh)["TN0000001"]
    assert [good[c] for c in LAST_ERROR_COLUMNS] == [None, None, None]

    assert counts(wh.load([failed(1, "timeout", T0 + HOUR)])) == (0, 1, 0)
    row = rows(wh)["TN0000001"]
    assert state(row) == state(good)  # still delivered, delivered_at, last event, fetched_at of the answer
    assert (row["status"], row["delivered_at"], row["last_event_description"]) == ("delivered", T0, "delivered")
    assert (row["error_code"], row["fetched_at"]) == (None, T0)
    assert (row["last_error_code"], row["last_error_message"], row["last_error_at"]) == (
        "timeout", "timeout (after retries)", T0 + HOUR)
    assert list(wh.open_parcels()) == []  # not re-opened
    assert wh.status_counts() == {"delivered": 1}

    # The same failure again, an older one loaded late, and the stored answer again change nothing.
    assert counts(wh.load([failed(1, "timeout", T0 + HOUR)])) == (0, 0, 1)
    assert counts(wh.load([delivered(1)])) == (0, 0, 1)
    assert counts(wh.load([failed(1, "rate_limited", T0 + HOUR / 2)])) == (0, 0, 1)
    assert rows(wh)["TN0000001"]["last_error_code"] == "timeout"

    # A newer failure replaces the recorded one; a newer good answer clears it.
    assert counts(wh.load([failed(1, "server_error", T0 + 2 * HOUR)])) == (0, 1, 0)
    assert rows(wh)["TN0000001"]["last_error_at"] == T0 + 2 * HOUR
    assert counts(wh.load([delivered(1, at=T0 + 3 * HOUR)])) == (0, 1, 0)
    row = rows(wh)["TN0000001"]
    assert state(row) == {**state(good), "fetched_at": T0 + 3 * HOUR}
    assert [row[c] for c in LAST_ERROR_COLUMNS] == [None, None, None]


def test_a_good_answer_older_than_the_recorded_failure_keeps_that_failure(wh):
    wh.load([delivered(1), failed(1, "timeout", T0 + 3 * HOUR)])
    assert counts(wh.load([delivered(1, at=T0 + HOUR)])) == (0, 1, 0)  # newer than the state: taken
    row = rows(wh)["TN0000001"]
    assert (row["fetched_at"], row["last_error_code"], row["last_error_at"]) == (T0 + HOUR, "timeout", T0 + 3 * HOUR)


def test_a_parcel_never_answered_well_is_an_error_row_until_it_is(wh):
    assert counts(wh.load([failed(2, "rate_limited", T0)])) == (1, 0, 0)  # nothing handed in is lost
    row = rows(wh)["TN0000002"]
    assert (row["status"], row["error_code"], row["error_message"], row["fetched_at"]) == (
        "unknown", "rate_limited", "rate_limited (after retries)", T0)
    assert [row[c] for c in LAST_ERROR_COLUMNS] == [None, None, None]  # the error is the state itself
    assert [p["tracking_number"] for p in wh.open_parcels()] == ["TN0000002"]

    assert counts(wh.load([failed(2, "timeout", T0 + HOUR)])) == (0, 1, 0)
    assert (rows(wh)["TN0000002"]["error_code"], rows(wh)["TN0000002"]["last_error_code"]) == ("timeout", None)
    assert counts(wh.load([failed(2, "timeout", T0 + HOUR)])) == (0, 0, 1)

    assert counts(wh.load([result(2, fetched_at=T0 + 2 * HOUR)])) == (0, 1, 0)
    row = rows(wh)["TN0000002"]
    assert (row["status"], row["error_code"], row["event_count"]) == ("in_transit", None, 3)
    assert [row[c] for c in LAST_ERROR_COLUMNS] == [None, None, None]


def test_an_older_answer_never_replaces_a_newer_state(wh):
    wh.load([
        delivered(1),
        result(2, status=S.IN_TRANSIT, events=[event(0), event(4)]),
        result(3, status=S.OUT_FOR_DELIVERY, events=[event(h, zoned=False, local=f"2015-10-2{h} 10:00")
                                                      for h in range(3)]),
    ])  # fmt: skip
    before = rows(wh)
    later = T0 + HOUR

    stale = [
        # a delivered parcel answered from a stale cache: in transit, newest event 5 hours older
        result(1, status=S.IN_TRANSIT, events=[event(5), event(30)], fetched_at=later),
        # terminal back to non-terminal with no newer event (the same newest event)
        result(1, status=S.OUT_FOR_DELIVERY, events=[event(0, "delivered", S.DELIVERED)], fetched_at=later),
        # an in-transit parcel answered with an older history
        result(2, status=S.INFO_RECEIVED, events=[event(4)], fetched_at=later),
        # events without a zone: fewer of them is older
        result(3, status=S.PENDING, events=[event(0, zoned=False, local="2015-10-20 10:00")], fetched_at=later),
    ]
    for answer in stale:
        assert counts(wh.load([answer])) == (0, 0, 1), answer
    assert rows(wh) == before
    assert wh.late_parcels(now=T0) == []

    # Newer answers are taken: a newer scan re-opens a delivered parcel; more zone-less events are newer.
    reopened = result(1, status=S.IN_TRANSIT, events=[event(-1, "back at the hub"), event(0, "delivered")],
                      fetched_at=later + HOUR)
    more = result(3, status=S.DELIVERED, events=[event(h, zoned=False, local=f"2015-10-2{h} 10:00") for h in range(4)],
                  fetched_at=later)
    same_time = result(2, status=S.OUT_FOR_DELIVERY, events=[event(0, "with the courier")], fetched_at=later)
    assert counts(wh.load([reopened, more, same_time])) == (0, 3, 0)
    after = rows(wh)
    assert {n: after[n]["status"] for n in after} == {
        "TN0000001": "in_transit", "TN0000002": "out_for_delivery", "TN0000003": "delivered"}


def test_a_not_found_answer_is_an_answer_not_a_failed_fetch(wh):
    not_found = replace(failed(1, "not_found", T0, "no such number"), status=S.NOT_FOUND)
    wh.load([not_found, result(2, events=[event(0)])])
    # A failed request does not turn "the API does not know it" into "unknown".
    assert counts(wh.load([failed(1, "server_error", T0 + HOUR)])) == (0, 1, 0)
    row = rows(wh)["TN0000001"]
    assert (row["status"], row["error_code"], row["last_error_code"]) == ("not_found", "not_found", "server_error")
    # An API that forgot a parcel it had tracked: an older answer (no events); its error is recorded beside.
    forgot = replace(failed(2, "not_found", T0 + HOUR, "no such number"), status=S.NOT_FOUND)
    assert counts(wh.load([forgot])) == (0, 1, 0)
    row = rows(wh)["TN0000002"]
    assert (row["status"], row["error_code"], row["last_error_code"]) == ("in_transit", None, "not_found")


def test_late_parcels_keep_reporting_whatever_the_last_fetch_did(wh):
    wh.load([
        result(1, status=S.IN_TRANSIT, eta=T0 - timedelta(days=2)),
        result(3, status=S.EXCEPTION),
        result(4, status=S.IN_TRANSIT, eta=T0 + timedelta(days=1)),
    ])  # fmt: skip
    late = wh.late_parcels(now=T0, max_age=timedelta(days=1))
    assert [r["tracking_number"] for r in late] == ["TN0000001", "TN0000003"]

    wh.load([failed(1, "server_error", T0 + HOUR, "HTTP 503"), failed(3, "timeout", T0 + HOUR)])
    assert wh.late_parcels(now=T0, max_age=timedelta(days=1)) == late
    wh.load([result(1, status=S.PENDING, events=[event(5)], fetched_at=T0 + 2 * HOUR)])  # stale: older history
    assert wh.late_parcels(now=T0, max_age=timedelta(days=1)) == late


@pytest.mark.parametrize("copy_threshold", [1000, 1], ids=["values", "copy"])
def test_versions_in_one_batch_apply_as_if_loaded_one_by_one(make_warehouse, copy_threshold):
    history = [
        delivered(1),
        failed(1, "timeout", T0 + HOUR),
        result(1, status=S.IN_TRANSIT, events=[event(5)], fetched_at=T0 + 2 * HOUR),  # stale
        failed(2, "rate_limited", T0),
        result(2, fetched_at=T0 + HOUR),
        failed(2, "timeout", T0 + 2 * HOUR),
        result(3),
    ]
    one_by_one = make_warehouse(table_prefix="one_")
    for answer in history:
        one_by_one.load([answer])

    wh = make_warehouse()
    wh.copy_threshold = copy_threshold  # 1: every round through COPY on PostgreSQL
    shuffled = [history[i] for i in (2, 5, 0, 6, 4, 1, 3)]  # the fetch times, not the batch order, decide
    assert counts(wh.load(shuffled)) == (3, 0, 0)
    assert wh.dump(PARCELS.name) == one_by_one.dump(PARCELS.name)
    row = rows(wh)
    assert (row["TN0000001"]["status"], row["TN0000001"]["last_error_code"]) == ("delivered", "timeout")
    assert (row["TN0000002"]["status"], row["TN0000002"]["last_error_code"]) == ("in_transit", "timeout")

    assert counts(wh.load(shuffled)) == (0, 0, 3)
    # Stored parcels with several versions in a batch: counted once each.
    again = [failed(1, "timeout", T0 + 5 * HOUR), delivered(1, at=T0 + 6 * HOUR),
             result(3, fetched_at=T0 - HOUR), failed(3, "timeout", T0 - HOUR / 2), result(4), result(4)]
    assert counts(wh.load(again)) == (1, 1, 1)


def test_tables_of_the_previous_release_get_the_new_columns(make_warehouse):
    """Tables created without ``last_error_*`` are altered on first use; their rows stay."""
    old = make_warehouse()
    dialect, names = old.dialect, old.names
    old_spec = TableSpec(PARCELS.name, tuple(c for c in PARCELS.columns if c[0] not in LAST_ERROR_COLUMNS),
                         PARCELS.key, PARCELS.required)
    width = len(old_spec.columns)
    stored = parcel_row(delivered(1), dialect.ts_param)[:width]
    with old.transaction() as (_, cur):
        for statement in dialect.ddl(names):
            if PARCELS.name in statement and "CREATE TABLE" in statement and "events" not in statement:
                statement = dialect.create_table(names, old_spec)
            cur.execute(statement)
        cur.execute(f"INSERT INTO {names.table(PARCELS)} ({', '.join(n for n, _ in old_spec.columns)}) "
                    f"{dialect.values(1, width)}", list(stored))

    wh = make_warehouse()  # a new instance: the first use of this release
    assert counts(wh.load([failed(1, "timeout", T0 + HOUR), failed(2, "timeout", T0)])) == (1, 1, 0)
    row = rows(wh)
    assert (row["TN0000001"]["status"], row["TN0000001"]["last_error_code"]) == ("delivered", "timeout")
    assert row["TN0000002"]["status"] == "unknown"
    with wh.connect() as conn:
        header = wh.query(conn, f"SELECT * FROM {names.table(PARCELS)} WHERE 1 = 0")
    assert header == []
    with wh.connect() as conn, dialect.cursor(conn) as cur:
        cur.execute(f"SELECT * FROM {names.table(PARCELS)} WHERE 1 = 0")
        assert [d[0] for d in cur.description] == list(PARCELS.names)
        cur.fetchall()
        dialect.end_read(conn)
    make_warehouse().create_tables()  # and again: nothing left to add
