"""TrackParcelsOperator in real DAGs (dag.test) against the sandbox, into a real SQLite file."""

from __future__ import annotations

import sqlite3

import pytest
from helpers.dags import run_dag

from airflow_provider_parcels.hooks.ratelimit import RateLimiter


@pytest.fixture
def track_api(parcels_sandbox_clean, monkeypatch):
    def use(api: str, **extra):
        name, value = parcels_sandbox_clean.conn_env(api, conn_id="track_api", **extra)
        monkeypatch.setenv(name, value)
        RateLimiter._registry.clear()
        return parcels_sandbox_clean

    return use


def parcels(n: int, carrier: str = "usps") -> list[dict]:
    prefixes = ["DLV", "TRN", "EXC", "NFD", "OFD"]
    return [{"carrier": carrier, "tracking_number": f"{prefixes[i % 5]}OP{i:05d}"} for i in range(n)]


def rows(db: str, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def db_path(sqlite_conn_id, tmp_path) -> str:
    return str(tmp_path / "warehouse.db")


def test_operator_loads_one_row_per_parcel_then_tracks_open_ones(track_api, sqlite_conn_id, tmp_path):
    sandbox = track_api("shipengine")
    run = run_dag("operators_track_native", conf={"conn_id": "track_api", "parcels": parcels(20)})
    assert run.state == "success"
    db = db_path(sqlite_conn_id, tmp_path)
    got = dict(rows(db, "SELECT tracking_number, status FROM parcel_tracking"))
    assert len(got) == 20
    assert got["DLVOP00000"] == "delivered" and got["NFDOP00003"] == "not_found"
    assert rows(db, "SELECT error_code FROM parcel_tracking WHERE tracking_number = 'NFDOP00003'") == [
        ("not_found",)]
    events = rows(db, "SELECT COUNT(*) FROM parcel_tracking_events")[0][0]
    assert events > 0
    # the second task re-tracked only the open parcels: 20 + (20 - 8 terminal) requests
    assert sandbox.stats()["shipengine"]["requests"] == 20 + 12
    # running the whole DAG again leaves the same rows (idempotent upserts)
    before = rows(db, "SELECT * FROM parcel_tracking_events ORDER BY 1, 2, 3, 4")
    assert run_dag("operators_track_native", conf={"conn_id": "track_api", "parcels": parcels(20)}).state == "success"
    assert rows(db, "SELECT * FROM parcel_tracking_events ORDER BY 1, 2, 3, 4") == before
    assert rows(db, "SELECT COUNT(*) FROM parcel_tracking")[0][0] == 20


def test_operator_with_table_prefix(track_api, sqlite_conn_id, tmp_path):
    track_api("whereparcel")
    run = run_dag("operators_track_native", conf={"conn_id": "track_api", "parcels": parcels(6, "kr.cj"),
                                                  "prefix": "wp_"})
    assert run.state == "success"
    assert rows(db_path(sqlite_conn_id, tmp_path), "SELECT COUNT(*) FROM wp_parcel_tracking")[0][0] == 6


def test_mapped_copies_share_the_quota(track_api, sqlite_conn_id, tmp_path):
    sandbox = track_api("trackflow", requests_per_minute=600)
    run = run_dag("operators_track_mapped", conf={"parcels": parcels(30, "ups")})
    assert run.state == "success"
    assert rows(db_path(sqlite_conn_id, tmp_path), "SELECT COUNT(*) FROM parcel_tracking")[0][0] == 30
    assert sandbox.stats()["trackflow"]["rate_limited"] == 0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_conn_id(request: pytest.FixtureRequest) -> str:
    """An empty warehouse connection, one test per database."""
    return request.getfixturevalue(f"{request.param}_conn_id")


def track(warehouse_conn_id: str, parcels: object, task_id: str = "track") -> dict:
    """Run the operator once, as a task would, against the ``track_api`` connection."""
    from airflow_provider_parcels.operators.tracking import TrackParcelsOperator

    operator = TrackParcelsOperator(task_id=task_id, conn_id="track_api", parcels=parcels,
                                    warehouse_conn_id=warehouse_conn_id)
    return operator.execute(context={})


def test_open_parcels_are_tracked_once_per_run(track_api, warehouse_conn_id):
    """Issue 16: 3,000 pending parcels that the API answers as in transit cost 60 batch requests, not 100."""
    from datetime import datetime, timedelta, timezone

    from airflow_provider_parcels.models import ParcelStatus, TrackingResult
    from airflow_provider_parcels.operators.tracking import OPEN_PARCELS
    from airflow_provider_parcels.warehouse import ParcelWarehouse

    sandbox = track_api("trackflow", plan="enterprise")  # batches of 50, no quota
    earlier = datetime.now(timezone.utc) - timedelta(hours=1)
    wh = ParcelWarehouse(warehouse_conn_id)
    wh.load(TrackingResult("trackflow", "ups", f"TRNONCE{i:05d}", ParcelStatus.PENDING, fetched_at=earlier)
            for i in range(3000))

    out = track(warehouse_conn_id, OPEN_PARCELS)
    assert sandbox.stats()["trackflow"]["requests"] == 3000 // 50
    assert (out["parcels"], out["by_status"], out["errors"]) == (3000, {"in_transit": 3000}, 0)
    assert out["rows"]["updated"] == 3000
    assert wh.status_counts() == {"in_transit": 3000}


def test_a_failing_api_does_not_lose_the_warehouse_state(track_api, warehouse_conn_id):
    """Issue 16: after every request fails, delivered parcels stay delivered, late ones stay late."""
    from airflow_provider_parcels.warehouse import ParcelWarehouse

    sandbox = track_api("trackflow", plan="enterprise", max_retries=0)
    wanted = parcels(20, "ups")
    track(warehouse_conn_id, wanted)
    wh = ParcelWarehouse(warehouse_conn_id)
    before = {row[2]: row for row in wh.dump("parcel_tracking")}
    late, open_before = wh.late_parcels(), list(wh.open_parcels())
    assert any(r["status"] == "exception" for r in late) and before["DLVOP00000"][4] == "delivered"

    sandbox.configure(faults="503=1")
    out = track(warehouse_conn_id, wanted)
    assert out["errors"] == 20 and out["rows"] == {"inserted": 0, "updated": 20, "unchanged": 0,
                                                   "events_inserted": 0, "events_unchanged": 0}
    after = {row[2]: row for row in wh.dump("parcel_tracking")}
    assert {n: row[:-3] for n, row in after.items()} == {n: row[:-3] for n, row in before.items()}
    assert {row[-3] for row in after.values()} == {"server_error"}  # last_error_code, beside the state
    assert wh.late_parcels() == late
    assert list(wh.open_parcels()) == open_before
