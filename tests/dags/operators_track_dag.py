"""Test DAG: TrackParcelsOperator into a warehouse, plain and mapped, driven by params."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, task

from airflow_provider_parcels.operators.tracking import OPEN_PARCELS, TrackParcelsOperator

with DAG("operators_track_native", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False,
         render_template_as_native_obj=True,
         params={"conn_id": "track_api", "parcels": [], "prefix": ""}) as native_dag:
    first = TrackParcelsOperator(
        task_id="track",
        conn_id="{{ params.conn_id }}",
        parcels="{{ params.parcels }}",
        warehouse_conn_id="parcels_test_sqlite",
        table_prefix="{{ params.prefix }}",
        chunk_size=7,
    )
    again = TrackParcelsOperator(
        task_id="track_open",
        conn_id="{{ params.conn_id }}",
        parcels=OPEN_PARCELS,
        warehouse_conn_id="parcels_test_sqlite",
        table_prefix="{{ params.prefix }}",
    )
    first >> again

with DAG("operators_track_mapped", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False,
         render_template_as_native_obj=True, params={"parcels": []}) as mapped_dag:

    @task
    def split(**context) -> list[list[dict]]:
        parcels = context["params"]["parcels"]
        return [parcels[i : i + 10] for i in range(0, len(parcels), 10)]

    TrackParcelsOperator.partial(
        task_id="track", conn_id="track_api", warehouse_conn_id="parcels_test_sqlite",
        quota_share="auto", max_active_tis_per_dagrun=2,
    ).expand(parcels=split())
