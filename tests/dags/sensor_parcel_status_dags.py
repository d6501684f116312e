"""DAGs for tests/sensors: ParcelStatusSensor in poke, reschedule and deferrable mode, ``require="any"``,
``fail_on`` with failure callbacks, and a timeout.

Everything a test varies comes from ``dag_run.conf`` (rendered as native objects):
``conn_id``, ``parcels`` and ``callback_file`` (where the failure callback appends one JSON line).
The webhook notifier posts to connection ``parcels_test_webhook`` when the test defines it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_parcels.notifications.parcel_report import ParcelReportNotifier
from airflow_provider_parcels.sensors.parcel_status import ParcelStatusSensor

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
CONF_PARCELS = "{{ dag_run.conf['parcels'] }}"
CONF_CONN = "{{ dag_run.conf['conn_id'] }}"


def record_failure(context) -> None:
    """Append what the failure callback sees to ``dag_run.conf['callback_file']``."""
    path = context["dag_run"].conf.get("callback_file")
    if not path:
        return
    error = context.get("exception")
    ti = context["ti"]
    entry = {
        "task_id": ti.task_id,
        "exception": type(error).__name__,
        "message": str(error),
        "parcels": getattr(error, "parcels", None),
        "xcom_failed_parcels": ti.xcom_pull(task_ids=ti.task_id, key="failed_parcels"),
    }
    with Path(path).open("a") as fh:
        fh.write(json.dumps(entry) + "\n")


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        render_template_as_native_obj=True,
        default_args={"retries": 0},
        tags=["sensor-tests"],
    )


for mode, deferrable in (("poke", False), ("reschedule", False), ("poke", True)):
    name = "deferrable" if deferrable else mode
    with _dag(f"sensor_wait_{name}"):
        ParcelStatusSensor(
            task_id="wait",
            conn_id=CONF_CONN,
            parcels=CONF_PARCELS,
            mode=mode,
            deferrable=deferrable,
            poke_interval=0.2,
            timeout=60,
            on_failure_callback=record_failure,
        )

with _dag("sensor_require_any"):
    ParcelStatusSensor(
        task_id="wait",
        conn_id=CONF_CONN,
        parcels=CONF_PARCELS,
        require="any",
        target_statuses=("delivered",),
        poke_interval=0.2,
        timeout=60,
    )

for name, deferrable in (("fail_on", False), ("fail_on_deferrable", True)):
    with _dag(f"sensor_{name}"):
        ParcelStatusSensor(
            task_id="wait",
            conn_id=CONF_CONN,
            parcels=CONF_PARCELS,
            fail_on=("exception",),
            deferrable=deferrable,
            poke_interval=0.2,
            timeout=60,
            on_failure_callback=[
                record_failure,
                ParcelReportNotifier(http_conn_id="parcels_test_webhook", title="Parcels failed"),
            ],
        )

for name, deferrable in (("timeout", False), ("timeout_deferrable", True)):
    with _dag(f"sensor_{name}"):
        ParcelStatusSensor(
            task_id="wait",
            conn_id=CONF_CONN,
            parcels=CONF_PARCELS,
            deferrable=deferrable,
            poke_interval=0.2,
            timeout=1,
            on_failure_callback=record_failure,
        )
