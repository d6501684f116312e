"""Thousands of parcels through the sandbox's fault injection, loaded by TrackParcelsOperator.

Each API tracks the same parcels twice, through two sandboxes with the same pinned clock: once
fault-free, once with the issue's mix (10% 429, 5% 5xx, 2% timeouts, 1% malformed JSON, 1%
connection resets), each into its own warehouse. Then, per API:

- ``parcel_tracking`` holds exactly one row per parcel handed in: none lost, none duplicated,
  no stray rows, and the operator's load counts agree (every row inserted once, never rewritten);
- every parcel whose calls kept failing after the bounded retries is an error row with a code
  (``rate_limited``, ``server_error``, ...), status ``unknown`` and no events;
- every other parcel has exactly the row and the events of the fault-free run (all columns but
  ``fetched_at``).

Sizes: 10,000 parcels for the batch APIs (WhereParcel 5 per call, TrackingMore 40, TrackFlow
50). parcelLab and ShipEngine answer one parcel per call: 10,000 calls with 10% 429s cost about
190 s each here, because every 429 (``Retry-After: 1``) rightly pauses the whole connection for a
second (measured: 2,000 parcels in 42 s, 64 requests in flight). They run 1,000 parcels each
(about 1,250 calls with retries), which keeps the suite within its time budget.

The four SQLite runs go concurrently (their waits are the sandbox's 1 s pauses, not CPU);
TrackFlow runs on its own into PostgreSQL, through the ``COPY`` path of the loader.
Retries are capped at 2 (3 attempts) so that some parcels do run out of attempts and the error
rows are exercised; the client timeout (2 s) is below the sandbox's timeout delay (2.5 s).
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from reliability_support import (
    FAST,
    FAULT_CODES,
    FAULT_SPEC,
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
SQLITE_APIS = ("whereparcel", "trackingmore", "parcellab", "shipengine")
CHUNK = 2500
FAULTY_EXTRA = {**FAST, "max_retries": 2, "timeout": 1.0, "max_concurrency": 128}
CLEAN_EXTRA = {**FAST, "timeout": 10.0}


@dataclass
class Run:
    """One API's fault-free and faulty runs, as the tests read them."""

    api: str
    parcels: list[dict[str, str]]
    clean_summary: dict[str, Any]
    faulty_summary: dict[str, Any]
    clean_parcels: dict[str, dict[str, Any]]
    clean_events: dict[str, set]
    faulty_parcels: dict[str, dict[str, Any]]
    faulty_events: dict[str, set]
    faulty_dump_size: int
    sandbox_stats: dict[str, Any]
    seconds: float
    dialect: str = "sqlite"
    extra: dict[str, Any] = field(default_factory=dict)


FIGURES: dict[str, Run] = {}


def _track(api: str, conn_id: str, wh_conn_id: str, parcels: list[dict]) -> dict[str, Any]:
    operator = TrackParcelsOperator(task_id=f"track_{conn_id}", conn_id=conn_id, parcels=parcels,
                                    warehouse_conn_id=wh_conn_id, chunk_size=CHUNK)
    return operator.execute(context={})


def _dump(conn_id: str) -> tuple[list, list]:
    wh = ParcelWarehouse(conn_id)
    return wh.dump("parcel_tracking"), wh.dump("parcel_tracking_events")


def run_api(api: str, clean: RemoteSandbox, faulty: RemoteSandbox, clean_wh: str, faulty_wh: str,
            dialect: str = "sqlite") -> Run:
    """Track ``SIZES[api]`` parcels fault-free, then with faults; read both warehouses back."""
    parcels = parcels_for(api, SIZES[api], "F")
    started = time.monotonic()
    clean_summary = _track(api, f"rel_clean_{api}", clean_wh, parcels)
    clean_seconds = time.monotonic() - started
    started = time.monotonic()
    faulty_summary = _track(api, f"rel_faulty_{api}", faulty_wh, parcels)
    seconds = time.monotonic() - started
    started = time.monotonic()
    clean_rows, clean_events = _dump(clean_wh)
    faulty_rows, faulty_events = _dump(faulty_wh)
    return Run(
        api=api,
        parcels=parcels,
        clean_summary=clean_summary,
        faulty_summary=faulty_summary,
        clean_parcels=parcel_rows_by_number(clean_rows),
        clean_events=events_by_number(clean_events),
        faulty_parcels=parcel_rows_by_number(faulty_rows),
        faulty_events=events_by_number(faulty_events),
        faulty_dump_size=len(faulty_rows),
        sandbox_stats=faulty.stats()[api],
        seconds=seconds,
        dialect=dialect,
        extra={"clean_seconds": clean_seconds, "dump_seconds": time.monotonic() - started},
    )


def _connections(clean: RemoteSandbox, faulty: RemoteSandbox, api: str) -> dict[str, str]:
    return {
        env_name(f"rel_clean_{api}"): connection_json(clean, api, **CLEAN_EXTRA),
        env_name(f"rel_faulty_{api}"): connection_json(faulty, api, **FAULTY_EXTRA),
    }


@pytest.fixture(scope="module")
def servers():
    frozen = time.time()
    clean, faulty = RemoteSandbox(frozen), RemoteSandbox(frozen)
    faulty.configure(faults=FAULT_SPEC, seed=20_260_615, timeout_delay=1.5)
    try:
        yield clean, faulty
    finally:
        clean.stop()
        faulty.stop()


@pytest.fixture(scope="module")
def sqlite_runs(servers, tmp_path_factory) -> dict[str, Run]:
    """The four SQLite APIs, run at the same time."""
    clean, faulty = servers
    folder = tmp_path_factory.mktemp("fault_runs")
    variables: dict[str, str] = {}
    for api in SQLITE_APIS:
        variables.update(_connections(clean, faulty, api))
        variables[env_name(f"rel_wh_clean_{api}")] = sqlite_conn(folder / f"clean_{api}.db")
        variables[env_name(f"rel_wh_faulty_{api}")] = sqlite_conn(folder / f"faulty_{api}.db")
    with env(variables), ThreadPoolExecutor(len(SQLITE_APIS)) as pool:
        futures = {api: pool.submit(run_api, api, clean, faulty, f"rel_wh_clean_{api}", f"rel_wh_faulty_{api}")
                   for api in SQLITE_APIS}
        runs = {api: future.result() for api, future in futures.items()}
    FIGURES.update(runs)
    return runs


@pytest.fixture
def trackflow_postgres_run(servers, tmp_path, postgres_conn_id) -> Run:
    """TrackFlow fault-free into SQLite, with faults into PostgreSQL (``COPY`` path: chunks of 1000)."""
    clean, faulty = servers
    variables = {**_connections(clean, faulty, "trackflow"),
                 env_name("rel_wh_clean_trackflow"): sqlite_conn(tmp_path / "clean_trackflow.db")}
    with env(variables):
        run = run_api("trackflow", clean, faulty, "rel_wh_clean_trackflow", postgres_conn_id, dialect="postgres")
    FIGURES["trackflow"] = run
    return run


# ------------------------------------------------------------------ the checks, shared by both fixtures


def check_one_row_per_parcel(run: Run) -> None:
    expected = {p["tracking_number"] for p in run.parcels}
    assert len(expected) == len(run.parcels) == SIZES[run.api]
    assert run.faulty_dump_size == len(run.parcels), "parcel_tracking does not hold one row per parcel"
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
    assert failed <= 0.05 * len(run.parcels), codes
    assert run.faulty_summary["api"]["retries"] > 0
    # the fault-free run had no transport error at all
    assert not {row["error_code"] for row in run.clean_parcels.values()} & FAULT_CODES


def check_same_rows_as_fault_free(run: Run) -> None:
    compared = 0
    for number, row in run.faulty_parcels.items():
        clean = run.clean_parcels[number]
        if row["error_code"] in FAULT_CODES:
            continue
        assert comparable(row) == comparable(clean), number
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
@pytest.mark.parametrize("api", SQLITE_APIS)
def test_faults_sqlite(api, check, sqlite_runs):
    check(sqlite_runs[api])


def test_faults_trackflow_postgres(trackflow_postgres_run):
    for check in CHECKS:
        check(trackflow_postgres_run)


def test_every_fault_kind_was_injected(sqlite_runs):
    """Across the concurrent runs, each of the five fault kinds hit the clients many times."""
    total = Counter()
    for run in sqlite_runs.values():
        total.update(run.sandbox_stats["faults"])
    for kind in ("429", "503", "timeout", "badjson", "reset"):
        assert total[kind] >= 5, total


def test_zz_print():
    for api, run in FIGURES.items():
        print(api, round(run.seconds, 1), run.extra, run.faulty_summary["api"], run.sandbox_stats["faults"])
