"""Table names, prefixes and schemas, DDL types, dialect detection and ``LoadCounts``."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing

import pytest
from wh_factories import batch, mixed

from airflow_provider_parcels.models import ParcelStatus
from airflow_provider_parcels.warehouse import LoadCounts, ParcelWarehouse

HOSTILE = [
    "x; DROP TABLE parcel_tracking; --",
    "x'",
    'x"',
    "a.b",
    "a b",
    "pärcel_",
    "包裹_",
    "\uff58",  # fullwidth x
    "1abc",
    "a-b",
    "abc\n",
    "a" * 42,
    None,
    7,
]


def table_names(wh: ParcelWarehouse) -> set[str]:
    sql = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
        "postgres": "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
        "duckdb": "SELECT table_schema || '.' || table_name FROM information_schema.tables",
    }[wh.dialect.name]
    with wh.connect() as conn:
        return {row[0] for row in wh.query(conn, sql)}


def test_hostile_prefix_or_schema_is_refused(warehouse_conn_id):
    for bad in HOSTILE:
        with pytest.raises(ValueError, match="table_prefix"):
            ParcelWarehouse(warehouse_conn_id, table_prefix=bad)  # type: ignore[arg-type]
        if bad is None:  # no schema: the connection's default
            continue
        with pytest.raises(ValueError, match="schema"):
            ParcelWarehouse(warehouse_conn_id, schema=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schema"):
        ParcelWarehouse(warehouse_conn_id, schema="")
    probe = ParcelWarehouse(warehouse_conn_id, table_prefix="probe_")
    assert not any("parcel" in name for name in table_names(probe))  # nothing was created


def test_prefix_names_both_tables_and_keeps_them_apart(make_warehouse):
    plain, prefixed = make_warehouse(), make_warehouse(table_prefix="Wh_2_")
    prefixed.load(batch(3))
    names = {name.split(".")[-1] for name in table_names(prefixed)}
    assert {"Wh_2_parcel_tracking", "Wh_2_parcel_tracking_events"} <= names
    assert plain.dump("parcel_tracking") == []
    assert len(prefixed.dump("Wh_2_parcel_tracking")) == 3
    with pytest.raises(ValueError, match="table must be one of"):
        prefixed.dump("users")


def test_schema_on_postgres(postgres_conn_id):
    wh = ParcelWarehouse(postgres_conn_id, table_prefix="wh_", schema="tracking")
    counts = wh.load(mixed(12))
    assert counts.inserted == 12
    assert {"tracking.wh_parcel_tracking", "tracking.wh_parcel_tracking_events"} <= table_names(wh)
    assert sum(wh.status_counts().values()) == 12
    assert len(list(wh.open_parcels())) == 9  # 12 parcels over 11 statuses: 3 are terminal
    assert ParcelWarehouse(postgres_conn_id, table_prefix="wh_").dump("parcel_tracking") == []
    # Idempotent DDL, also from a second instance.
    ParcelWarehouse(postgres_conn_id, table_prefix="wh_", schema="tracking").create_tables()


def test_postgres_column_types_and_status_index(postgres_conn_id):
    wh = ParcelWarehouse(postgres_conn_id)
    wh.create_tables()
    with wh.connect() as conn:
        types = dict(
            wh.query(
                conn,
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
                ["parcel_tracking"],
            )
        )
        indexes = wh.query(conn, "SELECT indexdef FROM pg_indexes WHERE tablename = 'parcel_tracking'")
    assert types["fetched_at"] == types["estimated_delivery"] == "timestamp with time zone"
    assert types["raw"] == "text" and types["event_count"] == "integer"
    assert any("(status, provider, carrier, tracking_number)" in row[0] for row in indexes)


def test_sqlite_timestamps_are_fixed_format_utc_text(sqlite_conn_id, tmp_path):
    wh = ParcelWarehouse(sqlite_conn_id)
    wh.load(mixed(20))
    with closing(sqlite3.connect(tmp_path / "warehouse.db")) as conn:
        values = [v for (v,) in conn.execute("SELECT fetched_at FROM parcel_tracking")]
        values += [v for (v,) in conn.execute("SELECT occurred_at FROM parcel_tracking_events") if v]
        index = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall()
    assert values and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", v) for v in values)
    assert any("status" in sql for (sql,) in index)


def test_schema_is_refused_on_sqlite(sqlite_conn_id):
    with pytest.raises(ValueError, match="schema is not supported on sqlite"):
        ParcelWarehouse(sqlite_conn_id, schema="tracking").create_tables()


def test_dialect_comes_from_the_hook(warehouse_conn_id):
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(warehouse_conn_id).get_hook()
    wh = ParcelWarehouse("ignored", hook=hook)
    assert wh.dialect.name == warehouse_conn_id.rsplit("_", 1)[-1]
    assert wh.load(batch(2)).inserted == 2


def test_unsupported_connection_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NOT_SQL", '{"conn_type": "http", "host": "example.com"}')
    with pytest.raises((TypeError, ValueError), match=r"not a DbApiHook|not a supported"):
        ParcelWarehouse("not_sql").load(batch(1))


def test_load_counts_add_and_to_dict():
    a = LoadCounts(1, 2, 3, 4, 5)
    b = LoadCounts(inserted=10, events_unchanged=1)
    assert a + b == LoadCounts(11, 2, 3, 4, 6)
    assert sum([a, b]) == a + b
    assert (a + b).to_dict() == {
        "inserted": 11,
        "updated": 2,
        "unchanged": 3,
        "events_inserted": 4,
        "events_unchanged": 6,
    }


@pytest.mark.parametrize("by_provider", [False, True], ids=["all", "one_provider"])
def test_open_parcels_pages_use_the_partial_open_index(make_warehouse, by_provider):
    """The page query repeats the index predicate word for word; else SQLite would not use the index."""
    from airflow_provider_parcels.warehouse.queries import open_parcels_sql

    wh = make_warehouse(table_prefix="ix_")
    if not wh.dialect.status_index:
        pytest.skip(f"{wh.dialect.name} has no secondary indexes (see DuckDBDialect): open_parcels scans")
    wh.load(batch(2000, status=ParcelStatus.DELIVERED, events=0) + batch(50, start=2000, events=0))
    with wh.transaction() as (_, cur):
        cur.execute("ANALYZE")  # a warehouse in use has statistics: most parcels delivered
    sql = open_parcels_sql(wh, by_provider, 100, after=True)
    params = ["whereparcel"] * by_provider + ["a"] * (2 if by_provider else 3)
    with wh.connect() as conn:
        explain = "EXPLAIN QUERY PLAN " if wh.dialect.name == "sqlite" else "EXPLAIN "
        plan = " ".join(str(row) for row in wh.query(conn, explain + sql, params))
    assert "ix_parcel_tracking_open" in plan, plan
