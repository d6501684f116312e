"""
The environment of an isolated Airflow for ``dag.test()`` runs: the demo, our tests and users'
own DAG tests point Airflow at a throw-away home, a SQLite metadata DB and their DAGs folder.

It imports nothing from Airflow: set the variables before Airflow is first imported.
"""

from __future__ import annotations

import secrets
from pathlib import Path


def isolated_airflow_env(home: Path, dags_folder: Path, log_level: str = "WARNING") -> dict[str, str]:
    """
    Environment variables for an Airflow living entirely in ``home``.

    :param home: the ``AIRFLOW_HOME`` (metadata DB ``airflow.db``, logs and plugins inside).
    :param dags_folder: the folder whose DAG files ``dag.test()`` may run (Airflow 3.3 runs only
        DAGs its dag bundle holds).
    :param log_level: Airflow's logging level.
    """
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": log_level,
        "AIRFLOW__SECRETS__BACKEND": "",
        # Airflow 3.2's in-process execution API (dag.test) refuses to start without one.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
    }
