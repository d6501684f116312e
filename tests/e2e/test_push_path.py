"""
The push path in a real Airflow: the api-server serving the provider's webhook plugin, the
scheduler (with its schedule loop on, so asset events start runs), the dag-processor and the
triggerer as processes, and the sandbox process pushing signed TrackFlow webhooks over loopback.

A subscribe run registers the parcels (through the operator, on a worker); a carrier scan in the
sandbox makes it POST to ``/parcels/webhooks/<conn_id>`` on the API server; the receiver commits
the exception to the warehouse and records an asset event on the alert asset; the scheduler
starts ``parcels_exception_alerts``. Measured: seconds from the sandbox's status change to the
warehouse row (goal <= 2 s) and to the alert task's start (goal <= 30 s).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests
from airflow_deployment import E2E_DAGS, AirflowDeployment, deployed
from browser import wait_for

pytestmark = pytest.mark.e2e

CONN_ID = "parcels_demo_trackflow"
TOKEN = "e2e-push-" + os.urandom(6).hex()
SECRET = "sandbox-webhook-secret"
NUMBERS = ["TRN0770001", "TRN0770002"]
#: Figures of this run, printed at the end (and read by the report).
FIGURES: dict[str, float] = {}


class PushDeployment(AirflowDeployment):
    """The e2e deployment with the scheduler's schedule loop on (asset-triggered runs need it)."""

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "True"
        env["PARCELS_SANDBOX_TOKEN"] = TOKEN
        env["PARCELS_SANDBOX_WEBHOOK_SECRET"] = SECRET
        return env


@pytest.fixture(scope="module")
def push_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PushDeployment]:
    deployment = PushDeployment(tmp_path_factory.mktemp("e2e-push"), extra_dags=sorted(E2E_DAGS.glob("*.py")),
                                max_seconds=float(os.environ.get("PARCELS_E2E_MAX_SECONDS", "900")))
    try:
        with deployed(deployment):
            yield deployment
    finally:
        if FIGURES:
            print("\npush path figures:", json.dumps(FIGURES, indent=1))


def _warehouse_status(db: Path, number: str) -> str | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT status FROM parcel_tracking WHERE tracking_number = ?", (number,)).fetchone()
    except sqlite3.OperationalError:  # no table yet
        return None
    return row[0] if row else None


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_exception_scan_reaches_warehouse_and_starts_the_alert_dag(push_deployment: PushDeployment):
    d = push_deployment
    sandbox = d.sandbox_url
    control = {"X-Sandbox-Token": TOKEN}
    # the example DAGs' TrackFlow connection (imported from the sandbox's file) gets its webhook extras
    current = d.get(f"/connections/{CONN_ID}")
    extra = {**json.loads(current.get("extra") or "{}"), "webhook_secret": SECRET,
             "warehouse_conn_id": "parcels_demo_warehouse"}
    d.request("PATCH", f"/connections/{CONN_ID}", params={"update_mask": "extra"},
              json={"connection_id": CONN_ID, "conn_type": "trackflow", "extra": json.dumps(extra)})
    plugins = d.get("/plugins")["plugins"]
    assert any(p["name"] == "parcels_webhooks" for p in plugins), plugins

    # the route exists and refuses what is not signed, before anything is subscribed
    url = f"{d.base_url}/parcels/webhooks/{CONN_ID}"
    assert requests.post(url, data=b"{}", timeout=10).status_code == 401
    assert requests.post(f"{d.base_url}/parcels/webhooks/nope", data=b"{}", timeout=10).status_code == 404

    d.wait_for_dags(["parcels_push_subscribe", "parcels_exception_alerts"])
    for dag_id in ("parcels_push_subscribe", "parcels_exception_alerts"):
        d.unpause(dag_id)
    run_id = d.trigger("parcels_push_subscribe", {"conn_id": CONN_ID, "webhook_base_url": d.base_url,
                                                   "tracking_numbers": NUMBERS, "carrier": "dhl"})
    result = d.wait_for_runs([("parcels_push_subscribe", run_id)], timeout=240)[("parcels_push_subscribe", run_id)]
    assert result.state == "success", (result, d.log_tails(["scheduler"]))
    subscriptions = requests.get(f"{sandbox}/_sandbox/webhooks", timeout=10).json()["subscriptions"]
    assert sorted(s["tracking_number"] for s in subscriptions) == NUMBERS
    assert all(s["url"] == url for s in subscriptions)
    time.sleep(3)  # let the alert DAG's asset be registered and the scheduler settle

    before = {r["dag_run_id"] for r in d.get("/dags/parcels_exception_alerts/dagRuns")["dag_runs"]}
    scan = requests.post(f"{sandbox}/_sandbox/scan", headers=control, timeout=10,
                         json={"tracking_number": NUMBERS[0], "status": "exception"}).json()
    changed_at = scan["changed_at"]
    assert scan["deliveries"] == 1

    deadline = time.time() + 30
    while _warehouse_status(d.warehouse_db, NUMBERS[0]) != "exception":
        assert time.time() < deadline, d.log_tails(["api-server"])
        time.sleep(0.02)
    FIGURES["scan_to_warehouse_row_s"] = round(time.time() - changed_at, 3)

    def acked_deliveries() -> list[dict]:
        deliveries = requests.get(f"{sandbox}/_sandbox/webhooks", timeout=10).json()["deliveries"]
        return [x for x in deliveries if x["tracking_number"] == NUMBERS[0] and x["http_status"] == 200]

    # the row is written before the receiver answers, and the sandbox logs the 2xx once it reads the answer
    acked = wait_for(acked_deliveries, timeout=10, interval=0.02, what=f"the sandbox to log a 2xx for {NUMBERS[0]}")
    FIGURES["scan_to_2xx_s"] = round(acked[0]["acked_at"] - changed_at, 3)

    deadline = time.time() + 120
    new_run = None
    while new_run is None:
        assert time.time() < deadline, d.log_tails(["scheduler", "api-server"])
        runs = [r for r in d.get("/dags/parcels_exception_alerts/dagRuns")["dag_runs"] if r["dag_run_id"] not in before]
        new_run = runs[0]["dag_run_id"] if runs else None
        time.sleep(0.2)
    finished = d.wait_for_runs([("parcels_exception_alerts", new_run)], timeout=240)
    assert finished[("parcels_exception_alerts", new_run)].state == "success"
    ti = d.get(f"/dags/parcels_exception_alerts/dagRuns/{new_run}/taskInstances/alert")
    FIGURES["scan_to_alert_task_start_s"] = round(_ts(ti["start_date"]) - changed_at, 3)
    log = d.task_log("parcels_exception_alerts", new_run, "alert")
    assert NUMBERS[0] in log and NUMBERS[1] not in log
    print("\npush path figures:", FIGURES)
    assert FIGURES["scan_to_warehouse_row_s"] <= 2.0
    assert FIGURES["scan_to_alert_task_start_s"] <= 30.0
