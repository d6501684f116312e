"""Run the DAG files of ``tests/dags`` with ``dag.test()`` against the session's metadata DB.

Airflow 3.3 runs ``dag.test()`` only for a DAG that its dag bundle holds: the DAG must be a
file in the folder that ``AIRFLOW__CORE__DAGS_FOLDER`` names (``tests/dags``, set by the root
conftest). ``dag.test()`` then syncs that bundle into the metadata DB itself (it re-parses the
whole folder on every call), runs every task in this process, runs deferred triggers inline and
returns the ``DagRun``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from helpers import airflow_env

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG

_dagbag = None


def _parse_dags_folder(refresh: bool = False):
    global _dagbag
    if _dagbag is None or refresh:
        from airflow.dag_processing.dagbag import DagBag

        _dagbag = DagBag(dag_folder=airflow_env.DAGS_FOLDER, bundle_path=airflow_env.DAGS_FOLDER)
    return _dagbag


def get_dag(dag_id: str) -> DAG:
    """The DAG ``dag_id`` parsed from a file in ``tests/dags`` (parsed once per session)."""
    dagbag = _parse_dags_folder()
    if dag_id not in dagbag.dags:
        dagbag = _parse_dags_folder(refresh=True)
    if dag_id not in dagbag.dags:
        errors = "".join(f"\n--- {path}\n{err}" for path, err in dagbag.import_errors.items())
        raise LookupError(
            f"DAG {dag_id!r} is not defined by any file in {airflow_env.DAGS_FOLDER} "
            f"(found: {sorted(dagbag.dags)}).{' Import errors:' + errors if errors else ''}"
        )
    return dagbag.dags[dag_id]


def run_dag(
    dag_id: str,
    conf: dict[str, Any] | None = None,
    logical_date: dt.datetime | None = None,
    **test_kwargs: Any,
) -> DagRun:
    """Run DAG ``dag_id`` from ``tests/dags`` once with ``dag.test()`` and return its ``DagRun``.

    ``conf`` becomes ``dag_run.conf``; ``logical_date`` defaults to now (UTC). Extra keyword
    arguments go to ``dag.test()`` (e.g. ``mark_success_pattern``). A failing task does not raise:
    check ``dag_run.state`` and :func:`task_states`.
    """
    airflow_env.ensure_metadata_db()
    dag = get_dag(dag_id)
    if logical_date is None:
        logical_date = dt.datetime.now(dt.timezone.utc)
    return dag.test(run_conf=conf, logical_date=logical_date, **test_kwargs)


def task_states(dag_run: DagRun) -> dict[str, str | None]:
    """``{task_id: state}`` of a run's task instances (mapped ones as ``task_id[map_index]``)."""
    states: dict[str, str | None] = {}
    for ti in dag_run.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        states[key] = None if ti.state is None else str(getattr(ti.state, "value", ti.state))
    return states


def xcom_pull(dag_run: DagRun, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """The XCom value a task of ``dag_run`` pushed (``None`` when it pushed none)."""
    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=dag_run.run_id,
                dag_ids=dag_run.dag_id,
                task_ids=task_id,
                key=key,
                map_indexes=map_index,
                limit=1,
            )
        ).first()
        return None if row is None else deserialize(XComModel.deserialize_value(row))
