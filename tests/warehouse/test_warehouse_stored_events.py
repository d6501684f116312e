"""A load reads the event ids stored for its parcels first and builds no row for those events."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from wh_factories import T0, event, mixed, result

from airflow_provider_parcels.warehouse import rows


def test_only_new_events_are_built_and_written(make_warehouse, monkeypatch):
    wh = make_warehouse()
    first = [result(i, events=4) for i in range(30)] + mixed(40, start=100)
    wh.load(first)
    stored = wh.dump("parcel_tracking_events")

    built: list[int] = []
    original = rows.slice_rows

    def spy(groups, ts, stored_ids=None):
        got = original(groups, ts, stored_ids)
        built.append(len(got[1]))
        return got

    monkeypatch.setattr("airflow_provider_parcels.warehouse.loader.slice_rows", spy)
    # An hour later: parcels 0-9 with one new scan each, 10-19 with a changed text on an old scan
    # (a new event id), 20-29 and the mixed ones as they were.
    later = T0 + timedelta(hours=1)
    refresh = (
        [replace(r, fetched_at=later, events=(event(-1, f"new scan of {i}"), *r.events))
         for i, r in enumerate(first[:10])]
        + [replace(r, fetched_at=later, events=(replace(r.events[0], description="edited"), *r.events[1:]))
           for r in first[10:20]]
        + first[20:]
    )  # fmt: skip
    counts = wh.load(refresh)

    assert sum(built) == 20  # only the new and the edited events got rows
    assert counts.events_inserted == 20
    assert counts.events_unchanged == len(stored) - 10  # the edited parcels no longer carry the old scan
    after = wh.dump("parcel_tracking_events")
    assert len(after) == len(stored) + 20
    assert set(stored) <= set(after)  # nothing stored was lost or rewritten
    new_texts = {row[8] for row in after} - {row[8] for row in stored}
    assert new_texts == {f"new scan of {i}" for i in range(10)} | {"edited"}

    # The same load again: every event is stored, none is built.
    built.clear()
    again = wh.load(refresh)
    assert sum(built) == 0
    assert (again.events_inserted, again.events_unchanged) == (0, len(after) - 10)
    assert wh.dump("parcel_tracking_events") == after


def test_a_stored_event_id_is_skipped_only_for_its_own_parcel(make_warehouse):
    wh = make_warehouse()
    one = result(1, events=2)
    wh.load([one])
    # Parcel 2 carries the very same scans (the same event ids) as parcel 1: they are its own, new.
    two = replace(result(2, events=0), events=one.events)
    counts = wh.load([two])
    assert counts.events_inserted == 2
    assert len(wh.dump("parcel_tracking_events")) == 4
