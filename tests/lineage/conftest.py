"""Fixtures of the issue-19 tests: the sandbox as ``track_api``, the warehouse behind ``lineage_wh``, and the
OpenLineage provider's own file transport."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.connections import set_connection

from airflow_provider_parcels.hooks.ratelimit import RateLimiter

WAREHOUSE = "lineage_wh"


@pytest.fixture
def track_api(parcels_sandbox_clean: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Point connection ``track_api`` at one of the sandbox's APIs: ``track_api("shipengine")``."""

    def use(api: str, **extra: Any) -> Any:
        name, value = parcels_sandbox_clean.conn_env(api, conn_id="track_api", **extra)
        monkeypatch.setenv(name, value)
        RateLimiter._registry.clear()
        return parcels_sandbox_clean

    return use


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "duckdb"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Connection ``lineage_wh``: an empty SQLite file, PostgreSQL database or DuckDB file; its fields as a dict."""
    if request.param == "sqlite":
        fields = {"conn_type": "sqlite", "host": str(tmp_path / "warehouse.db")}
    elif request.param == "duckdb":
        pytest.importorskip("airflow.providers.duckdb", reason="extra duckdb not installed")
        fields = {"conn_type": "duckdb", "host": str(tmp_path / "warehouse.duckdb")}
    else:
        conn_id = request.getfixturevalue("postgres_conn_id")
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        fields = {"conn_type": "postgres", "host": conn.host, "port": conn.port, "login": conn.login,
                  "password": conn.password, "schema": conn.schema}
    set_connection(monkeypatch, WAREHOUSE, **fields)
    return fields


def _clear_openlineage_caches() -> None:
    from airflow.providers.openlineage import conf
    from airflow.providers.openlineage.plugins import listener

    # the provider caches its configuration and its adapter (so its client and transport) per process
    for module in (conf, listener):
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


@pytest.fixture
def openlineage_file(tmp_path: Path) -> Iterator[Callable[[], list[dict]]]:
    """
    The OpenLineage provider set up as a deployment would (``[openlineage] transport`` = the client's own file
    transport), its listener registered with the task SDK's listener manager the way its plugin does, for this test
    only. Yields a reader of the events written so far.
    """
    path = tmp_path / "openlineage.jsonl"
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _openlineage_to(path, monkeypatch)


def _openlineage_to(path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[dict]]]:
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT",
                       json.dumps({"type": "file", "log_file_path": str(path), "append": True}))
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "parcels_tests")
    # dag.test() runs tasks in this process: emit in a thread rather than forking pytest
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD", "True")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__DISABLED", "False")
    _clear_openlineage_caches()
    from airflow.providers.openlineage.plugins.listener import get_openlineage_listener
    from airflow.sdk.listener import get_listener_manager

    manager = get_listener_manager()
    listener = get_openlineage_listener()
    manager.add_listener(listener)

    def read() -> list[dict]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    try:
        yield read
    finally:
        manager.pm.unregister(listener)
        monkeypatch.undo()
        _clear_openlineage_caches()
