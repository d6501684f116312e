"""
Hourly incremental TrackingMore sync: only the trackings that changed in the run's data interval,
paged, upserted into the warehouse. The pattern for large accounts.

What it shows
-------------
* ``TrackingMoreHook.iter_trackings(update_time_min=, update_time_max=)``: ``GET /trackings/get``
  filtered on TrackingMore's ``updated_at`` and read page by page (up to 2 000 a page), instead
  of asking about every parcel every hour. A run costs one request per page of *changed*
  trackings, however many the account holds.
* The window is the run's data interval ``[data_interval_start, data_interval_end)`` in epoch
  seconds (``update_time_max`` is inclusive, so it is the end minus one second): consecutive
  runs neither miss nor repeat a change, a backfill re-reads exactly its hours, and a rerun of
  an hour loads the same rows again (idempotent upserts). A run triggered without a logical
  date (Airflow 3's default for the Trigger button and the REST API) has no data interval: it
  covers the last full hour before it was triggered.
* Streaming: ``result_from_item`` turns each listed tracking into a ``TrackingResult`` and
  ``ParcelWarehouse.load`` upserts them ``load_chunk`` at a time, so memory stays flat.
* Assets from your own task: it declares the warehouse tables' assets as outlets
  (``warehouse_table_assets``) and puts the load counts on their events (``WarehouseChanges``),
  as ``TrackParcelsOperator`` does, so DAGs scheduled on ``parcel_tracking`` run after it too.

Run it with no setup (the sandbox and a SQLite file)
----------------------------------------------------
The sandbox's TrackingMore account holds 60 trackings ``TMDEMO0001``..``0060`` updated over the
last 72 hours (one every 72 minutes), so an hourly window holds zero or one of them. Start
``python -m airflow_provider_parcels.sandbox --port 8765``, define ``parcels_demo_trackingmore``
and ``parcels_demo_warehouse``, then ``airflow dags test trackingmore_incremental_sync``; add
``-c '{"window_hours": 72}'`` for a first load of the last three days (60 trackings).

Point it at a real account and a real warehouse
-----------------------------------------------
* ``conn_id``: a ``trackingmore`` connection, API key in the password, extra ``plan``.
* ``warehouse_conn_id``: any common-sql connection; rows land under provider ``trackingmore``
  in ``parcel_tracking`` / ``parcel_tracking_events`` (``table_prefix`` to keep them apart).
* A first load: run with ``window_hours`` covering the history you want (or backfill the
  hourly intervals: ``airflow backfill create --dag-id trackingmore_incremental_sync ...``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_parcels.hooks.trackingmore import TrackingMoreHook
from airflow_provider_parcels.lineage.assets import warehouse_table_assets
from airflow_provider_parcels.lineage.events import WarehouseChanges
from airflow_provider_parcels.warehouse import LoadCounts, ParcelWarehouse

try:  # an hourly schedule whose runs carry real [start, end) data intervals
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # pragma: no cover - Airflow before the timetables moved to the task SDK
    from airflow.timetables.interval import CronDataIntervalTimetable

log = logging.getLogger(__name__)


def run_window(context: Any) -> tuple[dt.datetime, dt.datetime]:
    """
    The hour this run covers: its data interval; for a run triggered without a logical date
    (the UI's and the REST API's default in Airflow 3), which has none, the last full hour
    before the run was triggered.
    """
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None:
        return start, end
    after = context["dag_run"].run_after
    end = after.replace(minute=0, second=0, microsecond=0)
    return end - dt.timedelta(hours=1), end


#: The warehouse param's default: the tables' assets are declared from it (outlets are known at parse time).
WAREHOUSE_CONN_ID = "parcels_demo_warehouse"

with DAG(
    dag_id="trackingmore_incremental_sync",
    description="Upsert the TrackingMore trackings changed in each hour",
    # CronDataIntervalTimetable, not "@hourly": Airflow 3 turns a cron string into a trigger
    # timetable whose runs have an empty data interval; this job needs the hour it covers.
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=2)},
    tags=["parcels", "example", "trackingmore"],
    doc_md=__doc__,
    params={
        "conn_id": Param("parcels_demo_trackingmore", type="string", description="TrackingMore connection."),
        "warehouse_conn_id": Param(WAREHOUSE_CONN_ID, type="string", description="Warehouse connection."),
        "table_prefix": Param("", type="string", description="Prefix of the warehouse tables."),
        "window_hours": Param(None, type=["null", "number"], exclusiveMinimum=0,
                              description="Read this many hours up to the interval's end instead (first loads)."),
        "page_size": Param(2000, type="integer", minimum=1, maximum=2000, description="Trackings per page."),
        "load_chunk": Param(1000, type="integer", minimum=1, description="Trackings upserted per transaction."),
    },
) as dag:

    @task(outlets=warehouse_table_assets(WAREHOUSE_CONN_ID))
    def sync_changed_trackings(**context: Any) -> dict[str, Any]:
        """Page through the trackings updated in the window and upsert them chunk by chunk."""
        params = context["params"]
        start, end = run_window(context)
        if params["window_hours"]:
            start = end - dt.timedelta(hours=float(params["window_hours"]))
        low, high = int(start.timestamp()), int(end.timestamp()) - 1
        log.info("TrackingMore trackings updated in [%s, %s) (epoch %d..%d)", start, end, low, high)

        hook = TrackingMoreHook(params["conn_id"])
        warehouse = ParcelWarehouse(params["warehouse_conn_id"], table_prefix=params["table_prefix"])
        by_status: Counter[str] = Counter()
        counts = LoadCounts()
        chunk = []
        try:
            for item in hook.iter_trackings(update_time_min=low, update_time_max=high,
                                            page_size=params["page_size"]):
                result = hook.result_from_item(item)
                by_status[result.status.value] += 1
                chunk.append(result)
                if len(chunk) >= params["load_chunk"]:
                    counts += warehouse.load(chunk)
                    chunk = []
            if chunk:
                counts += warehouse.load(chunk)
        finally:
            hook.close()
        total = sum(by_status.values())
        log.info("%d changed tracking(s): %s; rows %s", total, dict(by_status), counts.to_dict())
        # what changed, on the asset events of the two tables (status changes are not read here: null)
        changes = WarehouseChanges(params["warehouse_conn_id"], params["table_prefix"])
        changes.add(counts, None)
        changes.attach(context, context["task"].outlets, changes.extras("trackingmore", total))
        return {
            "window": [start.isoformat(), end.isoformat()],
            "update_time_min": low,
            "update_time_max": high,
            "trackings": total,
            "by_status": dict(sorted(by_status.items())),
            "rows": counts.to_dict(),
        }

    sync_changed_trackings()
