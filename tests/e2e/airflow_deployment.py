"""
A real Airflow for the end-to-end tests: api-server, scheduler, dag-processor and triggerer as
four processes in a throw-away ``AIRFLOW_HOME``, the sandbox as a fifth, and a REST client that
authenticates as the UI does (a JWT from the simple auth manager's ``POST /auth/token``).

Everything is set up the way ``docs/running_on_airflow.md`` tells a user to: the environment of
:func:`~airflow_provider_parcels.sandbox.airflow_home.isolated_airflow_env` plus the settings a
scheduler-run deployment needs (the execution API URL follows the API port, the test-connection
switch), the connections imported with ``airflow connections import`` from the file the sandbox
writes (``--connections-file``).

With ``executor="celery"`` the same deployment runs on the CeleryExecutor instead (Celery
refuses SQLite): a throw-away PostgreSQL (``tests/helpers/postgres.py``) as the metadata DB and
the Celery result backend, a ``redis-server`` of its own as the broker, and ``celery_workers``
``airflow celery worker`` processes (``--concurrency worker_concurrency`` each), every worker
reporting its own hostname (``worker1``, ``worker2``...) to Airflow, so a task instance's
``hostname`` says which worker ran it.

Every process is started in its own process group and watched by a small watchdog process that
ends the group when the test process dies or ``max_seconds`` pass, so nothing outlives a run,
even a killed one. :meth:`AirflowDeployment.stop` ends them all at teardown (TERM, then KILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from airflow_provider_parcels.sandbox.airflow_home import isolated_airflow_env
from airflow_provider_parcels.sandbox.alert_sink import AlertSink

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "example_dags"
E2E_DAGS = Path(__file__).resolve().parent / "dags"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: The health endpoint's part of each component (the api-server answers it, so it has none).
HEALTH_PARTS = {"scheduler": "scheduler", "triggerer": "triggerer", "dag-processor": "dag_processor"}
#: A ``[core] hostname_callable`` for the Celery workers: each worker's own name (several workers
#: on one machine would otherwise all report this machine's hostname).
WORKER_HOSTNAME_MODULE = """
import os, socket
def hostname():
    return os.environ.get("PARCELS_E2E_WORKER_NAME") or socket.getfqdn()
"""
ADMIN_USER = "admin"
#: The ``http`` connection of the deployment's webhook (the e2e DAGs' alerts go there).
ALERTS_CONN_ID = "e2e_alerts"
TERMINAL_RUN_STATES = {"success", "failed"}

#: Ends a process group when the test process is gone or the time is up; exits once the group is.
WATCHDOG = r"""
import os, signal, sys, time
parent, group, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + limit
def alive(pid, group=False):
    try:
        (os.killpg if group else os.kill)(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
while alive(group, True):
    if not alive(parent) or time.monotonic() > end:
        for sig, pause in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 0.0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                sys.exit(0)
            stop = time.monotonic() + pause
            while time.monotonic() < stop and alive(group, True):
                time.sleep(0.2)
        sys.exit(0)
    time.sleep(1.0)
"""


class DeploymentError(RuntimeError):
    """The deployment could not start, or a process died: the message holds the logs' tails."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when it is missing)."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Process:
    """One started process group, its log file and its watchdog."""

    name: str
    popen: subprocess.Popen
    log: Path
    watchdog: subprocess.Popen | None = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (nothing when it is gone)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def group_alive(self) -> bool:
        return _group_alive(self.popen.pid)

    def reap(self) -> None:
        """Collect the exit status and end the watchdog."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        if self.watchdog is not None and self.watchdog.poll() is None:
            self.watchdog.kill()
            self.watchdog.wait(timeout=5)


def stop_all(processes: Iterable[Process], grace: float = 10.0) -> None:
    """TERM every group at once, KILL what is left after ``grace`` seconds, reap them all."""
    processes = list(processes)
    for process in processes:
        process.signal(signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and any(process.group_alive() for process in processes):
        time.sleep(0.2)
    for process in processes:
        if process.group_alive():
            process.signal(signal.SIGKILL)
    for process in processes:
        process.reap()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_process(name: str, argv: list[str], env: Mapping[str, str], log: Path, cwd: Path,
                  max_seconds: float) -> Process:
    """Start ``argv`` in a new process group writing to ``log``, watched by :data:`WATCHDOG`."""
    handle = log.open("w", encoding="utf-8")
    try:
        popen = subprocess.Popen(argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=handle,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        handle.close()
    watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), str(popen.pid), str(max_seconds)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    return Process(name, popen, log, watchdog)


@dataclass
class RunResult:
    """A finished DAG run: its state and its tasks' states (mapped tasks: the worst of the copies)."""

    dag_id: str
    run_id: str
    state: str
    seconds: float
    tasks: dict[str, str] = field(default_factory=dict)


class AirflowDeployment:
    """
    A four-process Airflow and the sandbox in ``root``; :meth:`start` it, use its REST helpers,
    :meth:`stop` it.

    :param root: an empty folder for the home, the DAGs folder, the warehouse and the logs.
    :param extra_dags: DAG files copied next to the example DAGs.
    :param max_seconds: the longest any process may live (its watchdog ends it then).
    :param executor: ``"local"`` (LocalExecutor, SQLite metadata DB) or ``"celery"`` (CeleryExecutor,
        PostgreSQL metadata DB and result backend, Redis broker, ``celery_workers`` workers).
    :param celery_workers: how many ``airflow celery worker`` processes (``executor="celery"``).
    :param worker_concurrency: task slots of each Celery worker.
    :param components: the Airflow components to start (default: all four of :data:`COMPONENTS`).
    :param example_dags: copy the example DAGs (and their data) into the DAGs folder.
    :param sandbox_args: more options of ``python -m airflow_provider_parcels.sandbox``
        (e.g. ``["--window-seconds", "10"]``).
    """

    def __init__(self, root: Path, extra_dags: Iterable[Path] = (), max_seconds: float = 900.0,
                 executor: str = "local", celery_workers: int = 2, worker_concurrency: int = 4,
                 components: Sequence[str] = COMPONENTS, example_dags: bool = True,
                 sandbox_args: Sequence[str] = ()) -> None:
        if executor not in ("local", "celery"):
            raise ValueError(f"executor must be 'local' or 'celery', got {executor!r}")
        self.root = root
        self.home = root / "airflow"
        self.dags = root / "dags"
        self.logs = root / "process-logs"
        self.warehouse_db = root / "warehouse.db"
        self.connections_file = root / "connections.json"
        self.extra_dags = list(extra_dags)
        self.max_seconds = max_seconds
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.password = "e2e-" + os.urandom(8).hex()
        self.processes: dict[str, Process] = {}
        self.sandbox_url = ""
        self.env: dict[str, str] = {}
        self.session = requests.Session()
        self.timings: dict[str, float] = {}
        self.webhook: AlertSink | None = None
        self.executor = executor
        self.celery_workers = celery_workers
        self.worker_concurrency = worker_concurrency
        self.components = tuple(components)
        self.example_dags = example_dags
        self.sandbox_args = list(sandbox_args)
        self.postgres: Any = None  # tests/helpers/postgres.LocalPostgres (executor="celery")
        self.metadata_dsn = ""  # postgresql://... of the metadata DB (executor="celery")
        self.redis_port = 0  # the broker's port (executor="celery")

    # ------------------------------------------------------------------ environment

    def environment(self) -> dict[str, str]:
        """
        The environment of every Airflow process: this machine's, minus any ``AIRFLOW*`` variable
        (the test session's own isolated Airflow), plus what a scheduler-run deployment needs.
        """
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env.update(isolated_airflow_env(self.home, self.dags, log_level="INFO"))
        passwords = self.home / "simple_auth_manager_passwords.json"
        env.update({
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            # Workers and the triggerer reach the API server here: it must follow the port above.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__SECRET_KEY": os.urandom(16).hex(),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__PARALLELISM": "8",
            # Runs come from the tests' REST calls only, never from the DAGs' schedules.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__TRIGGERER__DEFAULT_CAPACITY": "100",
        })
        if self.executor == "celery":
            env.update({
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_dsn.replace("postgresql://",
                                                                                 "postgresql+psycopg2://", 1),
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_dsn,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                "AIRFLOW__CORE__PARALLELISM": str(max(8, self.celery_workers * self.worker_concurrency)),
            })
        return env

    def worker_environment(self, name: str) -> dict[str, str]:
        """One Celery worker's environment: its own hostname for Airflow and log server port."""
        return {**self.env, "PARCELS_E2E_WORKER_NAME": name,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "parcels_e2e_worker_hostname.hostname",
                "PYTHONPATH": os.pathsep.join(p for p in (str(self.root / "pythonpath"),
                                                          self.env.get("PYTHONPATH", "")) if p),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}

    def prepare(self) -> None:
        """The DAGs folder (the example DAGs with their data, and the extra DAGs), the home, the password."""
        if self.example_dags:
            shutil.copytree(EXAMPLE_DAGS, self.dags, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            self.dags.mkdir(parents=True)
        for dag_file in self.extra_dags:
            shutil.copy2(dag_file, self.dags / dag_file.name)
        self.home.mkdir(parents=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.home / "simple_auth_manager_passwords.json").write_text(json.dumps({ADMIN_USER: self.password}))
        self.env = self.environment()

    def airflow_cli(self, *args: str, timeout: float = 180.0, check: bool = True) -> subprocess.CompletedProcess:
        """``airflow ARGS`` in this deployment's environment."""
        airflow = str(Path(sys.executable).with_name("airflow"))
        done = subprocess.run([airflow, *args], env=self.env, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise DeploymentError(f"airflow {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                                  f"{done.stderr[-3000:]}")
        return done

    # ------------------------------------------------------------------ start / stop

    def start(self, timeout: float = 180.0) -> AirflowDeployment:
        """Sandbox, metadata DB, connections, the four components; wait until all are healthy."""
        started = time.monotonic()
        if self.executor == "celery":
            self.start_celery_services()
        self.prepare()
        self.start_sandbox()
        self.airflow_cli("db", "migrate")
        self.airflow_cli("connections", "import", "--overwrite", str(self.connections_file))
        self.timings["db and connections"] = time.monotonic() - started
        airflow = str(Path(sys.executable).with_name("airflow"))
        for component in self.components:
            self.processes[component] = start_process(component, [airflow, component], self.env,
                                                      self.logs / f"{component}.log", self.root, self.max_seconds)
        if self.executor == "celery":
            self.start_celery_workers()
        self.wait_healthy(timeout)
        if self.executor == "celery":
            self.wait_celery_workers(timeout)
        self.login()
        self.webhook = AlertSink()
        self.request("POST", "/connections", expect=(201,),
                     json={"connection_id": ALERTS_CONN_ID, "conn_type": "http", "host": self.webhook.url})
        self.timings["start"] = time.monotonic() - started
        return self

    def start_celery_services(self) -> None:
        """PostgreSQL (metadata DB, result backend) and ``redis-server`` (broker) for the CeleryExecutor."""
        sys.path.insert(0, str(REPO / "tests"))
        from helpers.postgres import LocalPostgres, create_database, find_bindir

        self.logs.mkdir(parents=True, exist_ok=True)
        redis_server = shutil.which("redis-server")
        bindir = find_bindir()
        if redis_server is None or bindir is None:
            raise DeploymentError("the CeleryExecutor deployment needs redis-server and PostgreSQL's initdb "
                                  "(./scripts/test installs both)")
        self.postgres = LocalPostgres(bindir)
        self.postgres.start()
        create_database(self.postgres.dsn("postgres"), "airflow")
        self.metadata_dsn = self.postgres.dsn("airflow")
        self.redis_port = free_port()
        argv = [redis_server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.logs)]
        self.processes["redis"] = start_process("redis", argv, os.environ, self.logs / "redis.log", self.root,
                                                self.max_seconds)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.redis_port), 0.2):
                return
            time.sleep(0.05)
        raise DeploymentError(f"redis-server did not start:\n{tail(self.logs / 'redis.log')}")

    def start_celery_workers(self) -> None:
        """``airflow celery worker`` ``celery_workers`` times, named ``worker1``, ``worker2``..."""
        module = self.root / "pythonpath" / "parcels_e2e_worker_hostname.py"
        module.parent.mkdir(exist_ok=True)
        module.write_text(WORKER_HOSTNAME_MODULE)
        airflow = str(Path(sys.executable).with_name("airflow"))
        for i in range(1, self.celery_workers + 1):
            name = f"worker{i}"
            argv = [airflow, "celery", "worker", "--celery-hostname", f"{name}@%h",
                    "--concurrency", str(self.worker_concurrency), "--skip-serve-logs", "--without-gossip"]
            self.processes[name] = start_process(name, argv, self.worker_environment(name),
                                                 self.logs / f"{name}.log", self.root, self.max_seconds)

    def wait_celery_workers(self, timeout: float) -> None:
        """Wait until every Celery worker has said it is ready (connected to the broker, consuming)."""
        end = time.monotonic() + timeout
        names = [f"worker{i}" for i in range(1, self.celery_workers + 1)]
        while time.monotonic() < end:
            self.check_processes()
            if all(" ready." in tail(self.logs / f"{name}.log", 400) for name in names):
                return
            time.sleep(0.5)
        raise DeploymentError(f"Celery workers not ready in {timeout:.0f} s\n{self.log_tails(names)}")

    def start_sandbox(self, timeout: float = 30.0) -> None:
        """``python -m airflow_provider_parcels.sandbox --port 0 --connections-file ...``, as a user runs it."""
        log = self.logs / "sandbox.log"
        argv = [sys.executable, "-m", "airflow_provider_parcels.sandbox", "--port", "0",
                "--connections-file", str(self.connections_file), "--warehouse-db", str(self.warehouse_db),
                *self.sandbox_args]
        self.processes["sandbox"] = start_process("sandbox", argv, self.env, log, self.root, self.max_seconds)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            if "Control:" in text and self.connections_file.exists():
                match = re.search(r"Parcels sandbox listening on (\S+)", text)
                assert match, text
                self.sandbox_url = match[1]
                return
            if not self.processes["sandbox"].alive():
                break
            time.sleep(0.1)
        raise DeploymentError(f"the sandbox did not start:\n{tail(log)}")

    def wait_healthy(self, timeout: float) -> dict[str, Any]:
        """Poll ``/api/v2/monitor/health`` until the DB and every started component are healthy."""
        end = time.monotonic() + timeout
        last: Any = None
        parts = ["metadatabase", *(HEALTH_PARTS[c] for c in self.components if c in HEALTH_PARTS)]
        while time.monotonic() < end:
            self.check_processes()
            try:
                last = self.session.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
                if all((last.get(part) or {}).get("status") == "healthy"
                       for part in parts):
                    return last
            except (requests.RequestException, ValueError) as err:
                last = repr(err)
            time.sleep(1.0)
        raise DeploymentError(f"Airflow not healthy in {timeout:.0f} s: {last}\n{self.log_tails()}")

    def check_processes(self) -> None:
        """Raise with the logs' tails if any process has exited."""
        dead = [name for name, process in self.processes.items() if not process.alive()]
        if dead:
            raise DeploymentError(f"exited: {', '.join(dead)}\n{self.log_tails(dead)}")

    def log_tails(self, names: Iterable[str] | None = None, lines: int = 30) -> str:
        return "\n".join(f"--- {name} ({self.processes[name].log}):\n{tail(self.processes[name].log, lines)}"
                         for name in (names or self.processes))

    def stop(self) -> None:
        """End every process group (TERM, then KILL); safe to call twice."""
        stop_all(self.processes.values())
        self.session.close()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        if self.webhook is not None:
            self.webhook.stop()
            self.webhook = None

    # ------------------------------------------------------------------ REST

    def login(self) -> None:
        """A JWT as the UI gets it: ``POST /auth/token`` with the simple auth manager's user."""
        answer = self.session.post(f"{self.base_url}/auth/token",
                                   json={"username": ADMIN_USER, "password": self.password}, timeout=30)
        answer.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def request(self, method: str, path: str, expect: Iterable[int] = (200,), **kwargs: Any) -> requests.Response:
        """``method`` on ``/api/v2<path>`` (or ``path`` as is when it starts with ``/ui`` or ``/auth``)."""
        url = self.base_url + (path if path.startswith(("/ui/", "/auth/")) else f"/api/v2{path}")
        answer = self.session.request(method, url, timeout=60, **kwargs)
        if answer.status_code not in tuple(expect):
            raise AssertionError(f"{method} {path}: HTTP {answer.status_code} {answer.text[:2000]}")
        return answer

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120.0) -> None:
        """Wait until the dag-processor has parsed every one of ``dag_ids`` (and raise on import errors)."""
        wanted = set(dag_ids)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.check_processes()
            known = {dag["dag_id"] for dag in self.get("/dags", params={"limit": 100})["dags"]}
            if wanted <= known:
                return
            errors = self.get("/importErrors")["import_errors"]
            if errors:
                raise AssertionError(f"import errors: {errors}")
            time.sleep(1.0)
        raise DeploymentError(f"DAGs not parsed in {timeout:.0f} s: {sorted(wanted - known)}")

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a run as the UI's Trigger button does (no logical date); return its run id."""
        body = {"logical_date": None, "conf": dict(conf or {})}
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body).json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """Each task's state; a mapped task's copies are folded into one (any failure wins)."""
        states: dict[str, str] = {}
        for ti in self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 200})["task_instances"]:
            previous = states.get(ti["task_id"])
            if previous is None or ti["state"] != "success":
                states[ti["task_id"]] = ti["state"] if previous in (None, "success") else previous
        return states

    def wait_for_runs(self, runs: Iterable[tuple[str, str]], timeout: float) -> dict[tuple[str, str], RunResult]:
        """Wait until every ``(dag_id, run_id)`` is finished; their results."""
        pending = set(runs)
        results: dict[tuple[str, str], RunResult] = {}
        started = time.monotonic()
        while pending and time.monotonic() - started < timeout:
            self.check_processes()
            for dag_id, run_id in sorted(pending):
                run = self.run_state(dag_id, run_id)
                if run["state"] in TERMINAL_RUN_STATES:
                    results[(dag_id, run_id)] = RunResult(dag_id, run_id, run["state"], time.monotonic() - started,
                                                          self.task_states(dag_id, run_id))
                    pending.discard((dag_id, run_id))
            if pending:
                time.sleep(1.0)
        if pending:
            states = {key: (self.run_state(*key)["state"], self.task_states(*key)) for key in pending}
            raise AssertionError(f"runs not finished in {timeout:.0f} s: {states}\n{self.log_tails()}")
        return results

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task's log through the REST API (worker and triggerer parts), one event per line."""
        answer = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                          params={"full_content": "true"}, headers={"Accept": "application/json"})
        content = answer.get("content")
        if isinstance(content, list):
            return "\n".join(item.get("event", "") if isinstance(item, dict) else str(item) for item in content)
        return str(content)

    def test_connection(self, body: Mapping[str, Any], expect: Iterable[int] = (200,)) -> requests.Response:
        """``POST /api/v2/connections/test``, the call behind the UI's Test button."""
        return self.request("POST", "/connections/test", json=dict(body), expect=expect)

    # ------------------------------------------------------------------ metadata DB (read only)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """A read-only query on the metadata DB (what the REST API does not show, e.g. callbacks); ``?`` marks."""
        if self.executor == "celery":
            import psycopg2

            with contextlib.closing(psycopg2.connect(self.metadata_dsn)) as db, db.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                return cur.fetchall()
        with sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def deadline_callbacks(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The Deadline Alert callbacks of one run: state and output."""
        rows = self.query(
            "SELECT c.state, c.output, d.missed FROM deadline d JOIN dag_run r ON r.id = d.dagrun_id "
            "LEFT JOIN callback c ON c.id = d.callback_id WHERE r.dag_id = ? AND r.run_id = ?", dag_id, run_id)
        return [{"state": state, "output": output, "missed": bool(missed)} for state, output, missed in rows]


@contextlib.contextmanager
def deployed(deployment: AirflowDeployment) -> Iterator[AirflowDeployment]:
    """
    ``deployment`` started for the block (a start failure fails the test, without a traceback) and
    stopped afterwards, however the block ends: the body of the e2e session fixtures.

    :param deployment: an ``AirflowDeployment`` (or subclass) not started yet.
    """
    import pytest

    try:
        try:
            deployment.start()
        except DeploymentError as err:
            pytest.fail(str(err), pytrace=False)
        yield deployment
    finally:
        deployment.stop()
