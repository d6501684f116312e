"""Test DAG: order creation operators, driven by params."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from airflow_provider_parcels.operators.orders import (
    CreateParcelLabOrdersOperator,
    CreateTrackingMoreTrackingsOperator,
)

with DAG("operators_orders", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False,
         render_template_as_native_obj=True, params={"orders": [], "parcels": []}):
    CreateParcelLabOrdersOperator(task_id="orders", conn_id="orders_parcellab", orders="{{ params.orders }}")
    CreateTrackingMoreTrackingsOperator(task_id="trackings", conn_id="orders_trackingmore",
                                        parcels="{{ params.parcels }}")

with DAG("operators_orders_strict", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False,
         render_template_as_native_obj=True, params={"orders": []}):
    CreateParcelLabOrdersOperator(task_id="orders", conn_id="orders_parcellab", orders="{{ params.orders }}",
                                  fail_on_errors=True)
