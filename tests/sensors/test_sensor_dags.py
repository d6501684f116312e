"""ParcelStatusSensor in real DAG runs (``dag.test()``) against the sandbox over loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.dags import run_dag, task_states, xcom_pull
from helpers.tracking import numbered as parcels

COMPACT_KEYS = {"tracking_number", "carrier", "provider", "status", "error"}


def _read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("dag_id", ["sensor_wait_poke", "sensor_wait_reschedule", "sensor_wait_deferrable"])
def test_sensor_succeeds_asking_only_about_open_parcels(dag_id, sandbox, sensor_conn):
    # 10 delivered at once, 5 delivered at their 4th lookup: 15 requests, then 5 per poll, 3 times.
    wanted = parcels("DLV", 10) + parcels("POLLD3", 5)
    run = run_dag(dag_id, conf={"conn_id": sensor_conn("shipengine"), "parcels": wanted})

    assert task_states(run) == {"wait": "success"}
    stats = sandbox.stats()["shipengine"]
    assert stats["requests"] == 15 + 5 * 3, stats
    assert stats["items"] == 30
    assert stats["rate_limited"] == 0
    result = xcom_pull(run, "wait")
    assert [r["tracking_number"] for r in result] == [p["tracking_number"] for p in wanted]
    assert {r["status"] for r in result} == {"delivered"}
    for entry in result:
        assert set(entry) >= COMPACT_KEYS and "raw" not in entry and "events" not in entry


def test_require_any_succeeds_on_the_first_arrival(sandbox, sensor_conn):
    wanted = parcels("TRN", 3) + parcels("POLLD1", 1)
    run = run_dag("sensor_require_any", conf={"conn_id": sensor_conn("trackflow"), "parcels": wanted})

    assert task_states(run) == {"wait": "success"}
    statuses = {r["tracking_number"]: r["status"] for r in xcom_pull(run, "wait")}
    assert statuses == {"TRN-000001": "in_transit", "TRN-000002": "in_transit", "TRN-000003": "in_transit",
                        "POLLD1-000001": "delivered"}
    assert sandbox.stats()["trackflow"]["items"] == 4 + 4  # two polls of the four open parcels


@pytest.mark.parametrize("dag_id", ["sensor_fail_on", "sensor_fail_on_deferrable"])
def test_fail_on_exception_fails_and_callbacks_get_the_parcels(dag_id, sandbox, sensor_conn, webhook, tmp_path):
    calls = tmp_path / "callbacks.jsonl"
    wanted = parcels("DLV", 2) + parcels("POLLX1", 1) + parcels("TRN", 2)
    run = run_dag(dag_id, conf={"conn_id": sensor_conn("whereparcel"), "parcels": wanted,
                                "callback_file": str(calls)})

    assert task_states(run) == {"wait": "failed"}
    (call,) = _read_lines(calls)
    assert call["exception"] == "ParcelStatusFailure"
    assert "POLLX1-000001" in call["message"] and "exception" in call["message"]
    assert [(p["tracking_number"], p["status"]) for p in call["parcels"]] == [("POLLX1-000001", "exception")]
    assert call["xcom_failed_parcels"] == call["parcels"]
    # Second poll asked only about the three open parcels (WhereParcel batches of 5: 1 + 1 requests).
    assert sandbox.stats()["whereparcel"]["items"] == 5 + 3
    # The ParcelReportNotifier callback posted the report to the webhook.
    (post,) = webhook
    assert post["path"] == "/hooks"
    assert post["json"]["text"].startswith("Parcels failed: 1 late or failed parcel")
    assert "POLLX1-000001 (ups): exception" in post["json"]["text"]
    assert post["json"]["blocks"][0]["type"] == "header"


@pytest.mark.parametrize("dag_id", ["sensor_timeout", "sensor_timeout_deferrable"])
def test_timeout_lists_the_open_parcels(dag_id, sandbox, sensor_conn, tmp_path):
    calls = tmp_path / "callbacks.jsonl"
    wanted = parcels("DLV", 1) + parcels("TRN", 2)
    run = run_dag(dag_id, conf={"conn_id": sensor_conn("shipengine"), "parcels": wanted,
                                "callback_file": str(calls)})

    assert task_states(run) == {"wait": "failed"}
    (call,) = _read_lines(calls)
    assert call["exception"] == "ParcelWaitTimeout"
    assert "2 of 3 parcel(s) still open" in call["message"]
    assert "TRN-000001" in call["message"] and "TRN-000002" in call["message"]
    assert sorted((p["tracking_number"], p["status"]) for p in call["parcels"]) == [
        ("TRN-000001", "in_transit"), ("TRN-000002", "in_transit")]
