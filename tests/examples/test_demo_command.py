"""``./scripts/demo`` end to end, twice in the same demo home (the second run must work too)."""

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
    for step in ("[1/5] sandbox", "[2/5] connections", "[3/5] airflow", "[4/5] parcels_warehouse_sync",
                 "[5/5] parcels_sla_alerts"):
        assert step in out
    assert "metadata DB created" in out
    # what landed, straight from the SQLite file the summary names
    warehouse = tmp_path / "warehouse.db"
    assert f"SQLite warehouse: {warehouse}" in out
    with sqlite3.connect(warehouse) as db:
        counts = dict(db.execute("SELECT status, count(*) FROM parcel_tracking GROUP BY 1").fetchall())
    assert counts == status_counts([r["tracking_number"] for r in orders], 1)
    for status, count in counts.items():
        assert re.search(rf"^    {status}\s+{count}\b", out, re.MULTILINE), status
    assert "a few parcels with their last event:" in out
    # the alert that fired, named exactly the expected parcels, and counted as success
    assert "Same-day parcels in exception: 2 late or failed parcels" in out
    assert f"✓ the alert named exactly the expected parcels: {', '.join(expected_alert)}" in out
    assert "run failed in" in out and "(expected: the alert path" in out
    assert "✓ demo complete in" in out
    assert "✗" not in out

    second = run_demo(tmp_path)
    assert second.returncode == 0, f"{second.stdout}\n{second.stderr}"
    assert "metadata DB reused" in second.stdout
    assert status_block(second.stdout) == status_block(out)
    assert "✓ demo complete in" in second.stdout
    with sqlite3.connect(warehouse) as db:
        assert db.execute("SELECT count(*) FROM parcel_tracking").fetchone()[0] == len(orders)
