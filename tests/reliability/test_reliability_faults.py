"""Thousands of parcels through the sandbox's fault injection, loaded by TrackParcelsOperator.

Each API tracks the same parcels twice, through two sandboxes with the same pinned clock: once
fault-free, once with the issue's mix (10% 429, 5% 5xx, 2% timeouts, 1% malformed JSON, 1%
connection resets), each run into its own warehouse. Then, per API:

- ``parcel_tracking`` holds exactly one row per parcel handed in: none lost, none duplicated,
  no stray rows, and the operator's load counts agree (every row inserted once, never rewritten);
- every parcel whose calls kept failing after the bounded retries is an error row with a code
  (``rate_limited``, ``server_error``, ...), status ``unknown``, and no events;
- every other parcel has exactly the row and the events of the fault-free run (every column but
  ``fetched_at``; in ``raw`` only TrackFlow's per-answer ``last_updated`` is ignored).

Sizes: 10,000 parcels for the batch APIs (WhereParcel 5 per call, TrackingMore 40, TrackFlow
50). parcelLab and ShipEngine answer one parcel per call, and every 429 (``Retry-After: 1``)
rightly pauses the whole connection for a second: measured here, 2,000 such parcels take 42 s
with 64 requests in flight, so 10,000 would take about 190 s each. They run 1,000 parcels each
(about 1,200 calls with the retries), which keeps the whole suite near its 3-minute budget.

Where the time goes: the faulty runs mostly wait out those pauses, the fault-free runs use CPU.
So the five faulty runs go at once while the fault-free runs go one after the other beside
them, and both sandboxes serve from processes of their own. TrackFlow's faulty run loads into
PostgreSQL (chunks of 5,000: the loader's ``COPY`` path), the others into SQLite files.
Retries are capped at 2 (3 attempts) so that some parcels do run out of attempts and the error
rows are exercised; the client timeout (1 s) is below the sandbox's timeout delay (1.5 s).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from reliability_support import (
    APIS,
    FAST,
    FAULT_CODES,
    FAULT_SPEC,
    FIGURES,
    RemoteSandbox,
    comparable,
    connection_json,
    env,
    env_name,
    events_by_number,
    parcel_rows_by_number,
    parcels_for,
    sqlite_conn,
)

from airflow_provider_parcels.operators.tracking import TrackParcelsOperator
from airflow_provider_parcels.warehouse import ParcelWarehouse

pytestmark = pytest.mark.large

SIZES = {"whereparcel": 10_000, "trackingmore": 10_000, "trackflow": 10_000, "parcellab": 1_000,
         "shipengine": 1_000}
#: Parcels per operator chunk: at least two chunks per run, each one load transaction.
CHUNKS = {"whereparcel": 5000, "trackingmore": 5000, "trackflow": 5000, "parcellab": 500, "shipengine": 500}
POSTGRES_API = "trackflow"
FAULTY_EXTRA = {**FAST, "max_retries": 2, "timeout": 1.0, "max_concurrency": 128}
CLEAN_EXTRA = {**FAST, "timeout": 30.0}


@dataclass
class Run:
    """One API's fault-free and faulty runs, as the checks read them."""

    api: str
    parcels: list[dict[str, str]]
    clean_summary: dict[str, Any]
    faulty_summary: dict[str, Any]
    clean_parcels: dict[str, dict[str, Any]]
    clean_events: dict[str, set]
    faulty_parcels: dict[str, dict[str, Any]]
    faulty_events: dict[str, set]
    faulty_row_count: int
    sandbox_stats: dict[str, Any]
    seconds: float
    dialect: str


def _track(api: str, conn_id: str, wh_conn_id: str, parcels: list[dict]) -> tuple[dict[str, Any], float]:
    operator = TrackParcelsOperator(task_id=f"track_{conn_id}", conn_id=conn_id, parcels=parcels,
                                    warehouse_conn_id=wh_conn_id, chunk_size=CHUNKS[api])
    started = time.monotonic()
    summary = operator.execute(context={})
    return summary, time.monotonic() - started


def _dumps(conn_id: str) -> tuple[dict[str, dict[str, Any]], dict[str, set], int]:
    wh = ParcelWarehouse(conn_id)
    rows = wh.dump("parcel_tracking")
    return parcel_rows_by_number(rows), events_by_number(wh.dump("parcel_tracking_events")), len(rows)


def _postgres_dsn(request: pytest.FixtureRequest) -> str | None:
    """The session's PostgreSQL, or None when it cannot be had (the PostgreSQL test then reports why)."""
    try:
        return request.getfixturevalue("postgres_dsn")
    except (pytest.skip.Exception, pytest.fail.Exception):
        return None


@pytest.fixture(scope="module")
def fault_runs(request, tmp_path_factory) -> dict[str, Run]:
    """Every API's fault-free and faulty runs, read back from their warehouses."""
    from helpers.postgres import create_database, drop_database
    from psycopg2.extensions import parse_dsn

    frozen = time.time()
    clean, faulty = RemoteSandbox(frozen), RemoteSandbox(frozen)
    folder = tmp_path_factory.mktemp("fault_runs")
    dsn = _postgres_dsn(request)
    database = f"rel_{uuid.uuid4().hex[:12]}"
    variables: dict[str, str] = {}
    for api in APIS:
        variables[env_name(f"rel_clean_{api}")] = connection_json(clean, api, **CLEAN_EXTRA)
        variables[env_name(f"rel_faulty_{api}")] = connection_json(faulty, api, **FAULTY_EXTRA)
        variables[env_name(f"rel_wh_clean_{api}")] = sqlite_conn(folder / f"clean_{api}.db")
        variables[env_name(f"rel_wh_faulty_{api}")] = sqlite_conn(folder / f"faulty_{api}.db")
    if dsn is not None:
        create_database(dsn, database)
        params = parse_dsn(dsn)
        variables[env_name(f"rel_wh_faulty_{POSTGRES_API}")] = json.dumps({
            "conn_type": "postgres", "host": params.get("host", "127.0.0.1"), "port": int(params.get("port", 5432)),
            "login": params.get("user", "postgres"), "password": params.get("password"), "schema": database})
    parcels = {api: parcels_for(api, SIZES[api], "F") for api in APIS}
    try:
        faulty.configure(faults=FAULT_SPEC, seed=20_260_615, timeout_delay=1.5)
        with env(variables), ThreadPoolExecutor(len(APIS) + 1) as pool:
            faulty_futures = {
                api: pool.submit(_track, api, f"rel_faulty_{api}", f"rel_wh_faulty_{api}", parcels[api])
                for api in APIS
            }
            clean_runs = {api: _track(api, f"rel_clean_{api}", f"rel_wh_clean_{api}", parcels[api]) for api in APIS}
            faulty_runs = {api: future.result() for api, future in faulty_futures.items()}
            stats = faulty.stats()
            runs = {}
            for api in APIS:
                clean_rows, clean_events, _ = _dumps(f"rel_wh_clean_{api}")
                faulty_rows, faulty_events, count = _dumps(f"rel_wh_faulty_{api}")
                runs[api] = Run(
                    api=api, parcels=parcels[api], clean_summary=clean_runs[api][0],
                    faulty_summary=faulty_runs[api][0], clean_parcels=clean_rows, clean_events=clean_events,
                    faulty_parcels=faulty_rows, faulty_events=faulty_events, faulty_row_count=count,
                    sandbox_stats=stats[api], seconds=faulty_runs[api][1],
                    dialect="postgres" if dsn is not None and api == POSTGRES_API else "sqlite",
                )
    finally:
        clean.stop()
        faulty.stop()
        if dsn is not None:
            drop_database(dsn, database)
    FIGURES["faults"] = {api: {"parcels": len(run.parcels), "rows": run.faulty_row_count, "dialect": run.dialect,
                               "seconds": round(run.seconds, 1), "requests": run.sandbox_stats["requests"],
                               "faults": run.sandbox_stats["faults"],
                               "lost": len({p["tracking_number"] for p in run.parcels} - set(run.faulty_parcels)),
                               "errors": dict(Counter(r["error_code"] for r in run.faulty_parcels.values()
                                                      if r["error_code"] in FAULT_CODES))}
                         for api, run in runs.items()}
    return runs


# ------------------------------------------------------------------ the checks


def check_one_row_per_parcel(run: Run) -> None:
    expected = {p["tracking_number"] for p in run.parcels}
    assert len(expected) == len(run.parcels) == SIZES[run.api]
    assert run.faulty_row_count == len(run.parcels), "parcel_tracking does not hold one row per parcel"
    assert set(run.faulty_parcels) == expected, "rows lost or stray rows"
    assert set(run.faulty_events) <= expected, "events of parcels nobody asked for"
    # the operator saw and loaded every parcel exactly once: nothing rewritten, nothing skipped
    summary = run.faulty_summary
    assert summary["parcels"] == len(run.parcels)
    assert summary["rows"]["inserted"] == len(run.parcels)
    assert summary["rows"]["updated"] == 0 and summary["rows"]["unchanged"] == 0
    assert sum(len(events) for events in run.faulty_events.values()) == summary["rows"]["events_inserted"]


def check_failures_are_error_rows(run: Run) -> None:
    codes = Counter(row["error_code"] for row in run.faulty_parcels.values())
    for number, row in run.faulty_parcels.items():
        assert (row["error_code"] is None) == (row["error_message"] is None), row
        if row["error_code"] in FAULT_CODES:
            assert row["status"] == "unknown", row
            assert "after retries" in row["error_message"], row
            assert row["event_count"] == 0 and number not in run.faulty_events, row
        else:
            assert row["error_code"] in (None, "not_found"), row
    # retries are bounded but real: only a small share of parcels may run out of attempts
    failed = sum(count for code, count in codes.items() if code in FAULT_CODES)
    assert failed <= 0.10 * len(run.parcels), codes
    assert run.faulty_summary["api"]["retries"] > 0
    assert run.faulty_summary["errors"] == sum(count for code, count in codes.items() if code is not None)
    # the fault-free run had no transport error at all
    assert not {row["error_code"] for row in run.clean_parcels.values()} & FAULT_CODES


def check_same_rows_as_fault_free(run: Run) -> None:
    compared = 0
    for number, row in run.faulty_parcels.items():
        if row["error_code"] in FAULT_CODES:
            continue
        assert comparable(row) == comparable(run.clean_parcels[number]), number
        assert run.faulty_events.get(number, set()) == run.clean_events.get(number, set()), number
        compared += 1
    assert compared >= 0.95 * len(run.parcels)
    # the parcels were varied: several outcomes, not-found ones included, and events to compare
    statuses = Counter(row["status"] for row in run.clean_parcels.values())
    assert len(statuses) >= 6 and statuses["not_found"] > 0, statuses
    assert sum(len(events) for events in run.clean_events.values()) > len(run.parcels)


def check_faults_injected(run: Run) -> None:
    faults = run.sandbox_stats["faults"]
    assert faults.get("429", 0) > 0 and faults.get("503", 0) > 0, faults
    assert run.sandbox_stats["requests"] > run.clean_summary["api"]["requests"], "no request was retried"


CHECKS = [check_one_row_per_parcel, check_failures_are_error_rows, check_same_rows_as_fault_free,
          check_faults_injected]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("api", [api for api in APIS if api != POSTGRES_API])
def test_faults_sqlite(api, check, fault_runs):
    assert fault_runs[api].dialect == "sqlite"
    check(fault_runs[api])


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_faults_trackflow_postgres(check, fault_runs, postgres_dsn):
    run = fault_runs[POSTGRES_API]
    assert run.dialect == "postgres"
    check(run)


def test_every_fault_kind_was_injected(fault_runs):
    """Across the runs, each of the five fault kinds hit the clients many times."""
    total = Counter()
    for run in fault_runs.values():
        total.update(run.sandbox_stats["faults"])
    for kind in ("429", "503", "timeout", "badjson", "reset"):
        assert total[kind] >= 5, total
