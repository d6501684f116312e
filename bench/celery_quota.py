"""
One API key shared by mapped tasks on Airflow's distributed engine (issue 17): a mapped
``TrackParcelsOperator`` of 8 copies on one TrackFlow ``sandbox-starter`` key, run by the
CeleryExecutor on two ``airflow celery worker`` processes (4 slots each), the ledger in Redis.

``python -m bench --only celery_quota`` (writes ``bench/results/celery_quota.{json,md}``), or
``python -m bench.celery_quota [--quick] [--json OUT]``. Not part of ``python -m bench --quick``.

The deployment is ``tests/e2e/airflow_deployment.py`` with ``executor="celery"``: api-server,
scheduler and dag-processor, PostgreSQL (``initdb``) as the metadata DB and Celery's result
backend, a ``redis-server`` as the Celery broker (db 0) and as the quota ledger (db 1, the
connection ``e2e_quota_redis``), and the sandbox as its own process with a shortened quota
window (``--window-seconds``): 60 lookups per sliding ``WINDOW`` seconds. The DAG is
``tests/e2e/dags/e2e_celery_quota.py``: its copies get ``requests_per_minute = 60 * 60 / WINDOW``
(the known plan), ``batch_size`` 1 (one lookup per parcel) and skewed loads (one copy holds half).

Quota use is measured over the sandbox's own clock of the run: from the first TrackFlow request's
arrival to the last answer (``GET /_sandbox/stats``: ``first_request_at``, ``last_answer_at``), so
Airflow's start-up and the tasks' start latency before the first lookup do not count; the
copies' start and end times (from the REST API) are reported beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PER_WINDOW = 60  # TrackFlow starter plan in the sandbox: 60 lookups per window
KEY = "sandbox-starter"
WINDOW = 10.0  # seconds
WINDOWS = 5  # parcels in all: WINDOWS * PER_WINDOW
DAG_ID = "e2e_celery_quota"
WORKERS = 2
CONCURRENCY = 4


def _import_harness() -> Any:
    for path in (ROOT / "tests" / "e2e" / "dags", ROOT / "tests" / "e2e", ROOT / "tests"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import airflow_deployment

    return airflow_deployment


def _when(value: str | None) -> float | None:
    return None if not value else dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def add_connections(deployment: Any, window: float) -> None:
    """The shared TrackFlow key (the known plan, one lookup per parcel, ledger in Redis db 1) and that Redis."""
    from e2e_celery_quota import QUOTA_REDIS_CONN_ID, TRACKFLOW_CONN_ID

    host = json.loads(deployment.connections_file.read_text())["parcels_demo_trackflow"]["host"]
    extra = {"requests_per_minute": PER_WINDOW * 60 / window, "batch_size": 1, "quota_store": QUOTA_REDIS_CONN_ID}
    deployment.request("POST", "/connections", expect=(201,), json={
        "connection_id": TRACKFLOW_CONN_ID, "conn_type": "trackflow", "host": host, "password": KEY,
        "extra": json.dumps(extra)})
    deployment.request("POST", "/connections", expect=(201,), json={
        "connection_id": QUOTA_REDIS_CONN_ID, "conn_type": "redis", "host": "127.0.0.1",
        "port": deployment.redis_port, "extra": json.dumps({"db": 1})})


def run_once(deployment: Any, total: int, window: float, timeout: float = 600.0) -> dict[str, Any]:
    """
    Trigger the DAG for ``total`` parcels on a started Celery deployment and measure the run.

    :param deployment: an ``AirflowDeployment(executor="celery", ...)`` started with ``--window-seconds window``
        and the DAG ``e2e_celery_quota`` in its DAGs folder.
    :param total: parcels in all (one lookup each).
    :param window: the sandbox's quota window, seconds.
    :param timeout: seconds the run may take.
    """
    _import_harness()
    from e2e_celery_quota import loads

    add_connections(deployment, window)
    deployment.wait_for_dags([DAG_ID])
    deployment.unpause(DAG_ID)
    tag = uuid.uuid4().hex[:6].upper()
    before = requests.get(f"{deployment.sandbox_url}/_sandbox/stats", timeout=10).json()["trackflow"]
    assert before["requests"] == 0, f"the sandbox's TrackFlow API was used before the run: {before}"
    triggered = time.time()
    run_id = deployment.trigger(DAG_ID, {"total": total, "tag": tag})
    result = deployment.wait_for_runs([(DAG_ID, run_id)], timeout)[(DAG_ID, run_id)]
    stats = requests.get(f"{deployment.sandbox_url}/_sandbox/stats", timeout=10).json()["trackflow"]
    tis = deployment.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 200})["task_instances"]
    copies = sorted(({"map_index": ti["map_index"], "hostname": ti["hostname"], "state": ti["state"],
                      "start": _when(ti["start_date"]), "end": _when(ti["end_date"])}
                     for ti in tis if ti["task_id"] == "track"), key=lambda c: c["map_index"])
    for copy, n in zip(copies, loads(len(copies), total), strict=True):
        copy["parcels"] = n
    with sqlite3.connect(f"file:{deployment.warehouse_db}?mode=ro", uri=True) as db:
        landed = db.execute("SELECT COUNT(*), SUM(error_code IS NOT NULL) FROM parcel_tracking "
                            "WHERE tracking_number LIKE ?", (f"TRN{tag}%",)).fetchone()
    ok = stats["status_counts"].get("200", 0)
    errors = {code: n for code, n in stats["status_counts"].items() if code != "200"}
    wall = stats["last_answer_at"] - stats["first_request_at"] if stats["first_request_at"] else 0.0
    ideal = total / PER_WINDOW * window
    starts = [c["start"] for c in copies if c["start"]]
    ends = [c["end"] for c in copies if c["end"]]
    first = stats["first_request_at"] or triggered
    return {
        "run_state": result.state, "task_states": result.tasks, "parcels": total, "copies": len(copies),
        "loads": [c["parcels"] for c in copies], "requests": stats["requests"], "ok": ok,
        "rate_limited": stats["rate_limited"], "errors": errors,
        "rows_landed": landed[0] or 0, "error_rows": landed[1] or 0,
        "wall_seconds": round(wall, 2), "ideal_seconds": round(ideal, 2),
        "quota_use": round(ok / (wall / window * PER_WINDOW), 3) if wall else 0.0,
        "wall_vs_ideal": round(wall / ideal, 3),
        "workers": sorted({c["hostname"] for c in copies if c["hostname"]}),
        "first_copy_start_after_first_lookup_s": round(min(starts) - first, 2) if starts else None,
        "last_copy_start_after_first_lookup_s": round(max(starts) - first, 2) if starts else None,
        "last_copy_end_after_last_answer_s": round(max(ends) - stats["last_answer_at"], 2) if ends else None,
        "trigger_to_first_lookup_s": round(first - triggered, 2),
        "run_seconds": round(result.seconds, 1),
        "copies_detail": [{**c, "start": round(c["start"] - first, 2) if c["start"] else None,
                           "end": round(c["end"] - first, 2) if c["end"] else None} for c in copies],
    }


def deployment_for(root: Path, window: float, max_seconds: float = 900.0) -> Any:
    """The Celery deployment of this section (not started): three components, two workers, the sandbox's window."""
    harness = _import_harness()
    return harness.AirflowDeployment(
        root, extra_dags=[harness.E2E_DAGS / f"{DAG_ID}.py"], max_seconds=max_seconds, executor="celery",
        celery_workers=WORKERS, worker_concurrency=CONCURRENCY, components=("api-server", "scheduler", "dag-processor"),
        example_dags=False, sandbox_args=["--window-seconds", f"{window:g}"])


def run(quick: bool = False) -> dict[str, Any]:
    """
    The section: start the Celery deployment, one run of the DAG, stop.

    :param quick: 3 windows of parcels instead of ``WINDOWS`` (the deployment is the same).
    """
    window = WINDOW
    total = PER_WINDOW * (3 if quick else WINDOWS)
    with tempfile.TemporaryDirectory(prefix="parcels-bench-celery-") as tmp:
        deployment = deployment_for(Path(tmp), window)
        started = time.monotonic()
        try:
            deployment.start()
            start_seconds = time.monotonic() - started
            row = run_once(deployment, total, window)
        except Exception:
            if deployment.processes:
                print(deployment.log_tails(lines=40), file=sys.stderr)
            raise
        finally:
            deployment.stop()
    import celery
    from airflow.providers.celery import __version__ as provider_version

    return {"api": "trackflow", "key": KEY, "per_window": PER_WINDOW, "window_seconds": window,
            "quota_per_min": PER_WINDOW * 60 / window, "workers": WORKERS, "worker_concurrency": CONCURRENCY,
            "executor": "CeleryExecutor", "celery": celery.__version__, "providers_celery": provider_version,
            "start_seconds": round(start_seconds, 1), "rows": [row]}


def markdown(result: dict[str, Any]) -> list[str]:
    """The section's tables."""
    lines = [
        f"A mapped `TrackParcelsOperator` of 8 copies on one TrackFlow `starter` key, run by the "
        f"{result['executor']} (Celery {result['celery']}, apache-airflow-providers-celery "
        f"{result['providers_celery']}) on {result['workers']} `airflow celery worker` processes of "
        f"{result['worker_concurrency']} slots, metadata DB and result backend PostgreSQL, broker Redis db 0, "
        f"quota ledger Redis db 1. The sandbox (its own process) enforces {result['per_window']} lookups per "
        f"sliding {result['window_seconds']:g} s window ({result['quota_per_min']:g}/min); the connection says "
        "that quota, `batch_size` 1. Loads skewed: one copy holds half of the parcels. Quota use: lookups "
        "answered ÷ what the plan allows from the sandbox's first request to its last answer (Airflow's "
        f"start-up, {result['start_seconds']:.0f} s, not counted). Goals: 0 429s, quota use >= 0.95.",
        "",
        "| copies | workers | loads | 200 | 429 | other statuses | rows landed | quota use | wall s | ideal s "
        "| wall ÷ ideal | copies started (s after first lookup) |",
        "|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
        lines.append(
            f"| {r['copies']} | {', '.join(r['workers'])} | {'/'.join(map(str, r['loads']))} | {r['ok']} | "
            f"{r['rate_limited']} | {errors} | {r['rows_landed']} | {r['quota_use']:.3f} | {r['wall_seconds']:.1f} "
            f"| {r['ideal_seconds']:.1f} | {r['wall_vs_ideal']:.2f} | {r['first_copy_start_after_first_lookup_s']:+.1f}"
            f" to {r['last_copy_start_after_first_lookup_s']:+.1f} |")
    lines += ["", "Which worker ran each copy (times in s from the first lookup):", "",
              "| map index | parcels | worker | state | start | end |", "|---:|---:|---|---|---:|---:|"]
    for r in result["rows"]:
        for c in r["copies_detail"]:
            lines.append(f"| {c['map_index']} | {c['parcels']} | {c['hostname']} | {c['state']} | "
                         f"{c['start']:+.1f} | {c['end']:+.1f} |")
    return lines


def main() -> None:
    """Run the section and print its tables (``--json OUT`` also writes the result)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from bench.common import run_section

    run_section(run, markdown, args.quick, args.json)


if __name__ == "__main__":
    main()
