"""Fixtures of the hook tests: a clean sandbox and connections pointing at it."""

from __future__ import annotations

import pytest

from airflow_provider_parcels.hooks import hook_class


@pytest.fixture
def sandbox(parcels_sandbox_clean):
    return parcels_sandbox_clean


@pytest.fixture
def connect(sandbox, monkeypatch):
    """``connect(api, key=..., conn_id=..., **extra)`` -> a hook on a sandbox connection."""

    def make(api: str, key: str = "sandbox-key", conn_id: str | None = None, hook_kwargs=None, **extra):
        conn_id = conn_id or f"test_{api}"
        name, value = sandbox.conn_env(api, key=key, conn_id=conn_id, **extra)
        monkeypatch.setenv(name, value)
        return hook_class(api)(conn_id, **(hook_kwargs or {}))

    return make
