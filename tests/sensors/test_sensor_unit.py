"""ParcelStatusSensor without a DAG run: arguments, parcels input, the deferral it asks for."""

from __future__ import annotations

import json

import pytest
from helpers.tracking import numbered as parcels

from airflow_provider_parcels.models import InvalidParcelError
from airflow_provider_parcels.sensors.condition import ParcelWait, coerce_parcels
from airflow_provider_parcels.sensors.exceptions import ParcelStatusFailure
from airflow_provider_parcels.sensors.parcel_status import ParcelStatusSensor
from airflow_provider_parcels.triggers.parcel_status import ParcelStatusTrigger


class _TI:
    task_id = "wait"
    try_number = 1

    def __init__(self) -> None:
        self.pushed: dict = {}

    def xcom_push(self, key: str, value) -> None:
        self.pushed[key] = value


def _sensor(conn_id: str, wanted, **kwargs) -> ParcelStatusSensor:
    return ParcelStatusSensor(task_id="wait", conn_id=conn_id, parcels=wanted, poke_interval=0.1, **kwargs)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="mode is the sensor's poke/reschedule switch"):
        _sensor("c", [], require="poke")
    with pytest.raises(ValueError, match="fail_on: unknown parcel status 'lost'"):
        _sensor("c", [], fail_on=("lost",))
    with pytest.raises(ValueError, match="target_statuses"):
        _sensor("c", [], target_statuses=())
    sensor = _sensor("c", [], fail_on=(), target_statuses=("DELIVERED",))
    assert sensor.fail_on == [] and sensor.target_statuses == ["delivered"] and sensor.mode == "poke"


def test_parcels_input_forms():
    text = json.dumps(parcels("DLV", 2) + parcels("DLV", 1))  # a JSON text, with a duplicate
    assert [p.tracking_number for p in coerce_parcels(text)] == ["DLV-000001", "DLV-000002"]
    with pytest.raises(InvalidParcelError, match=r"2 invalid parcel\(s\): parcel #0.*parcel #2"):
        coerce_parcels([{"carrier": "ups"}, parcels("DLV", 1)[0], {"carrier": "ups", "tracking_number": "a b"}])
    with pytest.raises(InvalidParcelError, match="empty"):
        coerce_parcels([])


def test_require_any_and_fail_on_precedence():
    wait = ParcelWait(coerce_parcels(parcels("X", 2)), require="any")
    first, second = ({"carrier": "ups", "tracking_number": f"X-00000{i}", "status": s, "error": None}
                     for i, s in ((1, "delivered"), (2, "exception")))
    wait.record([first])
    assert wait.met() and not wait.failed() and [p.tracking_number for p in wait.open_parcels()] == ["X-000002"]
    wait.record([second])
    assert wait.met() and wait.failed() == [second]  # the sensor checks failed() first: it fails


def test_deferrable_first_check_on_the_worker_then_a_trigger_of_open_parcels(sandbox, sensor_conn):
    from airflow.sdk.exceptions import TaskDeferred

    conn_id = sensor_conn("trackflow")
    sensor = _sensor(conn_id, parcels("DLV", 3) + parcels("TRN", 2), deferrable=True, timeout=30,
                     hook_params={"max_retries": 1})
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": _TI()})

    trigger = deferred.value.trigger
    assert isinstance(trigger, ParcelStatusTrigger) and deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["conn_type"] == "trackflow" and kwargs["hook_params"] == {"max_retries": 1}
    assert kwargs["parcels"] == parcels("TRN", 2)
    assert [d["tracking_number"] for d in kwargs["done"]] == ["DLV-000001", "DLV-000002", "DLV-000003"]
    assert kwargs["poll_interval"] == 0.1 and kwargs["end_time"] - kwargs["started_at"] == 30
    assert sandbox.stats()["trackflow"]["items"] == 5


def test_execute_complete_turns_events_into_outcomes():
    sensor = _sensor("c", [])
    results = [{"tracking_number": "A", "carrier": "ups", "status": "delivered", "error": None}]
    assert sensor.execute_complete({}, {"status": "success", "message": "ok", "results": results}) == results
    ti = _TI()
    failed = [{"tracking_number": "B", "carrier": "ups", "status": "exception", "error": None}]
    with pytest.raises(ParcelStatusFailure, match="B is lost") as err:
        sensor.execute_complete({"ti": ti}, {"status": "failed", "message": "B is lost", "failed": failed})
    assert err.value.parcels == failed and ti.pushed == {"failed_parcels": failed}
    with pytest.raises(Exception, match="failed on the triggerer: boom") as err:
        sensor.execute_complete({}, {"status": "error", "message": "boom"})
    assert not isinstance(err.value, ParcelStatusFailure)  # an error may be retried; fail_on is not
