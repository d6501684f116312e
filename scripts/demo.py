"""The python part of ``./scripts/demo``: four example DAGs run for real against the local sandbox, poll and push.

``scripts/demo`` prepares ``.venv`` and then runs this file with it. Step by step:

1. starts the sandbox (``python -m airflow_provider_parcels.sandbox --port 0``, a subprocess on
   a free port, stopped when the demo ends, however it ends) and a loopback webhook that stands
   in for Slack;
2. defines the connections the example DAGs' params name, as ``AIRFLOW_CONN_*`` variables:
   ``parcels_demo_<api>`` for the five APIs (the sandbox's printed values), ``parcels_demo_warehouse``
   (SQLite ``<home>/warehouse.db``) and ``parcels_demo_alerts`` (the webhook);
3. uses ``<home>/airflow`` as ``AIRFLOW_HOME`` (metadata DB created on the first run only) with
   ``AIRFLOW__CORE__DAGS_FOLDER=example_dags``;
4. runs ``parcels_warehouse_sync`` and ``parcels_sla_alerts`` with ``dag.test()``, printing each
   task as it finishes;
5. checks the outcome and prints what landed: parcels by status, a few parcels with their last
   event, the alert that fired, the late-parcel report and where the SQLite file is.

Step 6 is the webhook push path: the provider's receiver (``create_standalone_app``, what the API
server's plugin serves) runs under uvicorn in a thread on a free loopback port; ``parcels_push_subscribe``
registers TrackFlow webhooks pointing at it; a carrier scan in the sandbox (``POST /_sandbox/scan``)
puts ``TRN0500001`` into exception and the sandbox pushes a signed webhook; the demo times the 2xx,
the warehouse row and the asset event on the alert asset, then runs ``parcels_exception_alerts``
with ``dag.test()`` consuming that asset event (the scheduler starts it on the event in a real
Airflow; ``tests/e2e/test_push_path.py`` proves that part). The sandbox's control token and
webhook secret are random per run and never printed.

The SLA DAG is expected to fail: two same-day parcels go into exception, the sensor fails on
them, the notifier posts the alert and ``sla_breached`` marks the run. The demo checks that the
alert named exactly those parcels and counts that as success. Anything else that fails makes
the exit code non-zero (1: an unexpected outcome, 2: the demo could not start).

``<home>`` is ``.demo/`` in the repository (``--home`` or ``PARCELS_DEMO_HOME`` to move it).
Running again reuses it: the warehouse keeps its rows and the sync re-tracks only open parcels.
Airflow's own output goes to ``<home>/demo.log`` (``--verbose`` shows it instead).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import csv
import json
import os
import queue
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from airflow_provider_parcels.sandbox.airflow_home import isolated_airflow_env
from airflow_provider_parcels.sandbox.alert_sink import AlertSink

ROOT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = ROOT / "example_dags"
ORDERS_FILE = DAGS_FOLDER / "data" / "orders.csv"
APIS = ("whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine")
SYNC_DAG = "parcels_warehouse_sync"
SLA_DAG = "parcels_sla_alerts"
SENSOR_TASK = "wait_for_todays_parcels"
#: Tasks of the SLA DAG that fail on the alert path, and why that is expected.
EXPECTED_FAILURES = {
    SENSOR_TASK: "expected: same-day parcels in exception fail the wait",
    "sla_breached": "expected: marks the run as breached",
}
#: The task states of the SLA DAG's alert path.
SLA_EXPECTED_TASKS = {"todays_parcels": "success", SENSOR_TASK: "failed", "late_parcels_report": "success",
                      "sla_breached": "failed"}
#: The sandbox key has no quota; the demo's connections say so (a real key: the ``plan`` extra).
DEMO_REQUESTS_PER_MINUTE = 6000
SLA_CONF = {"poke_interval_seconds": 1, "alert_conn_id": "parcels_demo_alerts"}
SUBSCRIBE_DAG = "parcels_push_subscribe"
PUSH_ALERT_DAG = "parcels_exception_alerts"
#: The TrackFlow connection the push step subscribes with and the receiver verifies for.
PUSH_CONN_ID = "parcels_demo_trackflow"
#: The parcel the push step's carrier scan puts into exception (one of the subscribe DAG's defaults).
PUSH_PARCEL = "TRN0500001"
EXIT_UNEXPECTED, EXIT_SETUP = 1, 2


class DemoError(Exception):
    """The demo could not set itself up (exit code 2)."""


# --------------------------------------------------------------------------- output


class Console:
    """Writes to the terminal the demo started on, whatever happens to fd 1 and 2 later."""

    def __init__(self) -> None:
        self.out: TextIO = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
        self.color = self.out.isatty() and not os.environ.get("NO_COLOR")

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._paint(text, "1")

    def dim(self, text: str) -> str:
        return self._paint(text, "2")

    def green(self, text: str) -> str:
        return self._paint(text, "32")

    def yellow(self, text: str) -> str:
        return self._paint(text, "33")

    def red(self, text: str) -> str:
        return self._paint(text, "31")

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, number: int, total: int, title: str, detail: str = "") -> None:
        self.print(f"{self.bold(f'[{number}/{total}]')} {self.bold(title)}{'  ' + detail if detail else ''}")


def relative(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def send_output_to_log(log_path: Path) -> TextIO:
    """Send everything this process prints from now on (Airflow's logs, its shutdown hooks) to
    ``log_path``; the :class:`Console` keeps the terminal. Returns the open log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    return log


# --------------------------------------------------------------------------- sandbox and webhook


class Sandbox:
    """``python -m airflow_provider_parcels.sandbox --port 0`` as a subprocess."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.connections: dict[str, dict[str, Any]] = {}
        # local to this run, never printed: the control token and the secret it signs webhooks with
        self.token = secrets.token_urlsafe(16)
        self.webhook_secret = secrets.token_urlsafe(24)

    def start(self, timeout: float = 30.0) -> Sandbox:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_parcels.sandbox", "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            env={**os.environ, "PARCELS_SANDBOX_TOKEN": self.token,
                 "PARCELS_SANDBOX_WEBHOOK_SECRET": self.webhook_secret},
        )
        atexit.register(self.stop)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True, name="sandbox-output").start()
        banner: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise DemoError(f"the sandbox printed no banner in {timeout:.0f} s: {banner}") from None
            if line is None:
                raise DemoError("the sandbox exited at start:\n  " + "\n  ".join(banner))
            banner.append(line)
            if match := re.match(r"Parcels sandbox listening on (\S+)", line):
                self.url = match[1]
            if match := re.match(r"export AIRFLOW_CONN_PARCELS_DEMO_([A-Z]+)='(.*)'$", line):
                self.connections[match[1].lower()] = json.loads(match[2])
            if line.startswith("Control:"):
                break
        missing = [api for api in APIS if api not in self.connections]
        if missing or not self.url:
            raise DemoError(f"the sandbox banner lacks {missing or 'its URL'}:\n  " + "\n  ".join(banner))
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def control(self, method: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``/_sandbox/<name>`` with the control token; the JSON answer."""
        request = urllib.request.Request(
            f"{self.url}/_sandbox/{name}", method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"X-Sandbox-Token": self.token, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(json.loads(answer.read()))

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class WebhookReceiver:
    """
    The provider's webhook receiver (``create_standalone_app(emit_assets=True)``) served by uvicorn
    in a thread on a free loopback port: what the API server's plugin serves in a real Airflow.
    It reads the connections from this process's environment and records asset events in the
    demo's metadata DB. Start it after Airflow is imported.
    """

    def __init__(self) -> None:
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.base_url = ""

    def start(self, timeout: float = 15.0) -> WebhookReceiver:
        import uvicorn

        from airflow_provider_parcels.webhooks.app import create_standalone_app

        config = uvicorn.Config(create_standalone_app(emit_assets=True), host="127.0.0.1", port=0,
                                log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="demo-webhook-receiver")
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not (self.server.started and self.server.servers):
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DemoError(f"the webhook receiver did not start in {timeout:.0f} s")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=5)
            self.server = None


# --------------------------------------------------------------------------- airflow


def airflow_environment(home: Path, sandbox: Sandbox, webhook: AlertSink, warehouse: Path) -> dict[str, str]:
    """Everything Airflow and the DAGs read from the environment (set before importing airflow)."""
    airflow_home = home / "airflow"
    env = isolated_airflow_env(airflow_home, DAGS_FOLDER, log_level="INFO")
    for api in APIS:
        conn = dict(sandbox.connections[api])
        conn["extra"] = {**conn.get("extra", {}), "requests_per_minute": DEMO_REQUESTS_PER_MINUTE}
        if api == "trackflow":  # the push step: the receiver verifies with the sandbox's secret, loads this warehouse
            conn["extra"].update(webhook_secret=sandbox.webhook_secret, warehouse_conn_id="parcels_demo_warehouse")
        env[f"AIRFLOW_CONN_PARCELS_DEMO_{api.upper()}"] = json.dumps(conn)
    env["AIRFLOW_CONN_PARCELS_DEMO_WAREHOUSE"] = json.dumps({"conn_type": "sqlite", "host": str(warehouse)})
    env["AIRFLOW_CONN_PARCELS_DEMO_ALERTS"] = json.dumps({"conn_type": "http", "host": webhook.url})
    return env


def ensure_metadata_db(airflow_home: Path) -> tuple[bool, float]:
    """Create Airflow's metadata DB unless this Airflow version already made it; (created, seconds)."""
    import importlib.metadata

    marker = airflow_home / f".demo-db-ready-{importlib.metadata.version('apache-airflow')}"
    if marker.exists() and (airflow_home / "airflow.db").exists():
        return False, 0.0
    from airflow.utils import db

    started = time.perf_counter()
    db.initdb()
    marker.write_text("created by scripts/demo\n")
    return True, time.perf_counter() - started


class TaskProgress:
    """An Airflow listener that prints each task of a ``dag.test()`` run as it finishes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started: dict[str, float] = {}
        self.notes: dict[str, str] = {}

    @staticmethod
    def key(task_instance: Any) -> str:
        index = getattr(task_instance, "map_index", -1)
        return task_instance.task_id if index is None or index < 0 else f"{task_instance.task_id}[{index}]"

    def register(self) -> bool:
        """Add this listener to Airflow's task listeners; False when this Airflow offers none."""
        try:
            from airflow.listeners import hookimpl
            from airflow.sdk.listener import get_listener_manager
        except ImportError:
            return False
        console, progress = self.console, self

        class Listener:
            @hookimpl
            def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
                progress.started.setdefault(progress.key(task_instance), time.perf_counter())

            @hookimpl
            def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
                progress.done(task_instance, console.green("success"))

            @hookimpl
            def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
                note = EXPECTED_FAILURES.get(task_instance.task_id)
                state = console.yellow("failed") if note else console.red("failed")
                first_line = (str(error or "").splitlines() or [""])[0][:100]
                progress.done(task_instance, state, note or first_line)

            @hookimpl
            def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
                progress.done(task_instance, console.dim("skipped"))

        get_listener_manager().add_listener(Listener())
        return True

    def done(self, task_instance: Any, state: str, note: str = "") -> None:
        key = self.key(task_instance)
        seconds = time.perf_counter() - self.started.pop(key, time.perf_counter())
        self.console.print(f"      {key:<26} {state:<8}{seconds:6.1f} s  {self.console.dim(note)}".rstrip())


@dataclass
class RunResult:
    """One DAG run: its state, its tasks' states and the XComs the demo reads."""

    dag_id: str
    state: str
    seconds: float
    tasks: dict[str, str] = field(default_factory=dict)
    xcom: dict[tuple[str, str], Any] = field(default_factory=dict)


def run_dag(dagbag: Any, dag_id: str, conf: dict[str, Any] | None,
            xcoms: list[tuple[str, str]], asset_event_ids: list[int] | None = None) -> RunResult:
    """
    Run one example DAG with ``dag.test()``, with two changes for ``dag.test()`` only: task retries
    off (a failure shows at once, not after the retry delay), and the DAG-run Deadline Alert taken
    off (Airflow 3.3.2's ``dag.test()`` crashes at the end of a successful run of a DAG that has
    one; scheduled runs are unaffected).

    ``asset_event_ids``: asset events the run consumes, as the scheduler attaches them to a run it
    starts on an asset (``dag.test()`` makes a manual run, which consumes none).
    """
    dag = dagbag.dags[dag_id]
    for task in dag.tasks:
        task.retries = 0
    dag.deadline = None
    started = time.perf_counter()
    if asset_event_ids:
        with consuming_asset_events(asset_event_ids):
            dag_run = dag.test(run_conf=conf)
    else:
        dag_run = dag.test(run_conf=conf)
    seconds = time.perf_counter() - started
    tasks: dict[str, str] = {}
    for ti in dag_run.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        tasks[key] = str(getattr(ti.state, "value", ti.state))
    xcom = {(task_id, key): read_xcom(dag_run, task_id, key) for task_id, key in xcoms}
    return RunResult(dag_id, str(getattr(dag_run.state, "value", dag_run.state)), seconds, tasks, xcom)


@contextlib.contextmanager
def consuming_asset_events(event_ids: list[int]) -> Iterator[None]:
    """While active, the DAG run ``dag.test()`` creates consumes these asset events (by id)."""
    import airflow.models.dagrun as dagrun_module

    original = dagrun_module.get_or_create_dagrun

    def get_or_create_dagrun(*args: Any, session: Any, **kwargs: Any) -> Any:
        from airflow.models.asset import AssetEvent
        from sqlalchemy import select

        dag_run = original(*args, session=session, **kwargs)
        dag_run.consumed_asset_events.extend(
            session.scalars(select(AssetEvent).where(AssetEvent.id.in_(event_ids))).all())
        session.flush()
        return dag_run

    dagrun_module.get_or_create_dagrun = get_or_create_dagrun
    try:
        yield
    finally:
        dagrun_module.get_or_create_dagrun = original


def read_xcom(dag_run: Any, task_id: str, key: str) -> Any:
    """The XCom ``key`` that ``task_id`` pushed in ``dag_run`` (``None`` if none)."""
    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key,
                               map_indexes=-1, limit=1)
        ).first()
        return None if row is None else deserialize(XComModel.deserialize_value(row))


# --------------------------------------------------------------------------- the push path


@dataclass
class PushResult:
    """The push step: the subscribe run, the delivery, the warehouse row, the alert run, and when each happened."""

    subscribe: RunResult | None = None
    deliveries: int = 0
    http_status: int | None = None
    to_2xx: float | None = None
    row: tuple[Any, ...] | None = None
    to_row: float | None = None
    asset_event_ids: list[int] = field(default_factory=list)
    to_asset_event: float | None = None
    alert: RunResult | None = None
    to_alert_end: float | None = None

    @property
    def alerted(self) -> list[dict[str, Any]]:
        """The parcels the alert task reported (its return value)."""
        return list((self.alert.xcom.get(("alert", "return_value")) if self.alert else None) or [])


def forget_stale_subscriptions(warehouse: Path) -> None:
    """
    The sandbox is a new process each run, so the TrackFlow webhooks a previous run registered are
    gone: drop their ``parcel_subscriptions`` rows (else the subscribe operator skips the parcels as
    already subscribed) and the pushed parcel's row (so the row measured is this run's).
    """
    if not warehouse.exists():
        return
    with sqlite3.connect(warehouse) as db:
        for table, where in (("parcel_subscriptions", "provider = 'trackflow'"),
                             ("parcel_tracking", "provider = 'trackflow' AND tracking_number = ?"),
                             ("parcel_tracking_events", "provider = 'trackflow' AND tracking_number = ?")):
            with contextlib.suppress(sqlite3.OperationalError):  # no such table yet (first run)
                db.execute(f'DELETE FROM "{table}" WHERE {where}', (PUSH_PARCEL,) if "?" in where else ())


def pushed_row(warehouse: Path) -> tuple[Any, ...] | None:
    """The pushed parcel's TrackFlow row once it is in exception, else None."""
    try:
        with sqlite3.connect(f"file:{warehouse}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(
                'SELECT "provider", "carrier", "tracking_number", "status", "last_event_description", '
                '"last_event_location" FROM "parcel_tracking" WHERE "provider" = \'trackflow\' AND '
                '"tracking_number" = ? AND "status" = \'exception\'', (PUSH_PARCEL,)).fetchone()
    except sqlite3.OperationalError:
        return None


def alert_asset_events(since: float) -> list[tuple[int, float]]:
    """``(id, epoch seconds)`` of the events on the alert asset recorded at or after ``since``."""
    from datetime import datetime, timezone

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_parcels.webhooks.assets import webhook_alert_asset

    uri = webhook_alert_asset("parcels_demo_warehouse").uri
    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.id, AssetEvent.timestamp).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri, AssetEvent.timestamp >= datetime.fromtimestamp(since, timezone.utc))
            .order_by(AssetEvent.id)).all()
    return [(event_id, at.timestamp()) for event_id, at in rows]


def wait_for(probe: Callable[[], Any], timeout: float, interval: float = 0.01) -> Any:
    """``probe()`` once it is truthy (None after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value or None
        time.sleep(interval)


def run_push(console: Console, dagbag: Any, sandbox: Sandbox, receiver: WebhookReceiver, warehouse: Path,
             live: bool) -> PushResult:
    """Subscribe, scan, watch the delivery land, run the alert DAG on the asset event it made."""
    result = PushResult()
    forget_stale_subscriptions(warehouse)
    receiver.start()
    console.print(f"      receiver {receiver.base_url}/parcels/webhooks/{PUSH_CONN_ID} (the provider's ASGI app, "
                  "what the API server's plugin serves in Airflow)")
    sub = result.subscribe = run_dag(dagbag, SUBSCRIBE_DAG, {"webhook_base_url": receiver.base_url},
                                     [("subscribe", "return_value")])
    if not live:
        for key, state in sub.tasks.items():
            console.print(f"      {key:<26} {state}")
    counts = sub.xcom.get(("subscribe", "return_value")) or {}
    console.print(f"      {SUBSCRIBE_DAG} run {sub.state} in {sub.seconds:.1f} s: "
                  f"{counts.get('subscribed', 0)} parcels subscribed to TrackFlow webhooks")
    if sub.state != "success":
        return result

    scan = sandbox.control("POST", "scan", {"tracking_number": PUSH_PARCEL, "status": "exception"})
    changed_at = float(scan["changed_at"])
    result.deliveries = int(scan.get("deliveries") or 0)
    console.print(f"      sandbox scan: {PUSH_PARCEL} -> exception at "
                  f"{time.strftime('%H:%M:%S', time.localtime(changed_at))} "
                  f"({result.deliveries} signed webhook queued); the seconds below count from this status change")
    result.row = wait_for(lambda: pushed_row(warehouse), 15, interval=0.002)
    if result.row is not None:
        result.to_row = time.time() - changed_at
    events = wait_for(lambda: alert_asset_events(changed_at), 10, interval=0.05) or []
    result.asset_event_ids = [event_id for event_id, _ in events]
    if events:
        result.to_asset_event = events[0][1] - changed_at
    log = sandbox.control("GET", "webhooks").get("deliveries") or []
    mine = [d for d in log if d.get("tracking_number") == PUSH_PARCEL and d.get("changed_at") == scan["changed_at"]]
    if mine:
        result.http_status = mine[-1].get("http_status")
        if mine[-1].get("acked_at"):
            result.to_2xx = float(mine[-1]["acked_at"]) - changed_at

    def at(seconds: float | None) -> str:
        return f"{'+' + format(seconds, '.2f'):>6} s" if seconds is not None else "   never"

    console.print(f"      {at(result.to_2xx)}  receiver answered {result.http_status} (signature verified, row "
                  "committed, then the answer)")
    if result.row is not None:
        _, carrier, number, status, text, where = result.row
        detail = ", ".join(x for x in (text, where) if x)
        console.print(f"      {at(result.to_row)}  warehouse row (as the demo read it): parcel_tracking trackflow "
                      f"{carrier} {number} {status}" + (f" ({detail})" if detail else ""))
    else:
        console.print(f"      {at(None)}  warehouse row: {PUSH_PARCEL} not in exception after 15 s")
    console.print(f"      {at(result.to_asset_event)}  asset event on parcels-alerts://parcels_demo_warehouse/"
                  f"parcel_tracking, the asset {PUSH_ALERT_DAG} is scheduled on")
    if not events:
        return result
    console.print(f"      {PUSH_ALERT_DAG} on that asset event (dag.test() here; under a real scheduler the "
                  "asset event starts it, tests/e2e/test_push_path.py)")
    alert = result.alert = run_dag(dagbag, PUSH_ALERT_DAG, None, [("alert", "return_value")],
                                   asset_event_ids=result.asset_event_ids)
    result.to_alert_end = time.time() - changed_at
    if not live:
        for key, state in alert.tasks.items():
            console.print(f"      {key:<26} {state}")
    named = ", ".join(f"{p.get('tracking_number')} ({p.get('status')})" for p in result.alerted) or "nothing"
    console.print(f"      {at(result.to_alert_end)}  {PUSH_ALERT_DAG} run {alert.state}: the alert named {named} "
                  "(ParcelReportNotifier, to the task log)")
    return result


def check_push(push: PushResult) -> tuple[list[str], list[str]]:
    """(what went as expected, what did not) on the push path."""
    good: list[str] = []
    bad: list[str] = []
    if push.subscribe is None or push.subscribe.state != "success":
        bad.append(f"{SUBSCRIBE_DAG}: run {push.subscribe.state if push.subscribe else 'not run'}, "
                   f"tasks {push.subscribe.tasks if push.subscribe else {}}")
        return good, bad
    if push.deliveries < 1 or push.http_status != 200:
        bad.append(f"push: the sandbox queued {push.deliveries} webhook(s), the receiver answered {push.http_status}")
    if push.row is None or push.to_row is None:
        bad.append(f"push: {PUSH_PARCEL} did not land in the warehouse in exception")
    else:
        good.append(f"push: the exception scan of {PUSH_PARCEL} reached the warehouse {push.to_row:.2f} s after the "
                    f"status change")
    numbers = {p.get("tracking_number") for p in push.alerted if p.get("status") == "exception"}
    if push.alert is None or push.alert.state != "success" or PUSH_PARCEL not in numbers:
        state = f"run {push.alert.state}" if push.alert else "not run (no asset event)"
        bad.append(f"push: {PUSH_ALERT_DAG} {state}, alerted {push.alerted}")
    elif push.to_alert_end is not None:
        good.append(f"push: {PUSH_ALERT_DAG} alerted on {PUSH_PARCEL}; its run ended {push.to_alert_end:.1f} s after "
                    "the status change")
    return good, bad


# --------------------------------------------------------------------------- expectations and report


def read_orders() -> list[dict[str, str]]:
    """The orders file the example DAGs read."""
    with ORDERS_FILE.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def expected_alert_parcels(orders: list[dict[str, str]]) -> set[str]:
    """The same-day parcels the sandbox puts into exception (``POLLX``/``SECX`` numbers)."""
    return {row["tracking_number"] for row in orders
            if row["delivery_promise"] == "same_day" and row["tracking_number"].upper().startswith(("POLLX", "SECX"))}


def check_runs(sync: RunResult, sla: RunResult, alerts: list[dict[str, Any]],
               orders: list[dict[str, str]]) -> tuple[list[str], list[str]]:
    """(what went as expected, what did not)."""
    good: list[str] = []
    bad: list[str] = []
    if sync.state == "success" and all(state == "success" for state in sync.tasks.values()):
        good.append(f"{SYNC_DAG}: every task succeeded ({len(sync.tasks)} task instances)")
    else:
        bad.append(f"{SYNC_DAG}: run {sync.state}, tasks {sync.tasks}")
    want_states = SLA_EXPECTED_TASKS
    if sla.tasks == want_states and sla.state == "failed":
        good.append(f"{SLA_DAG}: the sensor failed on exception parcels, the report ran anyway (all_done), "
                    "sla_breached marked the run failed")
    else:
        bad.append(f"{SLA_DAG}: expected tasks {want_states} and a failed run, got {sla.tasks} ({sla.state})")
    expected = expected_alert_parcels(orders)
    numbers = {row["tracking_number"] for row in orders}
    alert_posts = [post for post in alerts if "Same-day parcels in exception" in json.dumps(post["json"])]
    if len(alert_posts) != 1:
        bad.append(f"expected exactly one alert on the webhook, got {len(alert_posts)}: {alerts}")
    else:
        text = str(alert_posts[0]["json"].get("text", ""))
        named = {number for number in numbers if number in text}
        if named == expected:
            good.append(f"the alert named exactly the expected parcels: {', '.join(sorted(expected))}")
        else:
            bad.append(f"the alert named {sorted(named)}, expected {sorted(expected)}")
    failed = {p.get("tracking_number") for p in sla.xcom.get((SENSOR_TASK, "failed_parcels")) or []}
    if failed != expected:
        bad.append(f"the sensor's failed_parcels XCom holds {sorted(failed)}, expected {sorted(expected)}")
    return good, bad


def warehouse_report(console: Console, warehouse: Path) -> None:
    """Parcels by status and a few parcels with their last event, straight from the SQLite file."""
    with sqlite3.connect(warehouse) as db:
        counts = db.execute(
            'SELECT "status", count(*) FROM "parcel_tracking" GROUP BY 1 ORDER BY 2 DESC, 1').fetchall()
        total = sum(n for _, n in counts)
        events = db.execute('SELECT count(*) FROM "parcel_tracking_events"').fetchone()[0]
        providers = [p for (p,) in db.execute('SELECT DISTINCT "provider" FROM "parcel_tracking" ORDER BY 1')]
        console.print(f"  parcel_tracking: {total} parcels ({', '.join(providers)}); "
                      f"parcel_tracking_events: {events} events")
        console.print("  parcels by status:")
        widest = max((n for _, n in counts), default=1)
        for status, n in counts:
            bar = "#" * max(1, round(24 * n / widest))
            console.print(f"    {status:<22}{n:>4}  {console.dim(bar)}")
        console.print("  a few parcels with their last event:")
        rows = db.execute(
            'SELECT "tracking_number", "carrier", "status", "last_event_at", "last_event_description", '
            '"last_event_location", "error_code" FROM "parcel_tracking" AS t WHERE "tracking_number" = '
            '(SELECT min("tracking_number") FROM "parcel_tracking" AS u WHERE u."status" = t."status") '
            'ORDER BY "status"'
        ).fetchall()
        for number, carrier, status, at, text, where, error in rows:
            if error:
                last = f"(no events: error {error})"
            elif not at:
                last = "(no carrier scan yet)"
            else:
                last = f"{at[:16].replace('T', ' ')}  {text or ''}" + (f", {where}" if where else "")
            console.print(f"    {number:<18} {carrier:<6} {status:<21} {last}")


def print_alert(console: Console, alerts: list[dict[str, Any]]) -> None:
    """What the webhook received."""
    if not alerts:
        console.print("  (nothing arrived at the webhook)")
    for post in alerts:
        payload = post["json"]
        text = payload.get("text", payload) if isinstance(payload, dict) else payload
        lines = str(text).splitlines()
        console.print(f"  webhook POST {post['path']} (Slack-style JSON), text:")
        for line in lines:
            console.print(f"    {line}")


def print_late(console: Console, late: Any) -> None:
    """The late-parcel report's XCom, the first few lines."""
    late = late or []
    console.print(f"  late_parcels_report (trigger_rule all_done) listed {len(late)} late parcel(s) "
                  "from the warehouse:")
    for row in late[:8]:
        days = f"{row['days_late']:.1f} d late" if row.get("days_late") else ""
        console.print(f"    {row['tracking_number']:<18} {row['status']:<21} {days:<11} {', '.join(row['reasons'])}")
    if len(late) > 8:
        console.print(f"    ... and {len(late) - 8} more")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """``--home`` and ``--verbose``."""
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=None,
                        help="demo home (default: $PARCELS_DEMO_HOME or .demo/ in the repository)")
    parser.add_argument("--verbose", action="store_true", help="show Airflow's output instead of logging it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the exit code (0 as expected, 1 unexpected outcome, 2 could not start)."""
    args = parse_args(argv)
    home = (args.home or Path(os.environ.get("PARCELS_DEMO_HOME") or ROOT / ".demo")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    warehouse = home / "warehouse.db"
    log_path = home / "demo.log"
    console = Console()
    started = time.perf_counter()

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    console.print(console.bold("Parcels demo: four example DAGs run for real against the local sandbox, "
                               "poll and push"))
    console.print(f"  demo home {relative(home)}/  (Airflow home, SQLite warehouse, log; delete it to start over)")
    if not args.verbose:
        console.print(f"  Airflow's own output goes to {relative(log_path)}")
        send_output_to_log(log_path)
    sandbox, webhook, receiver = Sandbox(), AlertSink(name="demo-alerts"), WebhookReceiver()
    try:
        return run_demo(console, home, warehouse, log_path, sandbox, webhook, receiver, started)
    except DemoError as err:
        console.print(console.red(f"✗ the demo could not run: {err}"))
        console.print(f"  Airflow's output: {relative(log_path)}")
        return EXIT_SETUP
    except KeyboardInterrupt:
        console.print(console.yellow("interrupted"))
        return 130
    except Exception as err:
        traceback.print_exc()  # to the log
        console.print(console.red(f"✗ the demo failed: {type(err).__name__}: {err}"))
        console.print(f"  traceback and Airflow's output: {relative(log_path)}")
        return EXIT_UNEXPECTED
    finally:
        receiver.stop()
        sandbox.stop()
        webhook.stop()


def run_demo(console: Console, home: Path, warehouse: Path, log_path: Path, sandbox: Sandbox,
             webhook: AlertSink, receiver: WebhookReceiver, started: float) -> int:
    """Steps 1 to 6 (the caller stops the sandbox, the webhook and the receiver)."""
    total_steps = 6
    orders = read_orders()

    sandbox.start()
    console.step(1, total_steps, "sandbox", f"{sandbox.url} (pid {sandbox.pid}): {', '.join(APIS)}; "
                 f"alert webhook {webhook.url}")

    env = airflow_environment(home, sandbox, webhook, warehouse)
    os.environ.update(env)
    console.step(2, total_steps, "connections",
                 "parcels_demo_{" + ",".join(APIS) + "} (sandbox), "
                 f"parcels_demo_warehouse (SQLite {relative(warehouse)}), parcels_demo_alerts (webhook)")

    airflow_home = Path(env["AIRFLOW_HOME"])
    airflow_home.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    import airflow.sdk  # noqa: F401  (Airflow reads the environment above at import)

    created, seconds = ensure_metadata_db(airflow_home)
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(DAGS_FOLDER), bundle_path=str(DAGS_FOLDER))
    if dagbag.import_errors:
        raise DemoError(f"example DAGs failed to import: {dagbag.import_errors}")
    db_note = f"metadata DB created in {seconds:.1f} s" if created else "metadata DB reused"
    console.step(3, total_steps, "airflow", f"home {relative(airflow_home)}, {db_note}, DAGs folder "
                 f"{relative(DAGS_FOLDER)} ({len(dagbag.dags)} DAGs), ready in {time.perf_counter() - t0:.1f} s")

    progress = TaskProgress(console)
    live = progress.register()

    console.step(4, total_steps, SYNC_DAG, "track the open parcels (the first time: the 50 orders of "
                 "data/orders.csv) and upsert the warehouse")
    sync = run_dag(dagbag, SYNC_DAG, None, [("summarize", "return_value")])
    if not live:
        for key, state in sync.tasks.items():
            console.print(f"      {key:<26} {state}")
    console.print(f"      run {sync.state} in {sync.seconds:.1f} s (the first dag.test() of a process includes "
                  "Airflow building its in-process execution API)")

    console.step(5, total_steps, SLA_DAG, "wait (deferrable sensor) for today's same-day parcels, alert on "
                 "exceptions, report late parcels")
    sla = run_dag(dagbag, SLA_DAG, SLA_CONF, [("late_parcels_report", "return_value"),
                                              (SENSOR_TASK, "failed_parcels")])
    if not live:
        for key, state in sla.tasks.items():
            console.print(f"      {key:<26} {state}")
    console.print(f"      run {sla.state} in {sla.seconds:.1f} s"
                  + (" (expected: the alert path, see below)" if sla.tasks == SLA_EXPECTED_TASKS else ""))

    console.step(6, total_steps, "push", f"{SUBSCRIBE_DAG} registers TrackFlow webhooks; a carrier scan in the "
                 f"sandbox pushes an exception to the receiver; {PUSH_ALERT_DAG} alerts on it")
    push = run_push(console, dagbag, sandbox, receiver, warehouse, live)

    good, bad = check_runs(sync, sla, webhook.received, orders)
    push_good, push_bad = check_push(push)
    good += push_good
    bad += push_bad

    console.print()
    console.print(console.bold(f"What landed in the warehouse ({warehouse}):"))
    try:
        warehouse_report(console, warehouse)
    except sqlite3.Error as err:
        bad.append(f"the warehouse cannot be read: {err}")
    console.print()
    console.print(console.bold("The alert that fired (on_failure_callback of the sensor: ParcelReportNotifier):"))
    print_alert(console, webhook.received)
    console.print()
    print_late(console, sla.xcom.get(("late_parcels_report", "return_value")))
    console.print(f"  {SLA_DAG} also has a Deadline Alert (late-parcel report if the run is not done 15 h after it "
                  "was queued): the scheduler evaluates it, dag.test() does not")
    console.print()
    for line in good:
        console.print(console.green(f"✓ {line}"))
    for line in bad:
        console.print(console.red(f"✗ {line}"))
    elapsed = time.perf_counter() - started
    if bad:
        console.print(console.red(f"✗ demo finished in {elapsed:.1f} s with unexpected results; Airflow's output: "
                                  f"{relative(log_path)}"))
        return EXIT_UNEXPECTED
    console.print(console.green(
        f"✓ demo complete in {elapsed:.1f} s: everything behaved as expected. The failed {SLA_DAG} run is the "
        f"alert path working: {len(expected_alert_parcels(orders))} same-day parcels went into exception and the "
        "alert named exactly them."))
    console.print(f"  SQLite warehouse: {warehouse}")
    console.print(f"    sqlite3 {relative(warehouse)} 'SELECT status, count(*) FROM parcel_tracking GROUP BY 1'")
    console.print(f"  run it again: ./scripts/demo (idempotent: only open parcels are re-tracked); "
                  f"start over: rm -rf {relative(home)}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's exit hooks: Airflow's close its in-process API server with a 5 s
    # timeout, and there is nothing left to save (the sandbox and the webhook are stopped).
    os._exit(code)
