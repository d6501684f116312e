"""Airflow connections for tests, as ``AIRFLOW_CONN_<ID>`` environment variables (JSON form).

Env-var connections need no metadata database and are seen everywhere in the test process:
hooks called directly, tasks run by ``dag.test()`` and triggers run inline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SQLITE_CONN_ID = "parcels_test_sqlite"


def conn_env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn_type: str, **fields: Any) -> str:
    """Define connection ``conn_id`` for this test (host, port, login, password, schema, extra...).

    ``extra`` may be a dict. Returns ``conn_id``. Undone by monkeypatch at the end of the test.
    """
    conn = {"conn_type": conn_type, **{k: v for k, v in fields.items() if v is not None}}
    monkeypatch.setenv(conn_env_var(conn_id), json.dumps(conn))
    return conn_id


@pytest.fixture
def sqlite_conn_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Id of a SQLite connection to ``<tmp_path>/warehouse.db`` (a new file for each test)."""
    return set_connection(monkeypatch, SQLITE_CONN_ID, "sqlite", host=str(tmp_path / "warehouse.db"))
