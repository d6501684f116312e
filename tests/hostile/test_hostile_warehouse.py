"""Issue 16, point 1: what a hostile answer hands the warehouse loads on SQLite and PostgreSQL.

``TrackParcelsOperator`` tracks 3,000 parcels in chunks of 1,000 through the hostile server:
one batch in the third chunk is answered with JSON nested 100,000 deep; every other answer
carries NaN, Infinity, 1e400, a 40-digit integer, NUL characters, lone surrogates and event
times of year 10000. Before: a ``RecursionError`` failed the task at the third chunk, every
retry again, with 2,000 rows loaded and 1,000 parcels never reaching the warehouse.
"""

from __future__ import annotations

import json

import pytest
from airflow.sdk import BaseHook
from helpers.hostile_server import add_odd_values, poison_times
from hostile_support import numbers

from airflow_provider_parcels.operators.tracking import TrackParcelsOperator

PARCELS = 3_000


def _odd_and_timeless(body):
    return poison_times("9999-12-31T23:59:59-14:00")(add_odd_values()(body))


@pytest.mark.parametrize("warehouse", ["sqlite", "postgres"])
def test_a_poisoned_run_loads_every_parcel_and_every_value(warehouse, request, hostile, hostile_conn):
    warehouse_conn_id = request.getfixturevalue(f"{warehouse}_conn_id")
    parcels = numbers("trackflow", "DLV", PARCELS)
    victim = parcels[2_500]["tracking_number"]
    hostile.mode("deep", only=victim, otherwise={"mode": "proxy", "transform": _odd_and_timeless})
    conn_id = hostile_conn("trackflow")
    operator = TrackParcelsOperator(task_id="hostile", conn_id=conn_id, parcels=parcels,
                                    warehouse_conn_id=warehouse_conn_id, chunk_size=1_000,
                                    hook_kwargs={"max_retries": 1})

    out = operator.execute(context={})  # before: RecursionError at the third chunk

    db = BaseHook.get_connection(warehouse_conn_id).get_hook()
    assert db.get_first("SELECT COUNT(*) FROM parcel_tracking")[0] == PARCELS
    errors = dict(db.get_records(
        "SELECT error_code, COUNT(*) FROM parcel_tracking WHERE error_code IS NOT NULL GROUP BY error_code"))
    assert errors == {"malformed_response": 50}, errors  # the poisoned batch of 50, and only it
    assert out["parcels"] == PARCELS and out["error_codes"] == {"malformed_response": 50}, out
    first = parcels[0]["tracking_number"]  # test-made: [A-Z0-9] only, safe to inline in SQL
    row = db.get_first(f"SELECT raw, status FROM parcel_tracking WHERE tracking_number = '{first}'")
    raw = json.loads(row[0], parse_constant=lambda name: pytest.fail(f"{name} reached the warehouse"))
    assert raw["hostile"]["big"] == 10**40 and raw["hostile"]["nul"] == "a\ufffdb", raw["hostile"]
    assert row[1] == "delivered"
    events = db.get_records("SELECT occurred_at, occurred_at_local, description FROM parcel_tracking_events "
                            f"WHERE tracking_number = '{first}'")
    assert events and all(e[0] is None and e[1] == "9999-12-31T23:59:59-14:00" for e in events), events[:2]
    assert all("\x00" not in (e[2] or "") for e in events)
