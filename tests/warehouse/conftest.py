"""The warehouse under test, once per database: a SQLite file and a PostgreSQL database.

``sqlite_conn_id``, ``postgres_conn_id`` come from the root conftest (``tests/helpers``).
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_conn_id(request: pytest.FixtureRequest) -> str:
    """The id of an empty warehouse connection, one test per dialect (``-m "not postgres"`` skips the latter)."""
    return request.getfixturevalue(f"{request.param}_conn_id")


@pytest.fixture
def make_warehouse(warehouse_conn_id: str):
    """``make_warehouse(**kwargs)`` -> a ``ParcelWarehouse`` on this test's database."""
    from airflow_provider_parcels.warehouse import ParcelWarehouse

    def make(**kwargs) -> ParcelWarehouse:
        return ParcelWarehouse(warehouse_conn_id, **kwargs)

    return make


@pytest.fixture
def wh(make_warehouse):
    return make_warehouse()
