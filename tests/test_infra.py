"""The test infrastructure itself: isolated Airflow, dag.test() runs, connections, PostgreSQL."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from helpers import airflow_env
from helpers.connections import set_connection
from helpers.dags import run_dag, task_states, xcom_pull


@pytest.mark.smoke
def test_airflow_is_isolated_in_a_temporary_home():
    from airflow.configuration import conf

    home = airflow_env.home()
    assert os.environ["AIRFLOW_HOME"] == str(home)
    assert conf.get("core", "dags_folder") == str(airflow_env.DAGS_FOLDER)
    assert conf.get("database", "sql_alchemy_conn") == f"sqlite:///{home}/airflow.db"
    assert not conf.getboolean("core", "load_examples")


@pytest.mark.smoke
def test_smoke_dag_passes_xcom_and_reads_env_connection(monkeypatch):
    set_connection(
        monkeypatch, "parcels_infra_smoke", "http", host="sandbox.local", port=8080, login="me", password="pw"
    )
    dag_run = run_dag("infra_smoke")

    assert dag_run.state == "success"
    assert task_states(dag_run) == {"produce": "success", "consume": "success", "read_connection": "success"}
    assert xcom_pull(dag_run, "produce") == {"n": 21}
    assert xcom_pull(dag_run, "consume") == 42
    assert xcom_pull(dag_run, "read_connection") == {
        "conn_type": "http",
        "host": "sandbox.local",
        "port": 8080,
        "login": "me",
    }


def test_failing_task_fails_the_run_and_runs_failure_callbacks(tmp_path: Path):
    callback_file = tmp_path / "callbacks.jsonl"
    dag_run = run_dag("infra_failure", conf={"callback_file": str(callback_file)})

    assert dag_run.state == "failed"
    assert task_states(dag_run) == {"boom": "failed", "never_runs": "upstream_failed"}
    calls = [json.loads(line) for line in callback_file.read_text().splitlines()]
    assert [c["what"] for c in calls] == ["task_failed", "dag_failed"]
    assert calls[0]["task_id"] == "boom"
    assert "boom on purpose" in calls[0]["error"]


@pytest.mark.smoke
def test_deferrable_operator_runs_its_trigger_inline():
    started = time.monotonic()
    dag_run = run_dag("infra_deferrable")
    elapsed = time.monotonic() - started

    assert dag_run.state == "success"
    assert task_states(dag_run) == {"wait": "success"}
    assert elapsed >= 1.0  # the 1 s TimeDeltaTrigger really ran, in this process
    result = xcom_pull(dag_run, "wait")
    assert result["event"] is not None  # resumed with the trigger's event payload (its moment)


@pytest.mark.smoke
def test_sqlite_connection_opens_through_dbapi_hook(sqlite_conn_id, tmp_path: Path):
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(sqlite_conn_id).get_hook()
    assert isinstance(hook, DbApiHook)
    hook.run("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    hook.insert_rows("t", [(1, "a"), (2, "b")], target_fields=["id", "name"])
    assert hook.get_records("SELECT id, name FROM t ORDER BY id") == [(1, "a"), (2, "b")]
    assert (tmp_path / "warehouse.db").exists()


def test_postgres_dsn_answers(postgres_dsn):
    import psycopg2

    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database(), version()")
        dbname, version = cur.fetchone()
    conn.close()
    assert version.startswith("PostgreSQL")
    assert dbname


@pytest.mark.parametrize("attempt", [1, 2])
def test_postgres_connection_opens_through_dbapi_hook_in_its_own_database(postgres_conn_id, attempt, request):
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk import BaseHook

    assert request.node.get_closest_marker("postgres") is not None  # added by conftest
    hook = BaseHook.get_connection(postgres_conn_id).get_hook()
    assert isinstance(hook, DbApiHook) and isinstance(hook, PostgresHook)
    # The same table in both runs: each test gets a fresh database, dropped afterwards.
    hook.run("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    hook.insert_rows("t", [(1, "a"), (2, "b")], target_fields=["id", "name"])
    assert hook.get_records("SELECT id, name FROM t ORDER BY id") == [(1, "a"), (2, "b")]
    assert hook.get_first("SELECT current_database()")[0].startswith("t_")
