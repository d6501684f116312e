"""The warehouse under test, once per database and write path.

``sqlite`` (a file), ``postgres`` (``COPY`` + ``INSERT ... ON CONFLICT``), ``duckdb`` (a file; a
pandas frame + ``INSERT ... ON CONFLICT``), and the generic ``MERGE`` path (``dialect="merge"``) on
PostgreSQL 15 and on DuckDB. ``sqlite_conn_id`` and
``postgres_conn_id`` come from the root conftest (``tests/helpers``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DUCKDB_CONN_ID = "warehouse_duckdb"


@pytest.fixture
def duckdb_conn_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Id of a DuckDB connection (``apache-airflow-providers-duckdb``) to a new file for this test."""
    pytest.importorskip("airflow.providers.duckdb", reason="extra duckdb not installed")
    conn = {"conn_type": "duckdb", "host": str(tmp_path / "warehouse.duckdb")}
    monkeypatch.setenv(f"AIRFLOW_CONN_{DUCKDB_CONN_ID.upper()}", json.dumps(conn))
    return DUCKDB_CONN_ID


WAREHOUSES = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    "duckdb",
    pytest.param("merge_postgres", marks=pytest.mark.postgres),
    "merge_duckdb",
]


@pytest.fixture(params=WAREHOUSES)
def warehouse_case(request: pytest.FixtureRequest) -> str:
    """``sqlite``, ``postgres``, ``duckdb``, ``merge_postgres`` or ``merge_duckdb``."""
    return request.param


@pytest.fixture
def warehouse_conn_id(request: pytest.FixtureRequest, warehouse_case: str) -> str:
    """The id of an empty warehouse connection, one test per database and write path.

    ``-m "not postgres"`` skips the PostgreSQL ones.
    """
    return request.getfixturevalue(f"{warehouse_case.removeprefix('merge_')}_conn_id")


@pytest.fixture
def make_warehouse(warehouse_conn_id: str, warehouse_case: str):
    """``make_warehouse(**kwargs)`` -> a ``ParcelWarehouse`` on this test's database and write path."""
    from airflow_provider_parcels.warehouse import ParcelWarehouse

    def make(**kwargs) -> ParcelWarehouse:
        if warehouse_case.startswith("merge_"):
            kwargs.setdefault("dialect", "merge")
        return ParcelWarehouse(warehouse_conn_id, **kwargs)

    return make


@pytest.fixture
def wh(make_warehouse):
    return make_warehouse()
