"""Runs the example DAGs with ``dag.test()`` in a process of its own, for ``tests/examples``.

Why a separate process: Airflow 3.3 runs ``dag.test()`` only for a DAG its dag bundle holds,
i.e. a file in the folder ``AIRFLOW__CORE__DAGS_FOLDER`` names, and Airflow reads that setting
once per process. The main test session points it at ``tests/dags``; this process points it at
``example_dags/`` (the parent sets the environment: its own ``AIRFLOW_HOME``, SQLite metadata DB,
DAGs folder). It starts once per session (one Airflow import, one metadata DB) and then serves
requests, one JSON object per line on stdin, one answer per line on the original stdout::

    {"op": "run", "dag_id": "...", "conf": {...}, "logical_date": "ISO" | null, "env": {"NAME": "value"}}
    -> {"ok": true, "state": "success", "tasks": {"track[0]": "success", ...},
        "xcom": {"track[0]": {...}, ...}, "failed_parcels": {...}, "seconds": 1.2}

``env`` is applied for that run only (connections as ``AIRFLOW_CONN_*`` variables). Anything
Airflow prints goes to stderr, which the parent sends to a log file.

Each run gets freshly parsed DAG objects, with two changes that only concern ``dag.test()``:

* task retries are off, so a failing task fails the run at once instead of after its retry delay;
* the DAG-run Deadline Alert is taken off: Airflow 3.3.2's ``dag.test()`` crashes at the end of
  a *successful* run of a DAG that has one (it looks the alerts up by the serialized dicts
  instead of their ids: ``'dict' object has no attribute 'hex'``); scheduled runs are unaffected.

Fresh objects, because ``dag.test(run_conf=...)`` run in-process leaves the conf in the DAG's
task params: a second run of the same object without that key would still see the old value.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import traceback
from typing import Any

_FAILED_PARCELS_KEY = "failed_parcels"


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class Runner:
    """Parses ``example_dags/`` once and runs its DAGs on request."""

    def __init__(self) -> None:
        from airflow.utils import db

        started = time.perf_counter()
        db.initdb()
        self.migration_seconds = time.perf_counter() - started
        self.folder = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]

    def fresh_dag(self, dag_id: str) -> Any:
        """``dag_id`` parsed anew from the DAGs folder, ready for ``dag.test()`` (see the module doc)."""
        from airflow.dag_processing.dagbag import DagBag

        dagbag = DagBag(dag_folder=self.folder, bundle_path=self.folder)
        if dag_id not in dagbag.dags:
            raise LookupError(f"{dag_id} not in {sorted(dagbag.dags)}; import errors: {dagbag.import_errors}")
        dag = dagbag.dags[dag_id]
        for task in dag.tasks:
            task.retries = 0
        dag.deadline = None
        return dag

    def run(self, dag_id: str, conf: dict | None, logical_date: str | None, env: dict[str, str | None]) -> dict:
        saved = {name: os.environ.get(name) for name in env}
        _apply(env)
        try:
            return self._run(dag_id, conf, logical_date)
        finally:
            _apply(saved)

    def _run(self, dag_id: str, conf: dict | None, logical_date: str | None) -> dict:
        dag = self.fresh_dag(dag_id)
        when = dt.datetime.fromisoformat(logical_date) if logical_date else dt.datetime.now(dt.timezone.utc)
        started = time.perf_counter()
        dag_run = dag.test(run_conf=conf, logical_date=when)
        seconds = time.perf_counter() - started
        tasks: dict[str, str | None] = {}
        xcom: dict[str, Any] = {}
        failed: dict[str, Any] = {}
        for ti in dag_run.get_task_instances():
            key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            tasks[key] = None if ti.state is None else str(getattr(ti.state, "value", ti.state))
            value = _xcom(dag_run, ti.task_id, "return_value", ti.map_index)
            if value is not None:
                xcom[key] = value
            value = _xcom(dag_run, ti.task_id, _FAILED_PARCELS_KEY, ti.map_index)
            if value is not None:
                failed[key] = value
        state = str(getattr(dag_run.state, "value", dag_run.state))
        return {"ok": True, "state": state, "run_id": dag_run.run_id, "tasks": tasks, "xcom": _json_safe(xcom),
                "failed_parcels": _json_safe(failed), "seconds": round(seconds, 2),
                "data_interval": [str(dag_run.data_interval_start), str(dag_run.data_interval_end)]}


def _apply(env: dict[str, str | None]) -> None:
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _xcom(dag_run: Any, task_id: str, key: str, map_index: int) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key,
                               map_indexes=map_index, limit=1)
        ).first()
        return None if row is None else deserialize(XComModel.deserialize_value(row))


def main() -> int:
    # Keep the original stdout for answers; everything else printed goes to stderr.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def answer(payload: dict) -> None:
        answers.write(json.dumps(payload, default=str) + "\n")
        answers.flush()

    try:
        runner = Runner()
    except Exception:
        answer({"ok": False, "error": traceback.format_exc()})
        return 1
    answer({"ok": True, "ready": True, "migration_seconds": round(runner.migration_seconds, 2)})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if request.get("op") != "run":
                raise ValueError(f"unknown op {request.get('op')!r}")
            answer(runner.run(request["dag_id"], request.get("conf"), request.get("logical_date"),
                              request.get("env") or {}))
        except Exception:
            answer({"ok": False, "error": traceback.format_exc()})
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip Airflow's exit hooks (closing its in-process API waits up to 5 s)
