"""Test DAGs of issue 19 (tests/lineage): tracking tasks whose warehouse tables are assets, and their consumers."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Asset, task

from airflow_provider_parcels.lineage.assets import warehouse_table_assets
from airflow_provider_parcels.operators.tracking import OPEN_PARCELS, TrackParcelsOperator

START = dt.datetime(2026, 1, 1)
#: The warehouse connection of these DAGs (each test points it at a SQLite file or PostgreSQL).
WAREHOUSE = "lineage_wh"
PARCELS_TABLE, EVENTS_TABLE = warehouse_table_assets(WAREHOUSE, "lin_")

with DAG("lineage_track", schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True,
         params={"parcels": []}):
    TrackParcelsOperator(
        task_id="track", conn_id="track_api", parcels="{{ params.parcels }}", warehouse_conn_id=WAREHOUSE,
        table_prefix="lin_", chunk_size=7, outlets=[Asset("s3://reports/parcels_seen")],
    )

with DAG("lineage_track_open", schedule=None, start_date=START, catchup=False):
    TrackParcelsOperator(task_id="track_open", conn_id="track_api", parcels=OPEN_PARCELS,
                         warehouse_conn_id=WAREHOUSE, table_prefix="lin_")

with DAG("lineage_track_sql", schedule=None, start_date=START, catchup=False):
    TrackParcelsOperator(task_id="track_sql", conn_id="track_api",
                         parcels="SELECT carrier, tracking_number FROM orders_to_track",
                         source_conn_id="lineage_source", warehouse_conn_id=WAREHOUSE, table_prefix="lin_")

with DAG("lineage_track_templated", schedule=None, start_date=START, catchup=False,
         render_template_as_native_obj=True, params={"parcels": [], "wh": WAREHOUSE}):
    # the warehouse is only known when the task runs: the user declares the outlets it renders to
    TrackParcelsOperator(
        task_id="track", conn_id="track_api", parcels="{{ params.parcels }}", warehouse_conn_id="{{ params.wh }}",
        table_prefix="lin_", outlets=warehouse_table_assets(WAREHOUSE, "lin_"),
    )

with DAG("lineage_track_mapped", schedule=None, start_date=START, catchup=False,
         render_template_as_native_obj=True, params={"parcels": []}):

    @task
    def split(**context) -> list[list[dict]]:
        parcels = context["params"]["parcels"]
        return [parcels[i : i + 5] for i in range(0, len(parcels), 5)]

    TrackParcelsOperator.partial(task_id="track", conn_id="track_api", warehouse_conn_id=WAREHOUSE,
                                 table_prefix="lin_").expand(parcels=split())

with DAG("lineage_consumer", schedule=[PARCELS_TABLE], start_date=START, catchup=False):

    @task
    def report(**context) -> list[dict]:
        """Runs when lin_parcel_tracking of lineage_wh changes: returns what the triggering events said."""
        return [dict(event.extra) for event in context["triggering_asset_events"][PARCELS_TABLE]]

    report()

with DAG("lineage_orders", schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True,
         params={"orders": [], "parcels": []}):
    from airflow_provider_parcels.operators.orders import (
        CreateParcelLabOrdersOperator,
        CreateTrackingMoreTrackingsOperator,
    )

    CreateParcelLabOrdersOperator(task_id="orders", conn_id="lineage_parcellab", orders="{{ params.orders }}")
    CreateTrackingMoreTrackingsOperator(task_id="trackings", conn_id="lineage_trackingmore",
                                        parcels="{{ params.parcels }}")

with DAG("lineage_track_demo_wh", schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True,
         params={"parcels": []}):
    # writes the example DAGs' warehouse: its parcel_tracking event is what starts parcels_sla_alerts
    TrackParcelsOperator(task_id="track", conn_id="track_api", parcels="{{ params.parcels }}",
                         warehouse_conn_id="parcels_demo_warehouse")
