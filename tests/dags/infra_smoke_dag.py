"""DAGs that prove the test infrastructure (tests/test_infra.py): XCom, connections,
failure callbacks and a deferrable operator under ``dag.test()``."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import DAG, BaseHook, BaseOperator, task

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _record(context, what: str) -> None:
    """Append a line to the file named by ``dag_run.conf['callback_file']``."""
    path = context["dag_run"].conf.get("callback_file")
    if path:
        ti = context.get("ti") or context.get("task_instance")
        entry = {"what": what, "task_id": getattr(ti, "task_id", None), "error": repr(context.get("exception"))}
        with Path(path).open("a") as fh:
            fh.write(json.dumps(entry) + "\n")


with DAG("infra_smoke", schedule=None, start_date=START, catchup=False, tags=["infra"]):

    @task
    def produce() -> dict:
        return {"n": 21}

    @task
    def consume(value: dict) -> int:
        return value["n"] * 2

    @task
    def read_connection() -> dict:
        conn = BaseHook.get_connection("parcels_infra_smoke")
        return {"conn_type": conn.conn_type, "host": conn.host, "port": conn.port, "login": conn.login}

    consume(produce())
    read_connection()


with DAG(
    "infra_failure",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args={"retries": 0},
    on_failure_callback=lambda context: _record(context, "dag_failed"),
    tags=["infra"],
):

    @task(on_failure_callback=lambda context: _record(context, "task_failed"))
    def boom() -> None:
        raise ValueError("boom on purpose")

    @task
    def never_runs() -> None:
        pass

    boom() >> never_runs()


class WaitOneSecondOperator(BaseOperator):
    """Defers to the standard provider's TimeDeltaTrigger, then finishes in ``execute_complete``.

    Under ``dag.test()`` (Airflow 3.3) the trigger runs inline and the task resumes with only
    ``event=<payload>``: the ``kwargs`` given to ``defer()`` are dropped (a real triggerer merges
    them), so the result records which keyword arguments arrived.
    """

    def __init__(self, *, seconds: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def execute(self, context):
        self.defer(
            trigger=TimeDeltaTrigger(dt.timedelta(seconds=self.seconds)),
            method_name="execute_complete",
            kwargs={"deferred_at": time.time()},
        )

    def execute_complete(self, context, event=None, **kwargs):
        return {"event": event.isoformat() if event else None, "kwargs": sorted(kwargs)}


with DAG("infra_deferrable", schedule=None, start_date=START, catchup=False, tags=["infra"]):
    WaitOneSecondOperator(task_id="wait")
