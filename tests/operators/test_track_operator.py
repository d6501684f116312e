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
