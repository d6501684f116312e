"""
Daily order push: new orders go to parcelLab (idempotent upsert) and their parcels are registered
with TrackingMore.

What it shows
-------------
* ``CreateParcelLabOrdersOperator``: one ``PUT /v4/track/orders/`` per order, each with an
  ``add_tracking`` mutation; a retried task never creates an order twice.
* ``CreateTrackingMoreTrackingsOperator``: ``POST /trackings/batch`` in batches of 40; a parcel
  the account already tracks counts as unchanged, not failed.
* "New" orders without trusting dates: a push log table (``parcel_order_push_log`` in the
  warehouse) remembers which orders went out. Each run sends the source's orders that are not
  in the log, and logs them only after both APIs took them, so a failed run is simply sent
  again the next day (both calls are idempotent).

Run it with no setup (the sandbox and a SQLite file)
----------------------------------------------------
Start ``python -m airflow_provider_parcels.sandbox --port 8765``, define
``parcels_demo_parcellab``, ``parcels_demo_trackingmore`` and ``parcels_demo_warehouse`` (the
sandbox prints them as ready ``AIRFLOW_CONN_PARCELS_DEMO_...`` lines, and writes them for
``airflow connections import`` with ``--connections-file FILE``), then ``airflow dags test
parcels_order_push`` (under a scheduler: docs/running_on_airflow.md). The bundled orders file holds 50
orders; the sandbox's TrackingMore account already knows every number except the ``NEW...``
ones, so those are created and the others come back as unchanged. A second run sends nothing.

Point it at real APIs and a real source
---------------------------------------
* ``parcellab_conn_id``: a ``parcellab`` connection (token in the password, extra ``account``
  with your account id); ``trackingmore_conn_id``: a ``trackingmore`` connection (API key in
  the password).
* ``source_sql`` on ``source_conn_id``: a query returning the orders file's columns
  (``order_number``, ``carrier``, ``tracking_number``, ``recipient_name``, ``recipient_email``,
  ``postal_code``, ``country_iso3``, ``order_total``, ``currency``, ``order_date``), e.g. the
  orders shipped since yesterday; the push log keeps the runs from sending an order twice.
* ``state_conn_id``: where the push log lives (any common-sql connection).
* Carrier codes: parcelLab and TrackingMore each have their own courier codes; map yours in
  ``to_parcellab_order`` / ``to_trackingmore_parcel`` (``COURIERS`` below).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import re
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseHook, Param, task

from airflow_provider_parcels.operators.orders import (
    CreateParcelLabOrdersOperator,
    CreateTrackingMoreTrackingsOperator,
)

log = logging.getLogger(__name__)

ORDERS_FILE = Path(__file__).parent / "data" / "orders.csv"
#: Courier codes per API for the carrier codes of the orders file (identity when not listed).
COURIERS: dict[str, dict[str, str]] = {
    "parcellab": {"dhl_express": "dhl-express"},
    "trackingmore": {"dhl_express": "dhl"},
}
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
ORDER_COLUMNS = ("order_number", "order_date", "carrier", "tracking_number", "recipient_name", "recipient_email",
                 "postal_code", "country_iso3", "order_total", "currency")


def read_orders(path: str | Path) -> list[dict[str, str]]:
    """The rows of an orders CSV (header line first), whitespace stripped."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(handle)]


def to_parcellab_order(row: dict[str, Any]) -> dict[str, Any]:
    """A parcelLab v4 order for one source row, with its parcel as an ``add_tracking`` mutation."""
    courier = COURIERS["parcellab"].get(row["carrier"], row["carrier"])
    order: dict[str, Any] = {
        "order_number": row["order_number"],
        "recipient_name": row.get("recipient_name") or None,
        "recipient_email": row.get("recipient_email") or "_unset",
        "destination_country_iso3": row.get("country_iso3") or None,
        "order_total_amount": row.get("order_total") or None,
        "order_currency": row.get("currency") or None,
        "order_date": f"{row['order_date']}T00:00:00Z" if row.get("order_date") else None,
        "mutations": [{
            "type": "add_tracking",
            "tracking": {
                "tracking_number": row["tracking_number"],
                "courier": courier,
                "recipient_postal_code": row.get("postal_code") or None,
                "destination_country_iso3": row.get("country_iso3") or None,
            },
        }],
    }
    return {key: value for key, value in order.items() if value is not None}


def to_trackingmore_parcel(row: dict[str, Any]) -> dict[str, Any]:
    """A TrackingMore tracking for one source row (order and customer fields ride along)."""
    return {
        "carrier": COURIERS["trackingmore"].get(row["carrier"], row["carrier"]),
        "tracking_number": row["tracking_number"],
        "order_id": row["order_number"],
        "title": f"Order {row['order_number']}",
        "customer_name": row.get("recipient_name") or None,
        "customer_email": row.get("recipient_email") or None,
    }


def push_log(conn_id: str, table: str) -> Any:
    """The push log's ``DbApiHook``, with the table created if it is missing."""
    if not _TABLE_NAME.match(table):
        raise ValueError(f"push_log_table must be a plain identifier, got {table!r}")
    db = BaseHook.get_connection(conn_id).get_hook()
    db.run(
        f"CREATE TABLE IF NOT EXISTS {table} (order_number VARCHAR(128) PRIMARY KEY, "
        "tracking_number VARCHAR(128), carrier VARCHAR(64), pushed_at VARCHAR(40))"
    )
    return db


def query_rows(conn_id: str, sql: str) -> list[dict[str, str]]:
    """The rows of a query as dicts of text (column names lower-cased)."""
    db = BaseHook.get_connection(conn_id).get_hook()
    conn = db.get_conn()
    try:
        cursor = conn.cursor()
        cursor.execute(sql)
        names = [column[0].lower() for column in cursor.description]
        rows = [dict(zip(names, ("" if v is None else str(v) for v in row), strict=True)) for row in cursor.fetchall()]
        cursor.close()
    finally:
        conn.close()
    return rows


def pushed_orders(db: Any, table: str) -> set[str]:
    """Order numbers already in the push log."""
    return {str(row[0]) for row in db.get_records(f"SELECT order_number FROM {table}")}


with DAG(
    dag_id="parcels_order_push",
    description="New orders to parcelLab (upsert) and their parcels to TrackingMore",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    tags=["parcels", "example"],
    doc_md=__doc__,
    params={
        "parcellab_conn_id": Param("parcels_demo_parcellab", type="string", description="parcelLab connection."),
        "trackingmore_conn_id": Param("parcels_demo_trackingmore", type="string",
                                      description="TrackingMore connection."),
        "state_conn_id": Param("parcels_demo_warehouse", type="string",
                               description="common-sql connection holding the push log table."),
        "push_log_table": Param("parcel_order_push_log", type="string", description="Name of the push log table."),
        "orders_file": Param("", type="string", description="CSV of orders; empty: the bundled data/orders.csv."),
        "source_conn_id": Param("", type="string", description="common-sql connection for source_sql."),
        "source_sql": Param("", type="string", description="Query returning the orders (replaces the file)."),
    },
) as dag:

    @task
    def new_orders(**context: Any) -> list[dict[str, Any]]:
        """The source's orders that are not in the push log yet."""
        params = context["params"]
        if params["source_sql"]:
            sql = context["task"].render_template(params["source_sql"], context)
            rows = query_rows(params["source_conn_id"], sql)
        else:
            rows = read_orders(params["orders_file"] or ORDERS_FILE)
        db = push_log(params["state_conn_id"], params["push_log_table"])
        done = pushed_orders(db, params["push_log_table"])
        fresh = [{key: row.get(key, "") for key in ORDER_COLUMNS} for row in rows if row["order_number"] not in done]
        log.info("%d order(s) in the source, %d already pushed, %d new", len(rows), len(rows) - len(fresh), len(fresh))
        return fresh

    @task
    def parcellab_orders(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """parcelLab order payloads."""
        return [to_parcellab_order(row) for row in rows]

    @task
    def trackingmore_parcels(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """TrackingMore trackings to register."""
        return [to_trackingmore_parcel(row) for row in rows]

    orders = new_orders()

    upsert = CreateParcelLabOrdersOperator(
        task_id="upsert_parcellab_orders",
        orders=parcellab_orders(orders),
        conn_id="{{ params.parcellab_conn_id }}",
        fail_on_errors=True,
    )
    register = CreateTrackingMoreTrackingsOperator(
        task_id="register_trackingmore",
        parcels=trackingmore_parcels(orders),
        conn_id="{{ params.trackingmore_conn_id }}",
        fail_on_errors=True,
    )

    @task
    def record_pushed(rows: list[dict[str, Any]], **context: Any) -> int:
        """Add the orders both APIs took to the push log (after both succeeded)."""
        params = context["params"]
        table = params["push_log_table"]
        db = push_log(params["state_conn_id"], table)
        done = pushed_orders(db, table)  # read again: a retry after a partial insert adds only the rest
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        new = [(r["order_number"], r["tracking_number"], r["carrier"], now) for r in rows
               if r["order_number"] not in done]
        if new:
            db.insert_rows(table, new, target_fields=["order_number", "tracking_number", "carrier", "pushed_at"])
        log.info("push log: %d order(s) added", len(new))
        return len(new)

    [upsert, register] >> record_pushed(orders)
