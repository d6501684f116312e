"""Crash safety: a task killed with SIGKILL part-way, then run again, leaves what one clean run leaves.

The first run of each task goes in a process of its own (``run_dag_process.py``: ``dag.test()``
of a DAG in tests/dags/reliability_crash_dag.py, connections from the environment), against
sandboxes served from this process. The fixture watches the effect it wants to interrupt
(committed warehouse chunks, stored orders) and kills the process with SIGKILL as soon as it sees
it, so the kill lands part-way however fast or slow the machine is. The re-runs and the clean
run are ``dag.test()`` runs of the same DAGs in this process.

Both killed runs go at once: most of a child's time is Airflow's start-up (its in-process
execution API builds its schemas for about 10 s of CPU), which the two children share.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from helpers import airflow_env
from helpers.dags import run_dag
from reliability_support import (
    FAST,
    FIGURES,
    comparable,
    connection_json,
    env_name,
    events_by_number,
    parcel_rows_by_number,
    parcels_for,
    pinned_sandbox,
    sqlite_conn,
)

from airflow_provider_parcels.sandbox import SandboxSettings
from airflow_provider_parcels.warehouse import ParcelWarehouse

pytestmark = pytest.mark.large

RUNNER = Path(__file__).with_name("run_dag_process.py")
PARCELS = 400
CHUNK = 40  # reliability_crash_dag.CHUNK_SIZE
KILL_AFTER_CHUNKS = 3
ORDERS = 60
KILL_AFTER_ORDERS = 20
#: Guard against a hung child only: the runs take seconds.
HANG_GUARD_SECONDS = 300


class DagProcess:
    """One ``dag.test()`` run in a child process; its output goes to a log file."""

    def __init__(self, dag_id: str, conf: dict, log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        # A metadata database of its own (a copy of the session's): two dag.test() processes
        # syncing the DAGs folder into one SQLite database at once collide on its dag table.
        metadata = log.with_suffix(".airflow.db")
        with closing(sqlite3.connect(airflow_env.home() / "airflow.db")) as source, \
                closing(sqlite3.connect(metadata)) as target:
            source.backup(target)
        env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{metadata}"}
        self.proc = subprocess.Popen([sys.executable, str(RUNNER), dag_id, json.dumps(conf)], env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.finish()

    def finish(self) -> int:
        try:
            code = self.proc.wait(timeout=HANG_GUARD_SECONDS)
        finally:
            self._out.close()
        return code


def count_rows(db: Path, table: str = "parcel_tracking") -> int:
    """Committed rows, read through a fresh read-only connection (0 before the table exists)."""
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:  # no table yet, or a writer holds the lock this instant
        return 0


def dumps(conn_id: str) -> tuple[dict, dict]:
    wh = ParcelWarehouse(conn_id)
    parcels = {number: comparable(row) for number, row in parcel_rows_by_number(wh.dump("parcel_tracking")).items()}
    return parcels, events_by_number(wh.dump("parcel_tracking_events"))


@pytest.fixture(scope="module")
def killed_runs(pinned_server, tmp_path_factory, airflow_db):
    """Start the tracking run and the order run in child processes; SIGKILL each part-way.

    Tracking: WhereParcel through the pinned sandbox, slowed a little (8 calls of 5 parcels per
    chunk, 4 at a time, 0.1 s each). Orders: parcelLab, 20 orders a second, through a second
    sandbox that answers 5% of calls with a 5xx and 5% late (the order is stored after the client
    gave up, and the client sends its PUT again): each order must still be created once.
    """
    folder = tmp_path_factory.mktemp("crash")
    tracking = pinned_server
    tracking.configure(**SandboxSettings(latency_per_item=0.02).as_dict())
    tracking.reset()
    orders = pinned_sandbox()
    orders.configure(faults="503=0.05,timeout=0.05", seed=5, timeout_delay=0.6)
    parcels = parcels_for("whereparcel", PARCELS, "C")
    for index, parcel in enumerate(parcels):
        parcel["client_id"] = f"order-{index}" if index % 3 == 0 else None
    source = folder / "source.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE source_parcels (carrier TEXT, tracking_number TEXT, client_id TEXT)")
        conn.executemany("INSERT INTO source_parcels VALUES (:carrier, :tracking_number, :client_id)", parcels)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(env_name("rel_crash_api"), connection_json(tracking, "whereparcel", max_concurrency=4, **FAST))
        mp.setenv(env_name("rel_crash_source"), sqlite_conn(source))
        for name in ("crashed", "clean"):
            mp.setenv(env_name(f"rel_wh_{name}"), sqlite_conn(folder / f"{name}.db"))
        mp.setenv(env_name("rel_crash_parcellab"), json.dumps({
            "conn_type": "parcellab", "host": orders.base_url("parcellab"), "password": "sandbox-key",
            "extra": {"account": 1, "requests_per_minute": 1200, "timeout": 0.3}}))
        order_conf = {"orders": _orders()}
        crashed_db = folder / "crashed.db"
        children = {
            "track": (DagProcess("reliability_track", {"warehouse": "rel_wh_crashed"}, folder / "track.log"),
                      lambda: count_rows(crashed_db) >= KILL_AFTER_CHUNKS * CHUNK,
                      f"{KILL_AFTER_CHUNKS} committed chunks"),
            "orders": (DagProcess("reliability_orders", order_conf, folder / "orders.log"),
                       lambda: sum(_stored(orders).values()) >= KILL_AFTER_ORDERS, f"{KILL_AFTER_ORDERS} orders"),
        }
        outcome: dict[str, Any] = {"folder": folder, "orders": orders, "order_conf": order_conf}
        try:
            pending = dict(children)
            deadline = time.monotonic() + HANG_GUARD_SECONDS
            while pending:
                for name, (child, condition, what) in list(pending.items()):
                    if condition():
                        outcome[f"{name}_exit"] = child.kill()
                        del pending[name]
                    elif child.proc.poll() is not None:
                        pytest.fail(f"the {name} run ended (exit {child.proc.returncode}) before {what}:\n"
                                    f"{child.output()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no {', '.join(w for _, _, w in pending.values())} after {HANG_GUARD_SECONDS} s")
                time.sleep(0.01)
            outcome["rows_left"] = count_rows(crashed_db)
            outcome["orders_left"] = sum(_stored(orders).values())
            yield outcome
        finally:
            for child, _, _ in children.values():
                if child.proc.poll() is None:
                    child.kill()
            orders.stop()
            tracking.configure(**SandboxSettings().as_dict())


def test_tracking_killed_after_some_chunks_then_rerun_equals_one_clean_run(killed_runs):
    assert killed_runs["track_exit"] == -signal.SIGKILL
    left = killed_runs["rows_left"]
    assert KILL_AFTER_CHUNKS * CHUNK <= left < PARCELS, f"the kill was not part-way: {left} rows"
    assert left % CHUNK == 0, f"a chunk was committed in part: {left} rows"

    assert run_dag("reliability_track", conf={"warehouse": "rel_wh_crashed"}).state == "success"
    assert run_dag("reliability_track", conf={"warehouse": "rel_wh_clean"}).state == "success"

    crashed_parcels, crashed_events = dumps("rel_wh_crashed")
    clean_parcels, clean_events = dumps("rel_wh_clean")
    assert len(crashed_parcels) == PARCELS == len(clean_parcels)
    assert crashed_parcels == clean_parcels
    assert crashed_events == clean_events
    folder = killed_runs["folder"]
    assert count_rows(folder / "crashed.db", "parcel_tracking_events") == count_rows(folder / "clean.db",
                                                                                      "parcel_tracking_events")
    FIGURES["crash_tracking"] = (f"killed after {left} of {PARCELS} rows committed; re-run and clean run "
                                 f"both {len(clean_parcels)} rows, equal")


def _orders() -> list[dict]:
    return [
        {
            "order_number": f"REL-ORD-{i:04d}",
            "recipient_email": f"buyer{i}@example.com",
            "destination_country_iso3": "DEU",
            "order_total_amount": "19.90",
            "mutations": [{"type": "add_tracking",
                           "tracking": {"tracking_number": f"DLVORD{i:05d}", "courier": "dhl"}}],
        }
        for i in range(ORDERS)
    ]


def _stored(sandbox) -> Counter:
    """How many stored parcelLab orders carry each of our order numbers."""
    api = sandbox.app.apis["parcellab"]
    with api.lock:
        return Counter(o.data.get("order_number") for o in api.orders.values()
                       if str(o.data.get("order_number", "")).startswith("REL-ORD-"))


def test_order_creation_killed_part_way_then_rerun_creates_no_order_twice(killed_runs):
    orders = killed_runs["orders"]
    assert killed_runs["orders_exit"] == -signal.SIGKILL
    created_before = killed_runs["orders_left"]
    assert KILL_AFTER_ORDERS <= created_before < ORDERS, f"the kill was not part-way: {created_before} orders"

    assert run_dag("reliability_orders", conf=killed_runs["order_conf"]).state == "success"

    stored = _stored(orders)
    assert set(stored) == {o["order_number"] for o in killed_runs["order_conf"]["orders"]}
    assert set(stored.values()) == {1}, "an order was stored twice"
    stats = orders.stats()["parcellab"]
    assert stats["status_counts"].get("201") == ORDERS, stats["status_counts"]  # once each, across both runs
    assert stats["status_counts"].get("200", 0) >= created_before, stats["status_counts"]  # re-run: updates
    assert stats["faults"], "no fault was injected"
    FIGURES["crash_orders"] = (f"killed after {created_before} of {ORDERS} orders; after the re-run each order "
                               f"stored once, HTTP 201 x{stats['status_counts'].get('201')}, "
                               f"200 x{stats['status_counts'].get('200', 0)}, faults {stats['faults']}")
