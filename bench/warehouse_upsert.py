"""
Benchmark: loading tracking results into the warehouse tables, ours versus what a user would
hand-roll, in the same run on the same rows.

Loads 100,000 parcels with 10 events each (100,000 parcel rows, 1,000,000 event rows) in chunks
of 10,000 results, then a refresh of the same parcels fetched an hour later with one new event
each, into SQLite (a file), PostgreSQL (a throw-away server started with ``initdb``/``pg_ctl``,
or the server of ``PARCELS_BENCH_POSTGRES_DSN``) and DuckDB (a file; when ``duckdb`` is installed).

Methods, each on its own fresh tables, interleaved chunk by chunk (in rotating order) so that
other load on the machine hits them alike. The results are built as parsing builds them (event
ids computed and cached on the events, as ``parsing.dedupe_events`` does); that is not timed.

- ``ours``: ``ParcelWarehouse.load``, row building and the inserted/updated/unchanged counts
  included (SQLite: ``executemany`` per table; PostgreSQL: binary ``COPY`` into a stage table +
  one ``INSERT ... ON CONFLICT`` per table; DuckDB: a pandas frame + ``INSERT ... ON CONFLICT``);
- ``ours, MERGE`` (PostgreSQL, DuckDB; with ``--merge``): ``ParcelWarehouse(dialect="merge")``,
  the generic path;
- ``pandas to_sql``: frames built from the results + ``DataFrame.to_sql(if_exists="append")`` into
  keyless tables pandas creates (a plain append: no upsert, no counts; DuckDB: its own
  ``INSERT INTO t SELECT * FROM frame``, as ``to_sql`` needs a SQLAlchemy driver there);
- ``baseline executemany``: ``cursor.executemany`` of the single-row upsert (same rules) and the
  single-row event insert, row building included, one transaction per chunk;
- ``floor``: ready tuples (built before the clock starts): SQLite ``executemany`` with
  ``ON CONFLICT DO NOTHING`` into the same keyed tables; PostgreSQL raw binary ``COPY`` into
  keyless tables of the same columns;
- ``floor, keyed tables`` (PostgreSQL): ready tuples ``COPY``'d into the keyed tables ours writes
  (refresh: through a stage + ``ON CONFLICT DO NOTHING``): what any idempotent loader pays at least;
- ``row mapping only``: ``build_rows`` alone (part of ours and of the baseline).

Then the peak memory of ``ParcelWarehouse.load`` (``tracemalloc``, Python and numpy allocations
over the chunk already built) for chunks of 1,000, 10,000 and 30,000 results (quick: 1,000, 4,000,
12,000), per database. ``--quick`` loads ten times fewer rows. Prints markdown tables and writes JSON (``--json``,
default ``bench/results/warehouse.json``).

    python bench/warehouse_upsert.py [--quick] [--merge] [--json PATH] [--skip-postgres] [--skip-duckdb]
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
import tracemalloc
from collections.abc import Callable, Iterator
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

from airflow_provider_parcels.hooks.parsing import dedupe_events  # noqa: E402
from airflow_provider_parcels.models import ParcelStatus, TrackingEvent, TrackingResult  # noqa: E402
from airflow_provider_parcels.warehouse import LoadCounts, ParcelWarehouse  # noqa: E402
from airflow_provider_parcels.warehouse.rows import EVENTS, PARCELS, build_rows  # noqa: E402

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
CHUNK = 10_000
MAPPING = "row mapping only"
FLOOR = "floor"
MEMORY_CHUNKS = (1_000, 10_000, 30_000)
#: Whether the generic MERGE path is timed too (``--merge``): about 10x slower than ours.
MERGE_TOO = False
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
        events = dedupe_events(
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
Load = Callable[["Target", list[TrackingResult]], LoadCounts]


@dataclass
class Target:
    """Where one method writes: a warehouse on its own tables, plus what the method keeps between chunks."""

    wh: ParcelWarehouse
    state: dict[str, Any] = field(default_factory=dict)


def load_ours(target: Target, results: list[TrackingResult]) -> LoadCounts:
    return target.wh.load(results)


def load_baseline(target: Target, results: list[TrackingResult]) -> LoadCounts:
    """Plain ``executemany`` of single-row upserts, one transaction per chunk."""
    wh = target.wh
    dialect = wh.dialect
    parcels, events = build_rows(results, dialect.ts_param)
    upsert = dialect.upsert_sql(wh.names, dialect.values(1, len(PARCELS.names)))
    insert = dialect.insert_events_sql(wh.names, dialect.values(1, len(EVENTS.names)))
    with wh.transaction() as (_, cur):
        cur.executemany(upsert, parcels)
        cur.executemany(insert, events)
    return LoadCounts()


def map_only(target: Target, results: list[TrackingResult]) -> LoadCounts:
    """The row mapping ours and the baseline pay for (``TrackingResult`` -> rows), without the database."""
    build_rows(results, target.wh.dialect.ts_param)
    return LoadCounts()


def frames(results: list[TrackingResult]) -> tuple[Any, Any]:
    """The two tables as pandas frames, as a user would build them from the results."""
    import pandas as pd

    parcels = pd.DataFrame.from_records(
        [
            (
                r.provider, r.carrier, r.tracking_number, r.client_id, r.status.value, r.provider_status,
                r.status_text, r.carrier_name, r.estimated_delivery, r.delivered_at, len(r.events),
                r.origin_country, r.destination_country, r.fetched_at, json.dumps(dict(r.raw)),
            )
            for r in results
        ],
        columns=[
            "provider", "carrier", "tracking_number", "client_id", "status", "provider_status", "status_text",
            "carrier_name", "estimated_delivery", "delivered_at", "event_count", "origin_country",
            "destination_country", "fetched_at", "raw",
        ],
    )  # fmt: skip
    events = pd.DataFrame.from_records(
        [
            (
                r.provider, r.carrier, r.tracking_number, e.event_id, e.occurred_at, e.occurred_at_local,
                e.status.value, e.provider_status, e.description, e.location, json.dumps(dict(e.raw)),
            )
            for r in results
            for e in r.events
        ],
        columns=list(EVENTS.names),
    )  # fmt: skip
    return parcels, events


def load_pandas(target: Target, results: list[TrackingResult]) -> LoadCounts:
    """``DataFrame.to_sql(if_exists="append")`` into keyless tables (DuckDB: ``INSERT ... SELECT * FROM frame``)."""
    parcels, events = frames(results)
    wh, state = target.wh, target.state
    if wh.dialect.name == "duckdb":
        with wh.connect() as conn:
            for name, frame in (("pd_parcels", parcels), ("pd_events", events)):
                conn.register("frame", frame)
                conn.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM frame LIMIT 0")
                conn.execute(f"INSERT INTO {name} SELECT * FROM frame")
                conn.unregister("frame")
        return LoadCounts()
    if wh.dialect.name == "sqlite":
        conn = wh.hook.get_conn()
        try:
            parcels.to_sql("pd_parcels", conn, if_exists="append", index=False)
            events.to_sql("pd_events", conn, if_exists="append", index=False)
            conn.commit()
        finally:
            conn.close()
        return LoadCounts()
    if "engine" not in state:
        state["engine"] = wh.hook.get_sqlalchemy_engine()
    with state["engine"].begin() as conn:
        parcels.to_sql("pd_parcels", conn, if_exists="append", index=False)
        events.to_sql("pd_events", conn, if_exists="append", index=False)
    return LoadCounts()


def ready_rows(target: Target, results: list[TrackingResult]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The floor's input, built before its clock starts."""
    return build_rows(results, target.wh.dialect.ts_param)


def load_floor(target: Target, ready: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]) -> LoadCounts:
    """
    Ready tuples at the database's own speed: SQLite ``executemany`` with ``ON CONFLICT DO NOTHING``
    into the keyed tables; PostgreSQL raw binary ``COPY`` into keyless tables of the same columns.
    """
    wh = target.wh
    dialect = wh.dialect
    parcels, events = ready
    if dialect.name == "sqlite":
        with wh.transaction() as (_, cur):
            for spec, rows in ((PARCELS, parcels), (EVENTS, events)):
                sql = (
                    f"INSERT INTO {wh.table_name(spec.name)} VALUES ({', '.join('?' * len(spec.names))}) "
                    "ON CONFLICT DO NOTHING"
                )
                cur.executemany(sql, rows)
        return LoadCounts()
    with wh.transaction() as (_, cur):
        for spec, rows in ((PARCELS, parcels), (EVENTS, events)):
            with cur.copy(f"COPY floor_{spec.name} FROM STDIN (FORMAT BINARY)") as writer:
                writer.set_types([dialect.copy_types[kind] for _, kind in spec.columns])  # type: ignore[attr-defined]
                for row in rows:
                    writer.write_row(row)
    return LoadCounts()


KEYED_FLOOR = "floor, keyed tables"


def load_keyed_floor(target: Target, ready: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]) -> LoadCounts:
    """
    PostgreSQL: the least any idempotent loader pays, ready tuples into the keyed tables ours writes
    (their primary keys are what make a load repeatable): binary ``COPY`` straight in on the insert
    pass, ``COPY`` into a stage + ``INSERT ... ON CONFLICT DO NOTHING`` on the refresh pass.
    """
    wh = target.wh
    dialect = wh.dialect
    refresh = target.state.setdefault("loads", 0) >= target.state.setdefault("chunks", 0)
    target.state["loads"] += 1
    with wh.transaction() as (_, cur):
        for spec, rows in zip((PARCELS, EVENTS), ready, strict=True):
            if refresh:
                cur.execute(
                    f"INSERT INTO {wh.table_name(spec.name)} "
                    f"{dialect._stage(cur, wh.names, spec, rows)} ON CONFLICT DO NOTHING"  # type: ignore[attr-defined]
                )
            else:
                dialect._copy(cur, wh.table_name(spec.name), spec, rows)  # type: ignore[attr-defined]
    return LoadCounts()


def prepare_floor(target: Target) -> None:
    """PostgreSQL: the keyless tables the raw ``COPY`` writes to."""
    wh = target.wh
    if wh.dialect.name == "postgres":
        with wh.transaction() as (_, cur):
            for spec in (PARCELS, EVENTS):
                cur.execute(f"CREATE TABLE IF NOT EXISTS floor_{spec.name} (LIKE {wh.table_name(spec.name)})")


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


def run_interleaved(database: str, methods: list[tuple[str, Target, Any]], parcels: int) -> list[Measurement]:
    """
    Time every method on the same chunks, interleaved chunk by chunk (in rotating order), so load
    from other processes on the machine hits all methods alike.
    """
    for method, target, _ in methods:
        target.state["chunks"] = len(range(0, parcels, CHUNK))  # load_keyed_floor: which pass it is in
        target.wh.create_tables()
        if method == FLOOR:
            prepare_floor(target)
    out = []
    for phase, refresh in (("insert", False), ("refresh", True)):
        seconds = [0.0] * len(methods)
        counts = [LoadCounts() for _ in methods]
        event_rows = 0
        for n, start in enumerate(range(0, parcels, CHUNK)):
            chunk = make_chunk(start, min(CHUNK, parcels - start), refresh)  # not timed
            event_rows += sum(len(r.events) for r in chunk)
            for k in [(n + i) % len(methods) for i in range(len(methods))]:
                method, target, load = methods[k]
                data: Any = ready_rows(target, chunk) if method in (FLOOR, KEYED_FLOOR) else chunk  # not timed
                began = time.perf_counter()
                counts[k] += load(target, data)
                seconds[k] += time.perf_counter() - began
        for k, (method, _, _) in enumerate(methods):
            m = Measurement(database, method, phase, parcels, event_rows, seconds[k], counts[k].to_dict())
            print(
                f"  {database:10s} {method:22s} {phase:8s} {m.seconds:7.2f} s  {m.rows_per_s:>10,.0f} rows/s",
                flush=True,
            )
            out.append(m)
    expected = (parcels, parcels * (EVENTS_PER_PARCEL + 1))
    for method, target, load in methods:
        if load in (load_ours, load_baseline):
            stored = (len_table(target.wh, PARCELS.name), len_table(target.wh, EVENTS.name))
            if stored != expected:
                raise SystemExit(f"{database} {method}: stored {stored} rows, expected {expected}")
    return out


def peak_memory(database: str, make: Callable[[int], ParcelWarehouse]) -> list[dict[str, Any]]:
    """
    Peak memory of ``ParcelWarehouse.load`` per chunk size: ``tracemalloc``'s peak over what was
    allocated before the call (the chunk of results itself), worst of two chunks inserted and refreshed.
    """
    out = []
    for size in MEMORY_CHUNKS:
        wh = make(size)
        wh.create_tables()
        peak = 0
        for refresh in (False, True):
            for start in (0, size):  # two chunks: the second loads into a table that already holds one
                chunk = make_chunk(start, size, refresh)
                tracemalloc.start()
                base = tracemalloc.get_traced_memory()[0]
                wh.load(chunk)
                peak = max(peak, tracemalloc.get_traced_memory()[1] - base)
                tracemalloc.stop()
                del chunk
        row = {"database": database, "chunk": size, "peak_mib": round(peak / 2**20, 1),
               "kib_per_parcel": round(peak / 1024 / size, 2)}  # fmt: skip
        print(f"  {database:10s} chunk {size:>6,}: peak {row['peak_mib']:7.1f} MiB, {row['kib_per_parcel']} KiB/parcel")
        out.append(row)
    return out


def len_table(wh: ParcelWarehouse, table: str) -> int:
    with wh.connect() as conn:
        return wh.query(conn, f"SELECT count(*) FROM {wh.table_name(table)}")[0][0]


def set_connection(conn_id: str, **fields: Any) -> str:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)
    return conn_id


# SQLite -------------------------------------------------------------------------------------
def bench_sqlite(parcels: int, workdir: Path) -> tuple[list[Measurement], list[dict[str, Any]]]:
    specs = (
        ("ours", load_ours),
        ("pandas to_sql", load_pandas),
        ("baseline executemany", load_baseline),
        (FLOOR, load_floor),
        (MAPPING, map_only),
    )
    methods = []
    for i, (method, load) in enumerate(specs):
        conn_id = set_connection(f"bench_sqlite_{i}", conn_type="sqlite", host=str(workdir / f"bench_{i}.db"))
        methods.append((method, Target(ParcelWarehouse(conn_id)), load))
    results = run_interleaved("sqlite", methods, parcels)

    def fresh(size: int) -> ParcelWarehouse:
        conn_id = f"bench_sqlite_mem_{size}"
        return ParcelWarehouse(set_connection(conn_id, conn_type="sqlite", host=str(workdir / f"{conn_id}.db")))

    return results, peak_memory("sqlite", fresh)


def bench_duckdb(parcels: int, workdir: Path) -> tuple[list[Measurement], list[dict[str, Any]], str]:
    import duckdb

    specs = (
        ("ours", load_ours, None),
        *([("ours, MERGE", load_ours, "merge")] if MERGE_TOO else []),
        ("pandas to_sql", load_pandas, None),
        (MAPPING, map_only, None),
    )
    methods = []
    for i, (method, load, dialect) in enumerate(specs):
        conn_id = set_connection(f"bench_duckdb_{i}", conn_type="duckdb", host=str(workdir / f"bench_{i}.duckdb"))
        methods.append((method, Target(ParcelWarehouse(conn_id, dialect=dialect)), load))
    results = run_interleaved("duckdb", methods, parcels)

    def fresh(size: int) -> ParcelWarehouse:
        conn_id = f"bench_duckdb_mem_{size}"
        return ParcelWarehouse(set_connection(conn_id, conn_type="duckdb", host=str(workdir / f"{conn_id}.duckdb")))

    return results, peak_memory("duckdb", fresh), duckdb.__version__


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


def bench_postgres(parcels: int, admin_dsn: str) -> tuple[list[Measurement], list[dict[str, Any]], str, str]:
    specs = (
        ("ours", load_ours, None, None),
        *([("ours, MERGE", load_ours, "merge", None)] if MERGE_TOO else []),
        ("ours, VALUES only", load_ours, None, 10**12),
        ("pandas to_sql", load_pandas, None, None),
        ("baseline executemany", load_baseline, None, None),
        (FLOOR, load_floor, None, None),
        (KEYED_FLOOR, load_keyed_floor, None, None),
        (MAPPING, map_only, None, None),
    )
    with contextlib.ExitStack() as stack:
        methods = []
        for i, (method, load, dialect, threshold) in enumerate(specs):
            fields = stack.enter_context(database(admin_dsn, f"parcels_bench_{i}"))
            conn_id = set_connection(f"bench_pg_{i}", **{k: v for k, v in fields.items() if v is not None})
            wh = ParcelWarehouse(conn_id, dialect=dialect)
            if threshold:
                wh.copy_threshold = threshold
            methods.append((method, Target(wh), load))
        with methods[0][1].wh.connect() as conn:
            version = methods[0][1].wh.query(conn, "SHOW server_version")[0][0]
            driver = type(conn).__module__.split(".")[0]
        results = run_interleaved("postgresql", methods, parcels)
        for _, target, _ in methods:  # close the pandas engines before the memory runs
            if target.state.get("engine") is not None:
                target.state["engine"].dispose()
        memory_fields = stack.enter_context(database(admin_dsn, "parcels_bench_memory"))
        prefixes = iter(f"m{size}_" for size in MEMORY_CHUNKS)

        def fresh(size: int) -> ParcelWarehouse:
            conn_id = set_connection("bench_pg_memory", **{k: v for k, v in memory_fields.items() if v is not None})
            return ParcelWarehouse(conn_id, table_prefix=next(prefixes))

        memory = peak_memory("postgresql", fresh)
        return results, memory, version, driver


# report -------------------------------------------------------------------------------------
def markdown(results: list[Measurement]) -> str:
    """rows/s per method; ours beside each other method as ``ours ÷ that``."""
    ours = {(m.database, m.phase): m.seconds for m in results if m.method == "ours"}
    lines = [
        "| database | method | pass | parcel rows | event rows | seconds | rows/s | ours ÷ this |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        ratio = f"{m.seconds / ours[(m.database, m.phase)]:.2f}x" if (m.database, m.phase) in ours else ""
        method = m.method
        if m.method == MAPPING:  # part of ours and the baseline: the database's share is the rest
            method, ratio = f"({m.method}, included in ours)", ""
        elif m.method == "ours":
            ratio = ""
        lines.append(
            f"| {m.database} | {method} | {m.phase} | {m.parcel_rows:,} | {m.event_rows:,} | "
            f"{m.seconds:.2f} | {m.rows_per_s:,.0f} | {ratio} |"
        )
    return "\n".join(lines)


def markdown_memory(rows: list[dict[str, Any]]) -> str:
    lines = ["| database | chunk (results) | peak MiB | KiB per parcel |", "|---|---:|---:|---:|"]
    lines += [f"| {r['database']} | {r['chunk']:,} | {r['peak_mib']} | {r['kib_per_parcel']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer rows (10,000 parcels, 100,000 events)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "warehouse.json"), help="JSON output")
    parser.add_argument("--skip-postgres", action="store_true", help="no PostgreSQL")
    parser.add_argument("--skip-duckdb", action="store_true", help="no DuckDB")
    parser.add_argument("--merge", action="store_true", help="time the generic MERGE path too")
    args = parser.parse_args(argv)
    global MERGE_TOO, MEMORY_CHUNKS
    MERGE_TOO = args.merge
    if args.quick:  # CI runs every benchmark's quick mode within 10 minutes
        MEMORY_CHUNKS = (1_000, 4_000, 12_000)
    # A plain kill must still stop and delete the throw-away server (the with-blocks do that).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parcels = 10_000 if args.quick else 100_000
    print(f"loading {parcels:,} parcels x {EVENTS_PER_PARCEL} events in chunks of {CHUNK:,} results", flush=True)

    results: list[Measurement] = []
    memory: list[dict[str, Any]] = []
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    with tempfile.TemporaryDirectory(prefix="parcels-bench-") as workdir:
        got, mem = bench_sqlite(parcels, Path(workdir))
        results, memory = results + got, memory + mem
    if not args.skip_postgres:
        external = os.environ.get("PARCELS_BENCH_POSTGRES_DSN")
        with contextlib.nullcontext(external) if external else ThrowAwayPostgres() as admin_dsn:
            got, mem, env["postgresql"], env["postgres_driver"] = bench_postgres(parcels, admin_dsn)
            results, memory = results + got, memory + mem
    try:
        import duckdb  # noqa: F401
    except ImportError:
        print("duckdb not installed (extra duckdb): skipping DuckDB", flush=True)
        args.skip_duckdb = True
    if not args.skip_duckdb:
        with tempfile.TemporaryDirectory(prefix="parcels-bench-duckdb-") as workdir:
            got, mem, env["duckdb"] = bench_duckdb(parcels, Path(workdir))
            results, memory = results + got, memory + mem

    table = markdown(results)
    print()
    print(table)
    print()
    print(markdown_memory(memory))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "mode": "quick" if args.quick else "full",
        "chunk_results": CHUNK,
        "events_per_parcel": EVENTS_PER_PARCEL,
        "environment": env,
        "results": [m.to_dict() for m in results],
        "peak_memory": memory,
        "markdown": table,
        "markdown_memory": markdown_memory(memory),
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
