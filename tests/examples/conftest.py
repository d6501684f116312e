"""Fixtures for the example DAG tests: a DAG runner process whose DAGs folder is ``example_dags/``.

The session's own Airflow (root conftest) reads DAGs from ``tests/dags``, and Airflow 3.3 runs
``dag.test()`` only for DAGs of the configured DAGs folder, a setting read once per process. So
the example DAGs run in one subprocess per session (``dag_runner.py``) with its own
``AIRFLOW_HOME``, metadata DB and ``AIRFLOW__CORE__DAGS_FOLDER=example_dags``: nothing is copied
or linked into ``tests/dags``, other tests never see these DAGs, and the runner pays Airflow's
import and the DB creation once. The sandbox and the SQLite warehouse live in this process;
the runner reaches them through ``AIRFLOW_CONN_*`` variables sent with each run.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from example_expectations import EXAMPLE_DAGS, REPO

from airflow_provider_parcels.sandbox.airflow_home import isolated_airflow_env
from airflow_provider_parcels.sandbox.alert_sink import AlertSink

RUNNER = Path(__file__).resolve().parent / "dag_runner.py"
APIS = ("whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine")
RUN_TIMEOUT = 180.0


class DagRunner:
    """Client of ``dag_runner.py``: one subprocess, one request at a time."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.log_path = home / "runner.log"
        log_level = os.environ.get("PARCELS_TEST_AIRFLOW_LOG_LEVEL", "WARNING")
        env = {**os.environ, **isolated_airflow_env(home, EXAMPLE_DAGS, log_level), "PYTHONUNBUFFERED": "1"}
        env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW_CONN_")}
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(RUNNER)], cwd=str(REPO), env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="example-dag-runner").start()
        ready = self._answer(RUN_TIMEOUT)
        if not ready.get("ready"):
            raise RuntimeError(f"the example DAG runner did not start: {ready}\n{self.log_tail()}")
        self.migration_seconds = ready.get("migration_seconds")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def _answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the example DAG runner gave no answer in {timeout:.0f} s\n{self.log_tail()}") from None
        if line is None:
            raise RuntimeError(f"the example DAG runner exited ({self.process.poll()})\n{self.log_tail()}")
        return json.loads(line)

    def log_tail(self, lines: int = 60) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "--- runner log (tail) ---\n" + "\n".join(text[-lines:])

    def run(self, dag_id: str, env: dict[str, str], conf: dict | None = None,
            logical_date: str | None = None) -> dict[str, Any]:
        """Run ``dag_id`` once with ``dag.test()``; returns state, task states and XComs."""
        assert self.process.stdin is not None
        request = {"op": "run", "dag_id": dag_id, "conf": conf, "logical_date": logical_date, "env": env}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self._answer(RUN_TIMEOUT)
        if not answer.get("ok"):
            raise RuntimeError(f"running {dag_id} failed in the runner:\n{answer.get('error')}\n{self.log_tail()}")
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def dag_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagRunner]:
    """The example DAG runner process (started once per session)."""
    runner = DagRunner(tmp_path_factory.mktemp("examples-airflow-home"))
    try:
        yield runner
    finally:
        runner.close()


@dataclass
class ExampleEnv:
    """What one example run sees: the sandbox, a fresh warehouse file and an alert webhook."""

    sandbox: Any
    warehouse: Path
    sink: AlertSink
    env: dict[str, str] = field(default_factory=dict)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """What the alert webhook received so far."""
        return self.sink.received


@pytest.fixture
def example_env(parcels_sandbox_clean: Any, tmp_path: Path) -> Iterator[ExampleEnv]:
    """Connections ``parcels_demo_<api>`` (the sandbox), ``parcels_demo_warehouse`` (a new SQLite
    file) and ``parcels_demo_alerts`` (a loopback webhook that records what it receives)."""
    sink = AlertSink()
    warehouse = tmp_path / "warehouse.db"
    env = dict(parcels_sandbox_clean.conn_env(api, conn_id=f"parcels_demo_{api}", requests_per_minute=6000)
               for api in APIS)
    env["AIRFLOW_CONN_PARCELS_DEMO_WAREHOUSE"] = json.dumps({"conn_type": "sqlite", "host": str(warehouse)})
    env["AIRFLOW_CONN_PARCELS_DEMO_ALERTS"] = json.dumps({"conn_type": "http", "host": sink.url})
    try:
        yield ExampleEnv(parcels_sandbox_clean, warehouse, sink, env)
    finally:
        sink.stop()
