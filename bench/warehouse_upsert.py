"""
Benchmark: loading tracking results into the warehouse tables, ours versus plain ``executemany``.

Loads 100,000 parcels with 10 events each (100,000 parcel rows, 1,000,000 event rows) in chunks
of 10,000 results, then a refresh of the same parcels fetched an hour later with one new event
each, into

- SQLite (a file in a temporary directory), and
- PostgreSQL (a throw-away server this script starts with ``initdb``/``pg_ctl``, as the
  ``postgres`` user when run as root; or the server of ``PARCELS_BENCH_POSTGRES_DSN``, where it
  creates and drops its own databases).

Methods, each on its own fresh tables, timed in the same run on the same chunks, interleaved
chunk by chunk so that other load on the machine hits them alike:

- ``ours``: ``ParcelWarehouse.load`` (multi-row upserts; ``COPY`` + one ``INSERT ... SELECT`` on
  PostgreSQL for chunks of 1,000 rows or more), including its inserted/updated/unchanged counts;
- ``ours, VALUES only`` (PostgreSQL): the same with the ``COPY`` path switched off;
- ``baseline``: ``cursor.executemany`` of the single-row upsert (same guard) and the single-row
  event insert, one transaction per chunk, over the connection the hook hands out.

Every method pays for the same row mapping (``TrackingResult`` -> rows), which is also timed on
its own (``row mapping only``); building the results is not timed. ``--quick`` loads ten times
fewer rows (under a minute). Prints a markdown table and writes JSON (``--json``, default
``bench/results/warehouse.json``).

    python bench/warehouse_upsert.py [--quick] [--json PATH] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Airflow reads its configuration at import: give it a throw-away home before anything imports it.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="parcels-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

from airflow_provider_parcels.models import ParcelStatus, TrackingEvent, TrackingResult  # noqa: E402
from airflow_provider_parcels.warehouse import LoadCounts, ParcelWarehouse  # noqa: E402
from airflow_provider_parcels.warehouse.rows import EVENTS, PARCELS, build_rows  # noqa: E402

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
CHUNK = 10_000
MAPPING = "row mapping only"
EVENTS_PER_PARCEL = 10
STATUSES = [ParcelStatus.IN_TRANSIT, ParcelStatus.OUT_FOR_DELIVERY, ParcelStatus.DELIVERED, ParcelStatus.PENDING]
PLACES = ["Seoul Hub", "Incheon Airport", "Frankfurt (Main)", "Zürich Mülligen", "Köln, DE", "東京"]


# data ---------------------------------------------------------------------------------------
def make_chunk(start: int, count: int, refresh: bool) -> list[TrackingResult]:
    """Results ``start .. start+count``; ``refresh`` is the same parcels an hour later, one event more."""
    fetched = T0 + timedelta(hours=1 if refresh else 0)
    results = []
    for i in range(start, start + count):
        n_events = EVENTS_PER_PARCEL + (1 if refresh else 0)
        events = tuple(
            TrackingEvent(
                occurred_at=T0 - timedelta(hours=6 * (EVENTS_PER_PARCEL - k), minutes=i % 60),
                occurred_at_local=None,
                status=ParcelStatus.IN_TRANSIT,
                provider_status="transit",
                description=f"Scan {k}: parcel processed at {PLACES[(i + k) % len(PLACES)]}",
                location=PLACES[(i + k) % len(PLACES)],
                raw={"seq": k, "code": "IT", "place": PLACES[(i + k) % len(PLACES)]},
            )
            for k in range(n_events)
        )
        status = STATUSES[(i + refresh) % len(STATUSES)]
        results.append(
            TrackingResult(
                provider="trackingmore",
                carrier=("dhl", "ups", "kr.cj")[i % 3],
                tracking_number=f"BENCH{i:09d}",
                status=status,
                provider_status=status.value,
                status_text=f"{status.value} at {PLACES[i % len(PLACES)]}",
                client_id=f"order-{i}",
                carrier_name="Carrier",
                estimated_delivery=T0 + timedelta(days=i % 5),
                origin_country="KR",
                destination_country="DE",
                events=events,
                fetched_at=fetched,
                raw={"number": f"BENCH{i:09d}", "status": status.value, "events": n_events},
            )
        )
    return results


# methods ------------------------------------------------------------------------------------
def load_ours(wh: ParcelWarehouse, results: list[TrackingResult]) -> LoadCounts:
    return wh.load(results)


def load_baseline(wh: ParcelWarehouse, results: list[TrackingResult]) -> LoadCounts:
    """Plain ``executemany`` of single-row upserts, one transaction per chunk."""
    dialect = wh.dialect
    parcels, events = build_rows(results, dialect.ts_param)
    upsert = dialect.upsert_sql(wh.names, dialect.values(1, len(PARCELS.names)))
    insert = dialect.insert_events_sql(wh.names, dialect.values(1, len(EVENTS.names)))
    with wh.transaction() as (_, cur):
        cur.executemany(upsert, parcels)
        cur.executemany(insert, events)
    return LoadCounts()


@dataclass
class Measurement:
    database: str
    method: str
    phase: str
    parcel_rows: int
    event_rows: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return (self.parcel_rows + self.event_rows) / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "method": self.method,
            "phase": self.phase,
            "parcel_rows": self.parcel_rows,
            "event_rows": self.event_rows,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s),
            "parcel_rows_per_s": round(self.parcel_rows / self.seconds),
            "counts": self.counts,
        }


def map_only(wh: ParcelWarehouse, results: list[TrackingResult]) -> LoadCounts:
    """The row mapping every method pays for (``TrackingResult`` -> rows), without the database."""
    build_rows(results, wh.dialect.ts_param)
    return LoadCounts()


def run_interleaved(database: str, methods: list[tuple[str, ParcelWarehouse, Any]], parcels: int) -> list[Measurement]:
    """
    Time every method on the same chunks, interleaved chunk by chunk (in rotating order), so load
    from other processes on the machine hits all methods alike.
    """
    for _, wh, _ in methods:
        wh.create_tables()
    out = []
    for phase, refresh in (("insert", False), ("refresh", True)):
        seconds = [0.0] * len(methods)
        counts = [LoadCounts() for _ in methods]
        event_rows = 0
        for n, start in enumerate(range(0, parcels, CHUNK)):
            chunk = make_chunk(start, min(CHUNK, parcels - start), refresh)  # not timed
            event_rows += sum(len(r.events) for r in chunk)
            for k in [(n + i) % len(methods) for i in range(len(methods))]:
                _, wh, load = methods[k]
                began = time.perf_counter()
                counts[k] += load(wh, chunk)
                seconds[k] += time.perf_counter() - began
        for k, (method, _, _) in enumerate(methods):
            m = Measurement(database, method, phase, parcels, event_rows, seconds[k], counts[k].to_dict())
            print(
                f"  {database:10s} {method:22s} {phase:8s} {m.seconds:7.2f} s  {m.rows_per_s:>10,.0f} rows/s",
                flush=True,
            )
            out.append(m)
    expected = (parcels, parcels * (EVENTS_PER_PARCEL + 1))
    for method, wh, load in methods:
        stored = (len_table(wh, PARCELS.name), len_table(wh, EVENTS.name))
        if load is not map_only and stored != expected:
            raise SystemExit(f"{database} {method}: stored {stored} rows, expected {expected}")
    return out


def len_table(wh: ParcelWarehouse, table: str) -> int:
    with wh.connect() as conn:
        return wh.query(conn, f"SELECT count(*) FROM {wh.table_name(table)}")[0][0]


def set_connection(conn_id: str, **fields: Any) -> str:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)
    return conn_id


# SQLite -------------------------------------------------------------------------------------
def bench_sqlite(parcels: int, workdir: Path) -> list[Measurement]:
    methods = []
    for i, (method, load) in enumerate(
        (("ours", load_ours), ("baseline executemany", load_baseline), (MAPPING, map_only))
    ):
        conn_id = set_connection(f"bench_sqlite_{i}", conn_type="sqlite", host=str(workdir / f"bench_{i}.db"))
        methods.append((method, ParcelWarehouse(conn_id), load))
    return run_interleaved("sqlite", methods, parcels)


# PostgreSQL ---------------------------------------------------------------------------------
class ThrowAwayPostgres:
    """A PostgreSQL cluster in a temporary directory, default settings, stopped and deleted on exit."""

    def __init__(self) -> None:
        found = shutil.which("initdb") or max(glob.glob("/usr/lib/postgresql/*/bin/initdb"), default=None)
        if not found:
            raise RuntimeError("no initdb found (apt-get install postgresql, or set PARCELS_BENCH_POSTGRES_DSN)")
        self.bindir = Path(found).parent
        self.workdir = Path(tempfile.mkdtemp(prefix="parcels-bench-pg-", dir="/tmp"))
        self.as_root = os.geteuid() == 0
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]

    def _run(self, *args: str) -> None:
        extra: dict[str, Any] = {}
        if self.as_root:  # PostgreSQL refuses to run as root
            user = pwd.getpwnam("postgres")
            extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.workdir,
            env={**os.environ, "LC_ALL": "C", "HOME": str(self.workdir)},
            check=True,
            capture_output=True,
            **extra,
        )

    def __enter__(self) -> str:
        if self.as_root:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run("initdb", "-D", "data", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale")
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", "data", "-l", "server.log", "-o", options, "-w", "start")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", "data", "-m", "fast", "-w", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def database(admin_dsn: str, name: str) -> Iterator[dict[str, Any]]:
    """A fresh database on the server of ``admin_dsn``, as Airflow connection fields."""
    import psycopg2
    from psycopg2.extensions import parse_dsn

    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}"')
        params = parse_dsn(admin_dsn)
        yield {
            "conn_type": "postgres",
            "host": params.get("host", "127.0.0.1"),
            "port": int(params.get("port", 5432)),
            "login": params.get("user"),
            "password": params.get("password"),
            "schema": name,
        }
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        admin.close()


def bench_postgres(parcels: int, admin_dsn: str) -> tuple[list[Measurement], str, str]:
    specs = (
        ("ours", load_ours, None),
        ("ours, VALUES only", load_ours, 10**12),
        ("baseline executemany", load_baseline, None),
        (MAPPING, map_only, None),
    )
    with contextlib.ExitStack() as stack:
        methods = []
        for i, (method, load, threshold) in enumerate(specs):
            fields = stack.enter_context(database(admin_dsn, f"parcels_bench_{i}"))
            conn_id = set_connection(f"bench_pg_{i}", **{k: v for k, v in fields.items() if v is not None})
            wh = ParcelWarehouse(conn_id)
            if threshold:
                wh.copy_threshold = threshold
            methods.append((method, wh, load))
        with methods[0][1].connect() as conn:
            version = methods[0][1].query(conn, "SHOW server_version")[0][0]
            driver = type(conn).__module__.split(".")[0]
        return run_interleaved("postgresql", methods, parcels), version, driver


# report -------------------------------------------------------------------------------------
def markdown(results: list[Measurement]) -> str:
    baseline = {(m.database, m.phase): m.seconds for m in results if m.method.startswith("baseline")}
    lines = [
        "| database | method | pass | parcel rows | event rows | seconds | rows/s | vs baseline |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        speedup = f"{baseline.get((m.database, m.phase), m.seconds) / m.seconds:.2f}x"
        method = m.method
        if m.method == MAPPING:  # part of every other line: the database's share is the rest
            method, speedup = f"({m.method}, included above)", ""
        lines.append(
            f"| {m.database} | {method} | {m.phase} | {m.parcel_rows:,} | {m.event_rows:,} | "
            f"{m.seconds:.2f} | {m.rows_per_s:,.0f} | {speedup} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer rows (10,000 parcels, 100,000 events)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "warehouse.json"), help="JSON output")
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    # A plain kill must still stop and delete the throw-away server (the with-blocks do that).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parcels = 10_000 if args.quick else 100_000
    print(f"loading {parcels:,} parcels x {EVENTS_PER_PARCEL} events in chunks of {CHUNK:,} results", flush=True)

    results: list[Measurement] = []
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    with tempfile.TemporaryDirectory(prefix="parcels-bench-") as workdir:
        results += bench_sqlite(parcels, Path(workdir))
    if not args.skip_postgres:
        external = os.environ.get("PARCELS_BENCH_POSTGRES_DSN")
        with contextlib.nullcontext(external) if external else ThrowAwayPostgres() as admin_dsn:
            pg_results, env["postgresql"], env["postgres_driver"] = bench_postgres(parcels, admin_dsn)
            results += pg_results

    table = markdown(results)
    print()
    print(table)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "mode": "quick" if args.quick else "full",
        "chunk_results": CHUNK,
        "events_per_parcel": EVENTS_PER_PARCEL,
        "environment": env,
        "results": [m.to_dict() for m in results],
        "markdown": table,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
