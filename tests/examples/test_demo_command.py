"""``./scripts/demo`` end to end, twice in the same demo home (the second run must work too), push path included."""

from __future__ import annotations

import importlib.util
import os
import re
import sqlite3
import subprocess
import sys

import pytest
from example_expectations import REPO, read_orders, status_counts


def load_demo_module():
    """``scripts/demo.py`` as a module (it imports nothing but the standard library at the top)."""
    spec = importlib.util.spec_from_file_location("parcels_demo_script", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_demo(home) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    env.update({"PARCELS_DEMO_HOME": str(home), "NO_COLOR": "1"})
    return subprocess.run([str(REPO / "scripts" / "demo")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=550)


PUSHED = "TRN0500001"


def assert_push_step(out: str) -> None:
    """The push step's lines: subscribe, scan, 2xx, warehouse row, asset event, alert run; no secret printed."""
    assert re.search(r"^      receiver http://127\.0\.0\.1:\d+/parcels/webhooks/parcels_demo_trackflow ", out, re.M)
    assert re.search(r"^      parcels_push_subscribe run success in [\d.]+ s: 3 parcels subscribed", out, re.M)
    assert re.search(rf"^      sandbox scan: {PUSHED} -> exception at [\d:]+ \(1 signed webhook queued\)", out, re.M)
    assert re.search(r"^\s+\+[\d.]+ s  receiver answered 200 ", out, re.M)
    row = rf"^\s+\+[\d.]+ s  warehouse row \(as the demo read it\): parcel_tracking trackflow dhl {PUSHED} exception"
    assert re.search(row, out, re.M)
    assert re.search(r"^\s+\+[\d.]+ s  asset event on parcels-alerts://parcels_demo_warehouse/parcel_tracking", out,
                     re.M)
    assert "under a real scheduler the asset event starts it" in out
    assert re.search(rf"^\s+\+[\d.]+ s  parcels_exception_alerts run success: the alert named {PUSHED} \(exception\) ",
                     out, re.M)
    seconds = re.search(rf"✓ push: the exception scan of {PUSHED} reached the warehouse ([\d.]+) s after", out)
    assert seconds and float(seconds[1]) <= 5.0, out
    assert re.search(rf"✓ push: parcels_exception_alerts alerted on {PUSHED}; its run ended [\d.]+ s after", out)
    assert "X-Sandbox-Token" not in out and "webhook_secret" not in out and "sandbox-webhook-secret" not in out


def status_block(output: str) -> list[str]:
    lines = output.splitlines()
    start = lines.index("  parcels by status:") + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line)
    return block


def test_demo_counts_only_the_expected_alert_as_success():
    demo = load_demo_module()
    orders = read_orders()
    expected = sorted(demo.expected_alert_parcels(orders))
    assert expected and all(n.startswith("POLLX") for n in expected)
    sync = demo.RunResult("parcels_warehouse_sync", "success", 1.0,
                          {"select_parcels": "success", "track[0]": "success"})
    sla_tasks = {"todays_parcels": "success", "wait_for_todays_parcels": "failed", "late_parcels_report": "success",
                 "sla_breached": "failed"}

    def sla(failed: list[str]):
        xcom = {("wait_for_todays_parcels", "failed_parcels"): [{"tracking_number": n} for n in failed]}
        return demo.RunResult("parcels_sla_alerts", "failed", 1.0, dict(sla_tasks), xcom)

    def alert(numbers: list[str]):
        return [{"path": "/alerts", "json": {"text": "Same-day parcels in exception: " + "; ".join(numbers)}}]

    good, bad = demo.check_runs(sync, sla(expected), alert(expected), orders)
    assert bad == [] and len(good) == 3
    # a parcel too many in the alert, no alert at all, a failed sync task: each is unexpected
    extra = [*expected, "EXC8546862847"]
    assert demo.check_runs(sync, sla(extra), alert(extra), orders)[1]
    assert demo.check_runs(sync, sla(expected), [], orders)[1]
    broken = demo.RunResult("parcels_warehouse_sync", "failed", 1.0, {"select_parcels": "failed"})
    assert demo.check_runs(broken, sla(expected), alert(expected), orders)[1]


def test_demo_counts_the_push_path_only_when_the_parcel_landed_and_was_alerted():
    demo = load_demo_module()
    number = demo.PUSH_PARCEL
    subscribed = demo.RunResult("parcels_push_subscribe", "success", 1.0,
                                {"parcels_to_subscribe": "success", "subscribe": "success"})

    def push(alerted: list[dict], row: bool = True, http_status: int = 200, alert_state: str = "success"):
        alert = demo.RunResult("parcels_exception_alerts", alert_state, 1.0, {"alert": alert_state},
                               {("alert", "return_value"): alerted})
        return demo.PushResult(subscribe=subscribed, deliveries=1, http_status=http_status, to_2xx=0.01,
                               row=("trackflow", "dhl", number, "exception", None, None) if row else None,
                               to_row=0.02 if row else None, asset_event_ids=[1], to_asset_event=0.2, alert=alert,
                               to_alert_end=0.5)

    exception = [{"tracking_number": number, "status": "exception", "alert": "exception"}]
    good, bad = demo.check_push(push(exception))
    assert bad == [] and len(good) == 2
    assert "reached the warehouse 0.02 s after the status change" in good[0]
    # no row, an alert that names nothing (or another parcel), a refused delivery, a failed subscribe run
    assert demo.check_push(push(exception, row=False))[1]
    assert demo.check_push(push([]))[1]
    assert demo.check_push(push([{"tracking_number": "TRN0500002", "status": "exception"}]))[1]
    assert demo.check_push(push(exception, http_status=401))[1]
    assert demo.check_push(push(exception, alert_state="failed"))[1]
    assert demo.check_push(demo.PushResult(subscribe=demo.RunResult("parcels_push_subscribe", "failed", 1.0)))[1]
    assert demo.check_push(demo.PushResult())[1]


# Two demo runs take 30 to 60 s; the margin covers a pip install when pyproject.toml changed.
@pytest.mark.large
@pytest.mark.timeout(1200)
def test_demo_runs_end_to_end_and_again(tmp_path):
    orders = read_orders()
    expected_alert = sorted(r["tracking_number"] for r in orders
                            if r["delivery_promise"] == "same_day" and r["tracking_number"].startswith("POLLX"))

    first = run_demo(tmp_path)
    log = (tmp_path / "demo.log").read_text() if (tmp_path / "demo.log").exists() else ""
    assert first.returncode == 0, f"{first.stdout}\n{first.stderr}\n--- demo.log tail ---\n{log[-4000:]}"
    out = first.stdout
    for step in ("[1/6] sandbox", "[2/6] connections", "[3/6] airflow", "[4/6] parcels_warehouse_sync",
                 "[5/6] parcels_sla_alerts", "[6/6] push"):
        assert step in out
    assert "metadata DB created" in out
    # what landed, straight from the SQLite file the summary names
    warehouse = tmp_path / "warehouse.db"
    assert f"SQLite warehouse: {warehouse}" in out
    with sqlite3.connect(warehouse) as db:
        counts = dict(db.execute("SELECT status, count(*) FROM parcel_tracking GROUP BY 1").fetchall())
        pushed = db.execute("SELECT provider, carrier, status FROM parcel_tracking WHERE tracking_number = ?",
                            (PUSHED,)).fetchall()
    # the orders as the sync tracked them (ShipEngine), plus the pushed TrackFlow exception
    want = status_counts([r["tracking_number"] for r in orders], 1)
    want["exception"] = want.get("exception", 0) + 1
    assert counts == want
    assert pushed == [("trackflow", "dhl", "exception")]
    for status, count in counts.items():
        assert re.search(rf"^    {status}\s+{count}\b", out, re.MULTILINE), status
    assert "a few parcels with their last event:" in out
    # the alert that fired, named exactly the expected parcels, and counted as success
    assert "Same-day parcels in exception: 2 late or failed parcels" in out
    assert f"✓ the alert named exactly the expected parcels: {', '.join(expected_alert)}" in out
    assert "run failed in" in out and "(expected: the alert path" in out
    assert_push_step(out)
    assert "✓ demo complete in" in out
    assert "✗" not in out

    second = run_demo(tmp_path)
    assert second.returncode == 0, f"{second.stdout}\n{second.stderr}"
    assert "metadata DB reused" in second.stdout
    assert status_block(second.stdout) == status_block(out)
    # the second run's sandbox is a new process: the push step subscribes again and the push lands again
    assert_push_step(second.stdout)
    assert "✓ demo complete in" in second.stdout
    with sqlite3.connect(warehouse) as db:
        assert db.execute("SELECT count(*) FROM parcel_tracking").fetchone()[0] == len(orders) + 1
