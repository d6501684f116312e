"""Several real processes on one API key: they share the minute quota and the budgets, in every store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from quota_worker import open_store

from airflow_provider_parcels.quota import QuotaLedger, QuotaLimits, QuotaStore
from airflow_provider_parcels.quota.state import Peek

WORKER = Path(__file__).with_name("quota_worker.py")
#: 10 units per 2-second window, i.e. 300 a minute: a test takes seconds, not minutes.
WINDOW, PER_WINDOW = 2.0, 10
RPM = PER_WINDOW * 60 / WINDOW


def start_workers(specs: list[dict[str, Any]]) -> list[subprocess.Popen[str]]:
    """Start one process per spec, wait until every one is connected to its store, then let them go."""
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), json.dumps(spec)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        for spec in specs
    ]
    for proc in procs:
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"worker did not start: {line!r} {proc.stderr.read()[-2000:]}"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


def results(procs: list[subprocess.Popen[str]], timeout: float = 60) -> list[dict[str, Any]]:
    """Each worker's report."""
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, stderr[-2000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def worker_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, Any], QuotaStore]]:
    """A shared store of each kind: how a worker opens it (without importing Airflow), and the store itself."""
    kind = request.param
    if kind == "sqlite":
        spec = {"kind": "sqlite", "path": str(tmp_path / "quota.db")}
    elif kind == "redis":
        spec = {"kind": "redis", "port": request.getfixturevalue("redis_server").port}
    else:
        spec = {"kind": "postgres", "dsn": request.getfixturevalue("postgres_dsn")}
    store = open_store(spec)
    yield spec, store
    store.close()


def spec(store: Any, key: str, duration: float, **kw: Any) -> dict[str, Any]:
    limits = kw.pop("limits", {"requests_per_minute": RPM})
    return {"store": store, "provider": "trackflow", "cred_hash": key, "limits": limits, "cost": 1,
            "duration": duration, **kw}


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any window of ``window`` seconds."""
    times, best, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_processes_share_the_minute_quota_and_take_what_others_leave(worker_store) -> None:
    """
    Four processes on one key stay under 10 per 2-second window together, and when three stop
    the fourth takes the whole quota (work-conserving: no static shares).
    """
    key = uuid.uuid4().hex[:16]
    procs = start_workers([spec(worker_store[0], key, 1.5)] * 3 + [spec(worker_store[0], key, 3.5)])
    reports = results(procs)
    assert not any(r["fallback"] for r in reports)
    sent = [t for r in reports for t in r["sent"]]
    # Booked slots are 0.204 s apart; the sleep that follows each booking may run a little late.
    assert max_in_window(sent, WINDOW) <= PER_WINDOW + 1, sorted(sent)
    assert all(len(r["sent"]) >= 1 for r in reports[:3])  # every process had its turn
    # ... and together they used the quota: 3.5 s at 5 a second, less the start
    assert len(sent) >= 0.8 * 3.5 * PER_WINDOW / WINDOW
    alone = [t for t in reports[3]["sent"] if t > max(reports[0]["sent"] + reports[1]["sent"] + reports[2]["sent"])]
    span = max(reports[3]["sent"]) - min(sent)
    assert span > 3.0
    # the last process alone went at the whole rate, not at a quarter of it
    assert len(alone) >= 0.7 * (max(alone) - min(alone)) * PER_WINDOW / WINDOW
    assert len(alone) >= 5


def test_processes_never_overspend_a_day_budget(worker_store) -> None:
    """Three processes asking 20 each of a 40-unit day budget get exactly 40, and 20 refusals."""
    key = uuid.uuid4().hex[:16]
    limits = {"requests_per_minute": None, "requests_per_day": 40}
    procs = start_workers([spec(worker_store[0], key, 20, limits=limits, max_reservations=20)] * 3)
    reports = results(procs)
    assert sum(len(r["sent"]) for r in reports) == 40
    assert sum(r["exhausted"] for r in reports) == 20
    assert worker_store[1].apply(f"trackflow:{key}", Peek()).state.day_used == 40


def test_embedded_store_is_shared_by_the_processes_of_a_machine(tmp_path: Path, monkeypatch) -> None:
    """Without ``quota_store`` the file under ``AIRFLOW_HOME`` is the ledger every process shares."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("PARCELS_QUOTA_DB", raising=False)  # the tests' own file per test (tests/conftest.py)
    key = uuid.uuid4().hex[:16]
    limits = {"requests_per_minute": None, "requests_per_month": 30}
    reports = results(start_workers([spec(None, key, 20, limits=limits, max_reservations=15)] * 3))
    assert sum(len(r["sent"]) for r in reports) == 30
    assert (tmp_path / "parcels_quota.db").exists()


def test_a_killed_process_holds_no_quota(worker_store) -> None:
    """A process killed while it books leaves at most its booked slot behind; the next caller waits no more."""
    key = uuid.uuid4().hex[:16]
    (proc,) = start_workers([spec(worker_store[0], key, 30)])
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    ledger = QuotaLedger(f"trackflow:{key}", QuotaLimits(requests_per_minute=RPM), worker_store[1])
    first = ledger.reserve()
    interval = QuotaLimits(requests_per_minute=RPM).interval
    assert first.wait_seconds <= interval + 0.05
    time.sleep(first.wait_seconds)
    assert ledger.reserve().wait_seconds == pytest.approx(interval, abs=0.05)


OPEN_AT_ONCE = """
import json, sys, time
from airflow_provider_parcels.quota import QuotaLedger, QuotaLimits, SQLiteStore
store = SQLiteStore(sys.argv[1])
ledger = QuotaLedger("trackflow:atonce", QuotaLimits(requests_per_day=1000), store)
print("ready", flush=True)
sys.stdin.readline()
oks = sum(ledger.reserve().ok for _ in range(20))
print(json.dumps({"ok": oks, "fallback": ledger.using_fallback}), flush=True)
"""


def test_processes_opening_a_new_file_at_once_never_fall_back(tmp_path: Path) -> None:
    """Eight processes whose first touch of a new SQLite file is the same instant: no 'database is locked'."""
    path = str(tmp_path / "fresh.db")
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = [json.loads(proc.communicate(timeout=60)[0].strip().splitlines()[-1]) for proc in procs]
    assert not any(r["fallback"] for r in reports), reports
    assert sum(r["ok"] for r in reports) == 160
    assert QuotaLedger("trackflow:atonce", QuotaLimits(), open_store({"kind": "sqlite", "path": path})) \
        .status().day.used == 160
