"""DAG of the reliability suite's secrets test (tests/reliability/test_reliability_secrets.py).

Every flow of the package in one run, each against connection ``rel_secret_<api>``: tracking
into a warehouse for the five APIs, parcelLab orders, TrackingMore registrations, a deferrable
sensor (its trigger polls with the async client), and a tracking task whose key is refused
(connection ``rel_secret_wrong``). The parcels and orders come from ``dag_run.conf``.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from airflow_provider_parcels.operators.orders import CreateParcelLabOrdersOperator, CreateTrackingMoreTrackingsOperator
from airflow_provider_parcels.operators.tracking import TrackParcelsOperator
from airflow_provider_parcels.sensors.parcel_status import ParcelStatusSensor

APIS = ("whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine")

with DAG("reliability_secrets", schedule=None, start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
         catchup=False, render_template_as_native_obj=True, default_args={"retries": 0},
         tags=["reliability"]):
    for api in APIS:
        TrackParcelsOperator(
            task_id=f"track_{api}",
            conn_id=f"rel_secret_{api}",
            parcels="{{ dag_run.conf['parcels']['" + api + "'] }}",
            warehouse_conn_id="rel_secret_wh",
            table_prefix=f"{api}_",
        )
    CreateParcelLabOrdersOperator(task_id="orders", conn_id="rel_secret_parcellab",
                                  orders="{{ dag_run.conf['orders'] }}")
    CreateTrackingMoreTrackingsOperator(task_id="register", conn_id="rel_secret_trackingmore",
                                        parcels="{{ dag_run.conf['register'] }}")
    ParcelStatusSensor(task_id="wait", conn_id="rel_secret_trackflow", parcels="{{ dag_run.conf['wait'] }}",
                       deferrable=True, poke_interval=0.1, timeout=120)
    TrackParcelsOperator(task_id="wrong_key", conn_id="rel_secret_wrong",
                         parcels="{{ dag_run.conf['parcels']['shipengine'] }}")
