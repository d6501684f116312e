"""
Daily SLA alerting: wait for today's parcels, alert on the ones in exception, report the late ones;
and a late-parcel report each time the warehouse's ``parcel_tracking`` table changes.

What it shows
-------------
* Data-aware scheduling (``AssetOrTimeSchedule``): a run at 06:00 UTC every day (the wait for
  today's parcels) *or* as soon as a task records an asset event on ``parcel_tracking``
  (``parcels://parcels_demo_warehouse/parcel_tracking``: ``parcels_warehouse_sync``,
  ``trackingmore_incremental_sync``, the webhook ingest), not on a guessed cron. A run started by
  the table skips the wait (``todays_parcels`` skips itself) and only reports the late parcels,
  logging what the triggering events say changed (their extras: status changes, errors).
* ``ParcelStatusSensor`` in deferrable mode: it checks today's parcels once on the worker, then
  hands the wait to the triggerer, which asks only about the parcels not yet delivered. Today's
  parcels are the orders file's ``same_day`` rows (against a real source: ``source_sql``).
* ``fail_on=("exception", "expired")``: a parcel in exception fails the sensor at once, and its
  ``on_failure_callback``, a ``ParcelReportNotifier``, reports exactly those parcels to the log
  and, when ``alert_conn_id`` names an ``http`` connection (a Slack incoming webhook, or any
  URL), posts them there.
* ``late_parcels_report`` (``trigger_rule="all_done"``) runs whatever the sensor did and lists
  the warehouse's late parcels (past their estimated delivery, in exception, or with
  ``max_age_days`` older than that). ``sla_breached`` fails the run when the sensor failed, so
  the run's state tells the on-call team at a glance.
* A DAG-run Deadline Alert (Airflow 3.1+; skipped on older versions): if the run is still not
  done 15 hours after it was queued, ``deadline_report_callback`` posts the late parcels.

Run it with no setup (the sandbox and a SQLite file)
----------------------------------------------------
``./scripts/demo`` runs this DAG for real after ``parcels_warehouse_sync`` has filled the
warehouse. By hand: the sandbox (``python -m airflow_provider_parcels.sandbox --port 8765``), the
connections ``parcels_demo_shipengine`` and ``parcels_demo_warehouse`` as in
``parcels_warehouse_sync``, then ``airflow dags test parcels_sla_alerts``; add
``-c '{"poke_interval_seconds": 2}'`` to see the deferred wait end in seconds. The sandbox's
``POLLD<k>`` parcels are delivered and its ``POLLX<k>`` parcels go into exception after k
lookups, so the sensor defers, then fails on the two ``POLLX2`` parcels: that is the alert path.

Point it at a real API, a real warehouse and a real alert channel
-----------------------------------------------------------------
* ``conn_id``: a tracking API connection with your key and ``plan`` extra.
* ``source_sql`` on ``source_conn_id``: the query that lists today's parcels, e.g.
  ``SELECT carrier, tracking_number FROM shipments WHERE promised_date = '{{ ds }}'`` (Jinja
  is rendered with the run's context); it replaces the orders file.
* ``warehouse_conn_id``: the warehouse ``parcels_warehouse_sync`` loads (late parcels come from
  there). The Deadline Alert's callback cannot read params: change ``WAREHOUSE_CONN_ID`` and
  ``DEADLINE_ALERT_CONN_ID`` below together with them.
* ``alert_conn_id``: an ``http`` connection whose host is your Slack incoming-webhook URL (or
  its base, with the path in the notifier's ``endpoint``).
* ``poke_interval_seconds`` and ``wait_hours``: how often the triggerer asks, and when the wait
  gives up (the sensor then fails with the parcels still open, and the notifier lists them).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, AssetOrTimeSchedule, BaseHook, CronTriggerTimetable, Param, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_provider_parcels.lineage.assets import warehouse_table_asset
from airflow_provider_parcels.notifications.parcel_report import ParcelReportNotifier, deadline_report_callback
from airflow_provider_parcels.sensors.parcel_status import ParcelStatusSensor
from airflow_provider_parcels.warehouse import ParcelWarehouse

try:  # Deadline Alerts on DAG runs: Airflow 3.1+ (``airflow.sdk.DeadlineAlert``).
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference
except ImportError:  # pragma: no cover - older Airflow: the DAG runs without a deadline
    AsyncCallback = DeadlineAlert = DeadlineReference = None

log = logging.getLogger(__name__)

ORDERS_FILE = Path(__file__).parent / "data" / "orders.csv"
#: The promise that makes a parcel one of "today's parcels" in the orders file.
TODAY_PROMISE = "same_day"
#: Read by the Deadline Alert's callback, which runs without the run's params.
WAREHOUSE_CONN_ID = "parcels_demo_warehouse"
#: An ``http`` connection for the deadline report; ``None`` logs it in the triggerer only.
DEADLINE_ALERT_CONN_ID: str | None = None
#: How long after the run was queued the Deadline Alert fires if the run is still not done.
DEADLINE_AFTER = dt.timedelta(hours=15)
#: The warehouse table whose changes start a late-parcel report (declared at parse time: no I/O).
PARCEL_TRACKING = warehouse_table_asset(WAREHOUSE_CONN_ID, "parcel_tracking")


def table_changes(context: Any) -> list[dict[str, Any]]:
    """The extras of the ``parcel_tracking`` asset events that started this run (none for a time-based run)."""
    events = context.get("triggering_asset_events") or {}
    return [dict(event.extra or {}) for event in events.get(PARCEL_TRACKING, [])]


def read_orders(path: str | Path) -> list[dict[str, str]]:
    """The rows of an orders CSV (header line first), whitespace stripped."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(handle)]


def apply_wait_params(context: Any) -> None:
    """``pre_execute`` of the sensor: ``poke_interval`` and ``timeout`` are not templated, so
    they are taken from the run's params here, right before the sensor starts."""
    sensor, params = context["task"], context["params"]
    sensor.poke_interval = float(params["poke_interval_seconds"])
    sensor.timeout = float(params["wait_hours"]) * 3600


def _deadline_kwargs() -> dict[str, Any]:
    """The DAG's ``deadline=`` argument where this Airflow has Deadline Alerts, else nothing."""
    if DeadlineAlert is None:
        return {}
    alert = DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=DEADLINE_AFTER,
        callback=AsyncCallback(
            deadline_report_callback,
            kwargs={
                "warehouse_conn_id": WAREHOUSE_CONN_ID,
                "http_conn_id": DEADLINE_ALERT_CONN_ID,
                "use_context": False,
                "title": "parcels_sla_alerts missed its deadline: late parcels",
            },
        ),
    )
    return {"deadline": alert}


with DAG(
    dag_id="parcels_sla_alerts",
    description="Wait for today's parcels, alert on exceptions, report late parcels",
    # every day at 06:00 UTC, and whenever parcel_tracking changes
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"),
                                 assets=[PARCEL_TRACKING]),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 0},
    tags=["parcels", "example", "sla"],
    doc_md=__doc__,
    params={
        "conn_id": Param("parcels_demo_shipengine", type="string", description="Tracking API connection."),
        "warehouse_conn_id": Param(WAREHOUSE_CONN_ID, type="string",
                                   description="Warehouse connection (late parcels are read from it)."),
        "table_prefix": Param("", type="string", description="Prefix of the warehouse tables."),
        "orders_file": Param("", type="string",
                             description="CSV of orders; its same_day rows are today's parcels. Empty: bundled."),
        "source_conn_id": Param("", type="string", description="common-sql connection for source_sql."),
        "source_sql": Param("", type="string",
                            description="Query returning carrier, tracking_number of today's parcels (Jinja)."),
        "alert_conn_id": Param("", type="string",
                               description="http connection (e.g. Slack webhook) for the alert; empty: log only."),
        "poke_interval_seconds": Param(300, type="number", exclusiveMinimum=0,
                                       description="Seconds between status checks."),
        "wait_hours": Param(14, type="number", exclusiveMinimum=0, description="Give up waiting after this."),
        "max_age_days": Param(None, type=["null", "number"],
                              description="Also report open parcels first seen longer ago than this."),
    },
    **_deadline_kwargs(),
) as dag:

    @task
    def todays_parcels(**context: Any) -> list[dict[str, Any]]:
        """Today's parcels: the orders file's same-day rows, or what ``source_sql`` returns. Skipped (with the
        wait) when the run was started by a change of ``parcel_tracking``: the late-parcel report runs alone."""
        if changes := table_changes(context):
            raise AirflowSkipException(f"started by {len(changes)} change(s) of parcel_tracking: report only")
        params = context["params"]
        if params["source_sql"]:
            sql = context["task"].render_template(params["source_sql"], context)
            db = BaseHook.get_connection(params["source_conn_id"] or params["warehouse_conn_id"]).get_hook()
            rows = db.get_records(sql)
            parcels = [{"carrier": str(row[0]), "tracking_number": str(row[1])} for row in rows]
        else:
            source = params["orders_file"] or ORDERS_FILE
            parcels = [
                {"carrier": row["carrier"], "tracking_number": row["tracking_number"],
                 "client_id": row.get("order_number") or None}
                for row in read_orders(source)
                if row.get("delivery_promise") == TODAY_PROMISE
            ]
        log.info("Today's parcels: %d", len(parcels))
        return parcels

    parcels = todays_parcels()

    wait = ParcelStatusSensor(
        task_id="wait_for_todays_parcels",
        parcels=parcels,
        conn_id="{{ params.conn_id }}",
        target_statuses=("delivered", "exception", "expired"),
        require="all",
        fail_on=("exception", "expired"),
        deferrable=True,
        poke_interval=300,
        timeout=14 * 3600,
        pre_execute=apply_wait_params,
        on_failure_callback=ParcelReportNotifier(
            title="Same-day parcels in exception",
            http_conn_id="{{ params.alert_conn_id }}",
        ),
    )

    @task(trigger_rule="all_done")
    def late_parcels_report(**context: Any) -> list[dict[str, Any]]:
        """The warehouse's late parcels (past ETA, in exception, or too old), latest first."""
        params = context["params"]
        for change in table_changes(context):
            log.info("parcel_tracking changed (%s parcels from %s): status changes %s, %s error(s)",
                     change.get("parcels"), change.get("provider"), change.get("status_changes"), change.get("errors"))
        warehouse = ParcelWarehouse(params["warehouse_conn_id"], table_prefix=params["table_prefix"])
        max_age = dt.timedelta(days=params["max_age_days"]) if params["max_age_days"] else None
        late = warehouse.late_parcels(max_age=max_age)
        lines = [
            f"{row['tracking_number']} ({row['carrier']}, {row['provider']}): {row['status']}"
            + (f", {row['days_late']:.1f} d late" if row["days_late"] else "")
            + f" [{', '.join(row['reasons'])}]"
            for row in late
        ]
        log.warning("%d late parcel(s) in the warehouse%s", len(late), "".join(f"\n  {line}" for line in lines))
        return [
            {key: value.isoformat() if isinstance(value, dt.datetime) else value for key, value in row.items()}
            for row in late
        ]

    @task(trigger_rule="one_failed", retries=0)
    def sla_breached() -> None:
        """Fail the run when waiting failed (a parcel in exception, a timeout or an error)."""
        raise AirflowFailException("today's parcels did not all arrive: see wait_for_todays_parcels and the alert")

    wait >> [late_parcels_report(), sla_breached()]
