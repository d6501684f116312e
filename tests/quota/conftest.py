"""Fixtures of the quota tests: a throw-away ``redis-server``, and one store of each kind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.connections import set_connection
from quota_support import LocalRedis

REDIS_CONN_ID = "parcels_test_redis"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """A ``redis-server`` for the session. Without one the tests fail, unless ``PARCELS_SKIP_REDIS=1``."""
    server = LocalRedis()
    try:
        server.start()
    except RuntimeError as exc:
        server.close()
        if os.environ.get("PARCELS_SKIP_REDIS") == "1":
            pytest.skip(str(exc))
        pytest.fail(f"{exc}; or set PARCELS_SKIP_REDIS=1 to skip the Redis tests", pytrace=False)
    yield server
    server.close()


@pytest.fixture
def redis_conn_id(redis_server: LocalRedis, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow connection (type ``redis``) to an emptied database of the session's server."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    client.flushall()
    client.close()
    return set_connection(monkeypatch, REDIS_CONN_ID, "redis", host="127.0.0.1", port=redis_server.port,
                          extra={"db": 0})


@pytest.fixture
def sqlite_quota_conn_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow connection (type ``sqlite``) naming a fresh quota file."""
    return set_connection(monkeypatch, "parcels_test_quota_sqlite", "sqlite", host=str(tmp_path / "quota.db"))


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def store(request: pytest.FixtureRequest):
    """A fresh store of each kind."""
    from airflow_provider_parcels.quota.stores import MemoryStore, store_from_connection

    if request.param == "memory":
        yield MemoryStore()
        return
    fixture = {"sqlite": "sqlite_quota_conn_id", "postgres": "postgres_conn_id", "redis": "redis_conn_id"}
    made = store_from_connection(request.getfixturevalue(fixture[request.param]))
    yield made
    made.close()
