"""ParcelStatusTrigger run directly on an asyncio loop against the sandbox."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from helpers.tracking import numbered as parcels

from airflow_provider_parcels.triggers.parcel_status import ParcelStatusTrigger

SECRET_KEY = "sandbox-SeCrEt-4711"


def make_trigger(conn_id: str, conn_type: str, wanted: list[dict], **kwargs) -> ParcelStatusTrigger:
    kwargs.setdefault("poll_interval", 0.1)
    kwargs.setdefault("end_time", time.time() + 30)
    return ParcelStatusTrigger(conn_id=conn_id, conn_type=conn_type, parcels=wanted, **kwargs)


def run_trigger(trigger: ParcelStatusTrigger) -> list[dict]:
    """Every event the trigger yields (it must yield exactly one)."""

    async def collect() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_serialize_round_trips_with_json_values_and_no_secret(sandbox, sensor_conn):
    conn_id = sensor_conn("trackflow", key=SECRET_KEY)
    done = {"tracking_number": "DLV-1", "carrier": "ups", "provider": "trackflow", "status": "delivered",
            "error": None}
    trigger = make_trigger(conn_id, "trackflow", parcels("POLLD1", 2), done=[done], fail_on=(),
                           require="any", hook_params={"quota_share": 0.5}, end_time=1_900_000_000.5)
    classpath, kwargs = trigger.serialize()

    assert classpath == "airflow_provider_parcels.triggers.parcel_status.ParcelStatusTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs  # JSON values only
    assert kwargs["parcels"] == parcels("POLLD1", 2) and kwargs["done"] == [done]
    assert kwargs["end_time"] == 1_900_000_000.5 and kwargs["require"] == "any" and kwargs["fail_on"] == []
    rebuilt = ParcelStatusTrigger(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    # Even after polling (the hook has read the key) nothing serialized holds it.
    rebuilt.end_time = time.time() + 30
    (event,) = run_trigger(rebuilt)
    assert event["status"] == "success"
    assert SECRET_KEY not in repr(rebuilt.serialize()) and SECRET_KEY not in json.dumps(event)


def test_event_when_the_condition_holds_polls_only_open_parcels(sandbox, sensor_conn):
    conn_id = sensor_conn("whereparcel")
    done = [{"tracking_number": f"DLV-{i}", "carrier": "ups", "status": "delivered", "error": None}
            for i in range(3)]
    (event,) = run_trigger(make_trigger(conn_id, "whereparcel", parcels("POLLD2", 7), done=done))

    assert event["status"] == "success" and event["polls"] == 3
    assert len(event["results"]) == 10 and {r["status"] for r in event["results"]} == {"delivered"}
    assert event["failed"] == [] and event["open"] == []
    stats = sandbox.stats()["whereparcel"]
    assert stats["items"] == 7 * 3 and stats["requests"] == 2 * 3  # full batches of 5: 5 + 2


def test_event_on_a_fail_on_status(sandbox, sensor_conn):
    conn_id = sensor_conn("shipengine")
    (event,) = run_trigger(make_trigger(conn_id, "shipengine", parcels("POLLX1", 1) + parcels("TRN", 2)))

    assert event["status"] == "failed"
    assert [(p["tracking_number"], p["status"]) for p in event["failed"]] == [("POLLX1-000001", "exception")]
    assert "POLLX1-000001" in event["message"]
    assert {p["tracking_number"] for p in event["open"]} == {"TRN-000001", "TRN-000002"}


def test_event_on_timeout_lists_open_parcels(sandbox, sensor_conn):
    conn_id = sensor_conn("parcellab")
    trigger = make_trigger(conn_id, "parcellab", parcels("TRN", 2) + parcels("DLV", 1), poll_interval=0.2,
                           end_time=time.time() + 0.5)
    (event,) = run_trigger(trigger)

    assert event["status"] == "timeout"
    assert "2 of 3 parcel(s) still open" in event["message"] and "TRN-000002" in event["message"]
    assert sorted(p["tracking_number"] for p in event["open"]) == ["TRN-000001", "TRN-000002"]


# TrackingMore says "wrong key" inside an HTTP 200 (meta.code); ShipEngine with a 401.
@pytest.mark.parametrize(("api", "batches"), [("shipengine", 3), ("trackingmore", 1)])
def test_error_event_on_a_wrong_key_without_the_key(api, batches, sandbox, sensor_conn):
    wrong = "wrong-key-0123456789"
    conn_id = sensor_conn(api, key=wrong)
    (event,) = run_trigger(make_trigger(conn_id, api, parcels("DLV", 3)))

    assert event["status"] == "error"
    assert conn_id in event["message"] and "refused the credentials" in event["message"]
    assert wrong not in json.dumps(event)
    # Never retried: at most one request per batch (the first refusal ends the poll).
    assert 1 <= sandbox.stats()[api]["requests"] <= batches


def test_error_event_on_a_bad_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PARCELS_NO_KEY", json.dumps({"conn_type": "shipengine", "host": "x"}))
    (event,) = run_trigger(make_trigger("parcels_no_key", "shipengine", parcels("DLV", 1)))
    assert event["status"] == "error" and "has no API key" in event["message"]


def test_trigger_keeps_to_the_quota_with_many_parcels(sandbox, sensor_conn):
    # The sandbox enforces 120 requests a minute; the connection says the same, and the hook's
    # limiter paces the 30 one-parcel ShipEngine calls (about 0.51 s apart, burst of one).
    sandbox.configure(rpm=120)
    conn_id = sensor_conn("shipengine", conn_id="parcels_quota_test", requests_per_minute=120)
    trigger = make_trigger(conn_id, "shipengine", parcels("DLV", 30), poll_interval=0)
    started = time.monotonic()
    (event,) = run_trigger(trigger)
    elapsed = time.monotonic() - started

    assert event["status"] == "success"
    stats = sandbox.stats()["shipengine"]
    assert stats["requests"] == 30 and stats["rate_limited"] == 0
    assert stats["status_counts"] == {"200": 30}
    predicted = 29 * 60 / (120 * 0.98)  # 29 gaps at the limiter's interval (2 % safety margin)
    print(f"\n30 requests at requests_per_minute=120: {elapsed:.1f} s (pacing predicts ~{predicted:.1f} s)")
