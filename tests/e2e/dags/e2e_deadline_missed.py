"""A run that misses its Deadline Alert on purpose: the deadline is seconds after the run is
queued and its only task takes longer. The callback is the package's ``deadline_report_callback``
(runs in the triggerer), reading the example DAGs' warehouse connection as the example does."""

from __future__ import annotations

import datetime as dt
import time

from airflow.sdk import DAG, AsyncCallback, DeadlineAlert, DeadlineReference, SyncCallback, task

from airflow_provider_parcels.notifications.parcel_report import (
    deadline_report_callback,
    deadline_report_sync_callback,
)

#: Seconds after the run is queued when the deadline passes; the task outlives it.
DEADLINE_SECONDS = 3
TASK_SECONDS = 20

with DAG(
    dag_id="e2e_deadline_missed",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["e2e"],
    deadline=[
        # in the triggerer: reads the warehouse and posts to the webhook (connection e2e_alerts)
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=dt.timedelta(seconds=DEADLINE_SECONDS),
            callback=AsyncCallback(
                deadline_report_callback,
                kwargs={
                    "warehouse_conn_id": "parcels_demo_warehouse",
                    "http_conn_id": "e2e_alerts",
                    "use_context": False,
                    "parcels": [{"tracking_number": "E2EEXC1", "carrier": "ups", "status": "exception"}],
                    "title": "e2e deadline missed",
                },
            ),
        ),
        # on the executor: the sync twin, to the log only (Airflow 3.3 refuses executor
        # callbacks every connection; see deadline_report_sync_callback)
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=dt.timedelta(seconds=DEADLINE_SECONDS),
            callback=SyncCallback(
                deadline_report_sync_callback,
                kwargs={
                    "use_context": False,
                    "parcels": [{"tracking_number": "E2EEXC2", "carrier": "ups", "status": "exception"}],
                    "title": "e2e sync deadline missed",
                },
            ),
        ),
    ],
):

    @task
    def outlive_the_deadline() -> None:
        time.sleep(TASK_SECONDS)

    outlive_the_deadline()
