"""One deferrable ``ParcelStatusSensor`` on one sandbox parcel: it defers at once and only the
triggerer can finish it (``POLLD<k>`` numbers are delivered at the k-th lookup)."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from airflow_provider_parcels.sensors.parcel_status import ParcelStatusSensor

with DAG(
    dag_id="e2e_deferred_sensor",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["e2e"],
    params={"tracking_number": Param("POLLD2-E2E0", type="string")},
):
    ParcelStatusSensor(
        task_id="wait_for_delivery",
        parcels=[{"carrier": "ups", "tracking_number": "{{ params.tracking_number }}"}],
        conn_id="parcels_demo_shipengine",
        target_statuses=("delivered",),
        deferrable=True,
        # The trigger's first poll, 10 s after the deferral, finds a POLLD2 parcel delivered.
        # Not less: in Airflow 3.3 a trigger that fires while the scheduler has not yet processed
        # the deferring attempt's exit can have the resumed task failed as "state changed externally".
        poke_interval=10,
        timeout=300,
    )
