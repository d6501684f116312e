"""
The package in a real Airflow, used as a user does: every example DAG unpaused and triggered
through the REST API, run by the scheduler on LocalExecutor workers that reach the execution API
over HTTP, deferred sensors resumed by the triggerer, a Deadline Alert missed on purpose, and the
connection test the UI's Test button calls.

What ``dag.test()`` never exercises is the point here: the triggerer (deferrals and Deadline
Alert callbacks, whose return value Airflow writes to its ``callback`` table), the execution API
settings, runs triggered without a logical date, the REST connection test and its throw-away
connection id, and the provider's registration as the API server sees it.
"""

from __future__ import annotations

import csv
import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from airflow_deployment import EXAMPLE_DAGS, AirflowDeployment, RunResult, free_port

from airflow_provider_parcels.get_provider_info import DOCUMENTATION_URL

pytestmark = pytest.mark.e2e

#: A whole example run must finish within this; they take seconds each on an idle machine.
RUN_TIMEOUT = 240.0


def order_count() -> int:
    """The orders of the example DAGs' data file (read when a test runs, not at collection)."""
    with (EXAMPLE_DAGS / "data" / "orders.csv").open(encoding="utf-8") as orders:
        return len(list(csv.DictReader(orders)))

#: The sandbox's TrackingMore account: TMDEMO0001..0060 updated over the last 72 hours (docs/sandbox.md).
TRACKINGMORE_DEMO_TRACKINGS = 60
#: 10 s between the trigger's polls (see e2e_deferred_sensor.py for why not less).
SLA_CONF = {"poke_interval_seconds": 10}
#: The example DAGs' runs, each as (dag_id, conf).
EXAMPLE_RUNS = [
    ("parcels_warehouse_sync", {}),
    ("parcels_order_push", {}),
    ("trackingmore_incremental_sync", {"window_hours": 72}),
    ("trackingmore_incremental_sync", {}),  # no logical date, no window: the last full hour
    ("parcels_sla_alerts", SLA_CONF),
]
DEADLINE_DAG = "e2e_deadline_missed"
SENSOR_DAG = "e2e_deferred_sensor"


@pytest.fixture(scope="session")
def example_runs(airflow_deployment: AirflowDeployment) -> Iterator[dict[tuple[str, str], str]]:
    """Every example DAG and the deadline DAG unpaused and triggered at once; ``{(dag_id, run_id): conf}``."""
    deployment = airflow_deployment
    dag_ids = sorted({dag_id for dag_id, _ in EXAMPLE_RUNS} | {DEADLINE_DAG, SENSOR_DAG})
    deployment.wait_for_dags(dag_ids)
    for dag_id in dag_ids:
        deployment.unpause(dag_id)
    runs = {(DEADLINE_DAG, deployment.trigger(DEADLINE_DAG)): "{}"}
    for dag_id, conf in EXAMPLE_RUNS:
        runs[(dag_id, deployment.trigger(dag_id, conf))] = json.dumps(conf)
    yield runs


def finished(deployment: AirflowDeployment, runs: dict[tuple[str, str], str], dag_id: str) -> list[RunResult]:
    """The finished runs of ``dag_id`` among ``runs``, in trigger order."""
    keys = [key for key in runs if key[0] == dag_id]
    results = deployment.wait_for_runs(keys, RUN_TIMEOUT)
    return [results[key] for key in keys]


def xcom(deployment: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> object:
    entry = deployment.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                           params={"deserialize": "true"})
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


# --------------------------------------------------------------------------- the example DAGs


def test_warehouse_sync_tracks_every_order(airflow_deployment, example_runs):
    (run,) = finished(airflow_deployment, example_runs, "parcels_warehouse_sync")
    assert run.state == "success", run
    assert set(run.tasks.values()) == {"success"}, run.tasks
    summary = xcom(airflow_deployment, run.dag_id, run.run_id, "summarize")
    assert summary["tracked"] == order_count(), summary


def test_order_push_sends_every_order(airflow_deployment, example_runs):
    (run,) = finished(airflow_deployment, example_runs, "parcels_order_push")
    assert run.state == "success", run
    assert set(run.tasks.values()) == {"success"}, run.tasks
    assert xcom(airflow_deployment, run.dag_id, run.run_id, "record_pushed") == order_count()


def test_incremental_sync_runs_triggered_without_a_logical_date(airflow_deployment, example_runs):
    # The UI and the REST API trigger runs without a logical date: they have no data interval,
    # which dag.test() always provides.
    first_load, hourly = finished(airflow_deployment, example_runs, "trackingmore_incremental_sync")
    assert (first_load.state, hourly.state) == ("success", "success"), (first_load, hourly)
    loaded = xcom(airflow_deployment, first_load.dag_id, first_load.run_id, "sync_changed_trackings")
    # The first load covers the 72 full hours before the trigger; of the account's 60 demo
    # trackings (updated over the 72 hours before the sandbox started) the newest may fall after
    # the last full hour: the sandbox itself says how many the window holds.
    in_window = requests.get(
        f"{airflow_deployment.sandbox_url}/trackingmore/v2/trackings/get",
        params={"update_time_min": loaded["update_time_min"], "update_time_max": loaded["update_time_max"],
                "limit": 2000},
        headers={"Trackingmore-Api-Key": "sandbox-e2e-check"}, timeout=10,
    ).json()["data"]["total"]
    assert loaded["trackings"] == int(in_window), (loaded, in_window)
    assert TRACKINGMORE_DEMO_TRACKINGS - 2 <= loaded["trackings"] <= TRACKINGMORE_DEMO_TRACKINGS, loaded
    window = xcom(airflow_deployment, hourly.dag_id, hourly.run_id, "sync_changed_trackings")
    assert window["update_time_max"] - window["update_time_min"] == 3599, window
    assert window["trackings"] in (0, 1, 2), window  # one tracking changes every 72 minutes


def test_sla_alerts_defer_resume_in_the_triggerer_and_alert(airflow_deployment, example_runs):
    (run,) = finished(airflow_deployment, example_runs, "parcels_sla_alerts")
    # The alert path, by design: two same-day parcels go into exception.
    assert run.state == "failed"
    assert run.tasks == {"todays_parcels": "success", "wait_for_todays_parcels": "failed",
                         "late_parcels_report": "success", "sla_breached": "failed"}, run.tasks
    log = airflow_deployment.task_log(run.dag_id, run.run_id, "wait_for_todays_parcels")
    # (how many parcels are still open when it defers depends on the warehouse sync running at
    # the same time: the sandbox counts lookups per number)
    assert re.search(r"Deferring: \d parcel\(s\) still open", log), log[-3000:]
    assert "Pausing task as DEFERRED" in log, log[-3000:]
    assert re.search(r"Poll \d+: asked about \d parcel\(s\); 5 of 5 parcels done", log), log[-3000:]
    assert "Same-day parcels in exception: 2 late or failed parcels" in log, log[-3000:]


# --------------------------------------------------------------------------- Deadline Alerts


def test_missed_deadline_runs_the_callback_and_the_triggerer_lives_on(airflow_deployment, example_runs):
    deployment = airflow_deployment
    (run_id,) = [run for dag, run in example_runs if dag == DEADLINE_DAG]
    callbacks = wait_for_callback(deployment, run_id)
    assert len(callbacks) == 2 and all(c["missed"] for c in callbacks), callbacks
    assert [c["state"] for c in callbacks] == ["success", "success"], callbacks
    # the triggerer's (AsyncCallback) output is the report, as text in Airflow's callback table
    (callback,) = [c for c in callbacks if c["output"] and c["output"].startswith("{")]
    report = json.loads(callback["output"])
    # the callback's own parcel and the warehouse's late ones (read through the triggerer's connection)
    numbers = [parcel["tracking_number"] for parcel in report["parcels"]]
    assert report["headline"].startswith(f"e2e deadline missed: {report['count']} late or failed parcels"), report
    assert "E2EEXC1" in numbers and len(numbers) > 1, report
    # the triggerer's report reached the webhook (the executor's one goes to its log only)
    headlines = [post["json"]["text"].splitlines()[0] for post in deployment.webhook.received]
    assert [line.split(":")[0] for line in headlines] == ["e2e deadline missed"], headlines

    # The triggerer survived the callback: it still reports healthy and still runs triggers.
    health = deployment.get("/monitor/health")
    assert health["triggerer"]["status"] == "healthy", health
    assert deployment.processes["triggerer"].alive()
    number = f"POLLD2-{uuid.uuid4().hex[:8].upper()}"
    sensor_run = deployment.trigger(SENSOR_DAG, {"tracking_number": number})
    (result,) = deployment.wait_for_runs([(SENSOR_DAG, sensor_run)], RUN_TIMEOUT).values()
    assert result.state == "success", (result, deployment.log_tails(["triggerer"]))
    log = deployment.task_log(SENSOR_DAG, sensor_run, "wait_for_delivery")
    assert "Deferring: 1 parcel(s) still open" in log and "1 of 1 parcels done" in log, log[-3000:]

    (deadline_run,) = deployment.wait_for_runs([(DEADLINE_DAG, run_id)], RUN_TIMEOUT).values()
    assert deadline_run.state == "success", deadline_run


def wait_for_callback(deployment: AirflowDeployment, run_id: str, timeout: float = 120.0) -> list[dict]:
    end = time.monotonic() + timeout
    callbacks: list[dict] = []
    while time.monotonic() < end:
        deployment.check_processes()
        callbacks = deployment.deadline_callbacks(DEADLINE_DAG, run_id)
        if callbacks and all(c["state"] in ("success", "failed") for c in callbacks):
            return callbacks
        time.sleep(1.0)
    raise AssertionError(f"no finished deadline callback in {timeout:.0f} s: {callbacks}\n"
                         f"{deployment.log_tails(['scheduler', 'triggerer'])}")


# --------------------------------------------------------------------------- connections and the UI


def test_connection_test_through_the_rest_api(airflow_deployment):
    deployment = airflow_deployment
    shipengine = f"{deployment.sandbox_url}/shipengine"
    # A stored connection, as the UI's Test button sends it for an unchanged form (no password).
    answer = deployment.test_connection({"connection_id": "parcels_demo_shipengine", "conn_type": "shipengine"})
    result = answer.json()
    assert result["status"] is True, result
    # the user's own words (no random id), then what the key's shared quota ledger holds
    assert result["message"].startswith(
        f"ShipEngine at {shipengine} accepted the credentials of this connection; quota "), result
    assert "month:" in result["message"], result

    # A new connection whose host refuses: the message says which host and why.
    port = free_port()
    result = deployment.test_connection({"connection_id": "e2e_unreachable", "conn_type": "shipengine",
                                         "host": f"http://127.0.0.1:{port}/api", "password": "e2e-key-0000",
                                         "extra": json.dumps({"max_retries": 0})}).json()
    assert result["status"] is False
    assert f"connection refused by 127.0.0.1:{port}" in result["message"], result
    assert "e2e-key-0000" not in result["message"]

    # Airflow 3.3's UI sends "port": 0 for an empty port field; the API then wants the credentials
    # again and answers 400 (docs/running_on_airflow.md says so; this tells when Airflow fixes it).
    answer = deployment.test_connection({"connection_id": "parcels_demo_shipengine", "conn_type": "shipengine",
                                         "host": shipengine, "port": 0}, expect=(200, 400))
    assert answer.status_code == 400 and "host or port" in answer.text, answer.text


def test_connection_test_on_the_command_line(airflow_deployment):
    deployment = airflow_deployment
    done = deployment.airflow_cli("connections", "test", "parcels_demo_trackingmore")
    assert "Connection success!" in done.stdout, done.stdout
    # a failure names the user's connection (the CLI tests it under its own id)
    body = {"connection_id": "e2e_wrong_key", "conn_type": "shipengine", "host": f"{deployment.sandbox_url}/shipengine",
            "password": "wrong-key-e2e-1234"}
    deployment.request("POST", "/connections", json=body, expect=(201,))
    done = deployment.airflow_cli("connections", "test", "e2e_wrong_key", check=False)
    assert done.returncode == 1, done
    assert "ShipEngine refused the credentials of connection 'e2e_wrong_key' (HTTP 401" in done.stdout, done.stdout
    assert "wrong-key-e2e-1234" not in done.stdout + done.stderr


def test_a_connection_saved_by_the_ui_form_with_nulls_still_works(airflow_deployment):
    # The UI's form writes every extra field it shows, unset ones as null.
    deployment = airflow_deployment
    fields = deployment.get("/ui/connections/hook_meta")
    whereparcel = next(hook for hook in fields if hook["connection_type"] == "whereparcel")
    nulls = dict.fromkeys(whereparcel["extra_fields"], None)
    assert "plan" in nulls
    body = {"connection_id": "e2e_ui_saved", "conn_type": "whereparcel", "login": "sandbox-key",
            "host": f"{deployment.sandbox_url}/whereparcel", "password": "sandbox-secret", "extra": json.dumps(nulls)}
    deployment.request("POST", "/connections", json=body, expect=(201,))
    done = deployment.airflow_cli("connections", "test", "e2e_ui_saved")
    assert "Connection success!" in done.stdout, done.stdout


def test_the_ui_shows_the_provider_with_its_forms_and_documentation(airflow_deployment):
    deployment = airflow_deployment
    providers = deployment.get("/providers", params={"limit": 1000})["providers"]
    (ours,) = [p for p in providers if p["package_name"] == "airflow-provider-parcels"]
    assert ours["documentation_url"] == DOCUMENTATION_URL, ours
    hooks = {hook["connection_type"]: hook for hook in deployment.get("/ui/connections/hook_meta")}
    for conn_type in ("whereparcel", "trackingmore", "trackflow", "shipengine"):
        plan = hooks[conn_type]["extra_fields"]["plan"]["schema"]
        assert None not in plan["enum"], (conn_type, plan)
    assert set(hooks) >= {"whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine"}
