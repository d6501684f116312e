"""Issue 19: OpenLineage facets, as the OpenLineage provider's listener and its client's file transport write them
(dag.test() against the sandbox, into real SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from helpers.connections import set_connection
from helpers.dags import run_dag, task_states

from airflow_provider_parcels.warehouse.rows import EVENTS, PARCELS


def complete_event(events: list[dict], job: str) -> dict:
    """The one COMPLETE run event of job ``dag_id.task_id``."""
    found = [e for e in events if e.get("eventType") == "COMPLETE" and e["job"]["name"] == job]
    assert len(found) == 1, [(e.get("eventType"), e["job"]["name"]) for e in events]
    return found[0]


def by_name(datasets: list[dict]) -> dict[str, dict]:
    return {d["name"]: d for d in datasets}


def table_namespace(warehouse: dict) -> tuple[str, str]:
    """``(namespace, name prefix)`` of the warehouse's tables per the OpenLineage naming spec (ours for SQLite)."""
    if warehouse["conn_type"] == "sqlite":
        return f"sqlite://{os.path.abspath(warehouse['host'])}", "main."
    if warehouse["conn_type"] == "duckdb":  # the database is named after the file, as DuckDB names it
        return f"duckdb://{os.path.abspath(warehouse['host'])}", "warehouse.main."
    return f"postgres://{warehouse['host']}:{warehouse['port']}", f"{warehouse['schema']}.public."


def parcels(n: int, carrier: str = "usps") -> list[dict]:
    prefixes = ["DLV", "TRN", "EXC", "NFD", "OFD"]
    return [{"carrier": carrier, "tracking_number": f"{prefixes[i % 5]}OL{i:05d}"} for i in range(n)]


def test_tracking_lineage_api_and_sql_source_in_tables_out(track_api, warehouse, openlineage_file, tmp_path,
                                                           monkeypatch):
    sandbox = track_api("shipengine")
    source = tmp_path / "orders.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE orders_to_track (carrier TEXT, tracking_number TEXT)")
        conn.executemany("INSERT INTO orders_to_track VALUES (?, ?)",
                         [(p["carrier"], p["tracking_number"]) for p in parcels(9)])
    set_connection(monkeypatch, "lineage_source", "sqlite", host=str(source))

    run = run_dag("lineage_track_sql")
    assert run.state == "success", task_states(run)
    event = complete_event(openlineage_file(), "lineage_track_sql.track_sql")
    assert event["job"]["namespace"] == "parcels_tests"

    inputs = {(d["namespace"], d["name"]) for d in event["inputs"]}
    host, port = sandbox.url.split("://", 1)[1].rstrip("/").split(":")[:2]
    # the sandbox serves each API under a path of its own
    api = (f"http://{host}:{port}", "/shipengine/v1/tracking")
    assert inputs == {api, (f"sqlite://{source}", "main.orders_to_track")}

    namespace, prefix = table_namespace(warehouse)
    outputs = by_name(event["outputs"])
    assert set(outputs) == {f"{prefix}lin_parcel_tracking", f"{prefix}lin_parcel_tracking_events"}
    tracking = outputs[f"{prefix}lin_parcel_tracking"]
    assert tracking["namespace"] == namespace
    assert [f["name"] for f in tracking["facets"]["schema"]["fields"]] == list(PARCELS.names)
    assert tracking["outputFacets"]["outputStatistics"]["rowCount"] == 9
    events_table = outputs[f"{prefix}lin_parcel_tracking_events"]
    assert [f["name"] for f in events_table["facets"]["schema"]["fields"]] == list(EVENTS.names)
    stored = _count(warehouse, "lin_parcel_tracking_events")
    assert events_table["outputFacets"]["outputStatistics"]["rowCount"] == stored > 0

    # the same run again writes no new events: the statistics say so
    assert run_dag("lineage_track_sql").state == "success"
    again = [e for e in openlineage_file() if e.get("eventType") == "COMPLETE"
             and e["job"]["name"] == "lineage_track_sql.track_sql"][-1]
    assert by_name(again["outputs"])[f"{prefix}lin_parcel_tracking_events"]["outputFacets"][
        "outputStatistics"]["rowCount"] == 0


def test_open_parcels_read_the_table_they_write(track_api, warehouse, openlineage_file):
    track_api("shipengine")
    assert run_dag("lineage_track", conf={"parcels": parcels(10)}).state == "success"
    assert run_dag("lineage_track_open").state == "success"
    event = complete_event(openlineage_file(), "lineage_track_open.track_open")
    namespace, prefix = table_namespace(warehouse)
    inputs = by_name(event["inputs"])
    assert inputs[f"{prefix}lin_parcel_tracking"]["namespace"] == namespace
    assert "/shipengine/v1/tracking" in inputs


def test_order_operators_write_the_resources_tracking_reads(parcels_sandbox_clean, openlineage_file, monkeypatch):
    for api, conn_id in (("parcellab", "lineage_parcellab"), ("trackingmore", "lineage_trackingmore")):
        name, value = parcels_sandbox_clean.conn_env(api, conn_id=conn_id, account=99)
        monkeypatch.setenv(name, value)
    orders = [{"order_number": "PCL-OL-1", "recipient_email": "a@example.com"},
              {"order_number": "PCL-OL-2", "recipient_email": "not-an-email"}]
    run = run_dag("lineage_orders", conf={"orders": orders, "parcels": [
        {"carrier": "usps", "tracking_number": "NEWOL0001"}, {"carrier": "usps", "tracking_number": "NEWOL0002"}]})
    assert run.state == "success", task_states(run)
    events = openlineage_file()
    orders_out = complete_event(events, "lineage_orders.orders")["outputs"]
    assert [(d["name"], d["outputFacets"]["outputStatistics"]["rowCount"]) for d in orders_out] == [
        ("/parcellab/v4/track/orders/", 1)]
    trackings_out = complete_event(events, "lineage_orders.trackings")["outputs"]
    assert [(d["name"], d["outputFacets"]["outputStatistics"]["rowCount"]) for d in trackings_out] == [
        ("/trackingmore/v2/trackings", 2)]


def _count(warehouse: dict[str, Any], table: str) -> int:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection("lineage_wh").get_hook().get_records(f"SELECT COUNT(*) FROM {table}")[0][0]


def test_package_works_without_openlineage(tmp_path, parcels_sandbox_clean):
    """The ``openlineage`` extra is optional: with its modules unimportable, tracking still loads and declares
    assets, and nothing imports OpenLineage."""
    name, value = parcels_sandbox_clean.conn_env("shipengine", conn_id="track_api")
    script = textwrap.dedent("""
        import importlib.abc, sys
        # Airflow's provider discovery reads the installed provider's metadata module: let only that through
        ALLOWED = {"airflow.providers.openlineage", "airflow.providers.openlineage.get_provider_info"}
        def blocked(name):
            return (name == "openlineage" or name.startswith("openlineage.")
                    or (name.startswith("airflow.providers.openlineage.") and name not in ALLOWED))
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if blocked(name):
                    raise ModuleNotFoundError(f"blocked: {name}")
        sys.meta_path.insert(0, Block())
        from airflow_provider_parcels.lineage.assets import warehouse_table_assets
        from airflow_provider_parcels.operators.tracking import TrackParcelsOperator
        from airflow_provider_parcels.lineage.events import WarehouseChanges
        op = TrackParcelsOperator(task_id="t", conn_id="track_api", warehouse_conn_id="wh",
                                  parcels=[{"carrier": "usps", "tracking_number": "DLVNOOL1"}])
        assert [a.uri for a in op.outlets] == [a.uri for a in warehouse_table_assets("wh")]
        out = op.execute({})
        assert out["rows"]["inserted"] == 1 and out["status_changes"] == {"delivered": 1}, out
        assert not [m for m in sys.modules if blocked(m)], [m for m in sys.modules if blocked(m)]
        print("ok")
    """)
    env = {**os.environ, name: value,
           "AIRFLOW_CONN_WH": f'{{"conn_type": "sqlite", "host": "{tmp_path / "wh.db"}"}}'}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


@pytest.mark.parametrize("base_url, namespace, name", [
    ("https://api.shipengine.com", "https://api.shipengine.com", "/v1/tracking"),
    ("https://user:secret@eu.example.com:8443/proxy/", "https://eu.example.com:8443", "/proxy/v1/tracking"),
])
def test_api_dataset_names(base_url, namespace, name):
    from airflow_provider_parcels.lineage.openlineage import api_dataset

    dataset = api_dataset(base_url, "/v1/tracking")
    assert (dataset.namespace, dataset.name) == (namespace, name)
