"""
Hourly warehouse sync: the current state and event history of every open parcel, upserted into
``parcel_tracking`` and ``parcel_tracking_events``.

What it shows
-------------
* The warehouse as the list of work: each run tracks only the parcels that are not delivered, in
  exception or expired yet (``ParcelWarehouse.open_parcels``). The first run, when the warehouse
  holds no parcel of this API, seeds it from an orders file (default: ``data/orders.csv`` next to
  this file, 50 sandbox parcels of every kind).
* ``TrackParcelsOperator`` fanned out with dynamic task mapping, one mapped copy per chunk of
  parcels. ``quota_share="auto"`` with ``max_active_tis_per_dagrun`` splits the API plan's quota
  between the copies that run at the same time, so together they stay under it.
* Idempotent loads: running an hour twice, or retrying a copy that crashed half-way, leaves the
  same rows.
* Data awareness: each copy records an asset event on ``parcels://parcels_demo_warehouse/
  parcel_tracking`` (and ``..._events``) with what changed (inserted, updated, unchanged, status
  changes, errors), which starts ``parcels_sla_alerts``'s late-parcel report. The warehouse conn
  id is a param (a template), so the outlets are declared here from its default
  (``WAREHOUSE_CONN_ID``): change both together. See docs/assets_and_lineage.md.

Run it with no setup (the sandbox and a SQLite file)
----------------------------------------------------
``./scripts/demo`` runs this DAG for real. By hand, start ``python -m
airflow_provider_parcels.sandbox --port 8765`` and define the connections the params name::

    export AIRFLOW_CONN_PARCELS_DEMO_SHIPENGINE='{"conn_type": "shipengine",
        "host": "http://127.0.0.1:8765/shipengine", "password": "sandbox-key",
        "extra": {"requests_per_minute": 6000}}'
    export AIRFLOW_CONN_PARCELS_DEMO_WAREHOUSE='{"conn_type": "sqlite", "host": "/tmp/parcels.db"}'
    airflow dags test parcels_warehouse_sync

Point it at a real API and a real warehouse
-------------------------------------------
* ``conn_id``: a connection of type ``whereparcel``, ``trackingmore``, ``trackflow``,
  ``parcellab`` or ``shipengine`` holding your key (password field), with no host (the
  vendor's default URL) and the extra ``plan`` of your subscription, so the client paces itself
  under the plan's quota.
* ``warehouse_conn_id``: any common-sql connection (``postgres``, ``sqlite``, ``duckdb``); the
  two tables are created on first use, under ``table_prefix`` if you give one.
* ``orders_file``: only read while the warehouse holds no parcel of this API. To start from
  your own shipments, load them once (or point ``orders_file`` at a CSV with ``carrier``,
  ``tracking_number`` and optional ``order_number`` columns); from then on the warehouse is the
  list of work. Carrier codes are those of the API you track with.
* ``chunk_size``: parcels per mapped copy. Each copy streams its chunk to the warehouse in
  transactions of 1 000 parcels; for large accounts use thousands per chunk so that the number
  of mapped copies stays small.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_parcels.hooks import hook_for_connection
from airflow_provider_parcels.lineage.assets import warehouse_table_assets
from airflow_provider_parcels.operators.tracking import TrackParcelsOperator
from airflow_provider_parcels.warehouse import ParcelWarehouse

log = logging.getLogger(__name__)

#: The orders file shipped with the examples (resolved at run time, never read at parse time).
ORDERS_FILE = Path(__file__).parent / "data" / "orders.csv"
#: Mapped copies of the tracking task running at once; each gets this share of the API quota.
PARALLEL_COPIES = 4
#: The warehouse param's default: the tables' assets are declared from it (outlets are known at parse time).
WAREHOUSE_CONN_ID = "parcels_demo_warehouse"


def read_orders(path: str | Path) -> list[dict[str, str]]:
    """The rows of an orders CSV (header line first), whitespace stripped."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(handle)]


with DAG(
    dag_id="parcels_warehouse_sync",
    description="Track every open parcel and upsert parcel_tracking / parcel_tracking_events",
    schedule="@hourly",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=2)},
    tags=["parcels", "example"],
    doc_md=__doc__,
    params={
        "conn_id": Param("parcels_demo_shipengine", type="string",
                         description="Connection of the tracking API (any of the five types)."),
        "warehouse_conn_id": Param(WAREHOUSE_CONN_ID, type="string",
                                   description="common-sql connection of the warehouse (SQLite, PostgreSQL...)."),
        "table_prefix": Param("", type="string", description="Prefix of the two warehouse tables."),
        "orders_file": Param("", type="string",
                             description="CSV that seeds an empty warehouse; empty: the bundled data/orders.csv."),
        "chunk_size": Param(20, type="integer", minimum=1, description="Parcels per mapped tracking task."),
    },
) as dag:

    @task
    def select_parcels(**context: Any) -> list[list[dict[str, Any]]]:
        """The open parcels of the warehouse (or, the first time, the orders file), in chunks."""
        params = context["params"]
        api = hook_for_connection(params["conn_id"])
        provider = api.provider
        api.close()
        warehouse = ParcelWarehouse(params["warehouse_conn_id"], table_prefix=params["table_prefix"])
        if warehouse.status_counts(provider=provider):
            parcels = list(warehouse.open_parcels(provider=provider))
            log.info("%d open %s parcel(s) in the warehouse", len(parcels), provider)
        else:
            source = params["orders_file"] or ORDERS_FILE
            parcels = [
                {"carrier": row["carrier"], "tracking_number": row["tracking_number"],
                 "client_id": row.get("order_number") or None}
                for row in read_orders(source)
            ]
            log.info("No %s parcels in the warehouse yet: seeding %d from %s", provider, len(parcels), source)
        size = params["chunk_size"]
        return [parcels[start : start + size] for start in range(0, len(parcels), size)]

    chunks = select_parcels()

    tracked = TrackParcelsOperator.partial(
        task_id="track",
        conn_id="{{ params.conn_id }}",
        warehouse_conn_id="{{ params.warehouse_conn_id }}",
        table_prefix="{{ params.table_prefix }}",
        quota_share="auto",
        max_active_tis_per_dagrun=PARALLEL_COPIES,
        map_index_template="{{ task.parcels | length }} parcels",
        outlets=warehouse_table_assets(WAREHOUSE_CONN_ID),
    ).expand(parcels=chunks)

    @task(trigger_rule="none_failed")
    def summarize(summaries: Any, **context: Any) -> dict[str, Any]:
        """Totals of this run and the warehouse's parcels by status, for the log and the XCom."""
        params = context["params"]
        tracked_by_status: dict[str, int] = {}
        parcels = errors = 0
        # Index the mapped results (a lazy sequence): plain iteration probes one past the end,
        # which Airflow logs as an error.
        for summary in (summaries[index] for index in range(len(summaries or ()))):
            parcels += summary["parcels"]
            errors += summary["errors"]
            for status, count in summary["by_status"].items():
                tracked_by_status[status] = tracked_by_status.get(status, 0) + count
        warehouse = ParcelWarehouse(params["warehouse_conn_id"], table_prefix=params["table_prefix"])
        in_warehouse = warehouse.status_counts()
        log.info("Tracked %d parcel(s) (%d with an error): %s", parcels, errors, tracked_by_status)
        log.info("Warehouse parcels by status: %s", in_warehouse)
        return {"tracked": parcels, "errors": errors, "tracked_by_status": tracked_by_status,
                "warehouse_by_status": in_warehouse}

    summarize(tracked.output)
