"""DAGs of the reliability suite (tests/reliability): a tracking load and a parcelLab order run that
the crash tests kill part-way and run again, each run in a process of its own.

Everything a test varies comes from ``dag_run.conf``: ``warehouse`` (the warehouse connection id)
and ``orders``. The tracking API is connection ``rel_crash_api``, the parcels come from a SQL
query on connection ``rel_crash_source``, the orders go to connection ``rel_crash_parcellab``.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from airflow_provider_parcels.operators.orders import CreateParcelLabOrdersOperator
from airflow_provider_parcels.operators.tracking import TrackParcelsOperator

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
#: Parcels per chunk: one load transaction each; the crash test kills after a few of them.
CHUNK_SIZE = 40


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True,
               default_args={"retries": 0}, tags=["reliability"])


with _dag("reliability_track"):
    TrackParcelsOperator(
        task_id="track",
        conn_id="rel_crash_api",
        parcels="SELECT carrier, tracking_number, client_id FROM source_parcels ORDER BY tracking_number",
        source_conn_id="rel_crash_source",
        warehouse_conn_id="{{ dag_run.conf['warehouse'] }}",
        chunk_size=CHUNK_SIZE,
    )

with _dag("reliability_orders"):
    CreateParcelLabOrdersOperator(
        task_id="create_orders",
        conn_id="rel_crash_parcellab",
        orders="{{ dag_run.conf['orders'] }}",
        fail_on_errors=True,
    )
