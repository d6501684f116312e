"""Fixtures of the hostile-server tests: hooks whose connection points at ``hostile_server``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.hostile_server import HostileServer

from airflow_provider_parcels.hooks import hook_class
from airflow_provider_parcels.hooks.base import ParcelTrackingHook
from airflow_provider_parcels.hooks.ratelimit import RateLimiter

HOSTILE_CONN_ID = "parcels_hostile"


@pytest.fixture
def hostile(hostile_server: HostileServer, parcels_sandbox_clean: Any) -> HostileServer:
    """The hostile server in front of a clean sandbox."""
    return hostile_server


@pytest.fixture
def hostile_conn(hostile: HostileServer, parcels_sandbox_clean: Any,
                 monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``hostile_conn(api, https=False, **extra)``: define a connection of ``api`` whose host is the hostile server."""

    def define(api: str, conn_id: str = HOSTILE_CONN_ID, https: bool = False, **extra: Any) -> str:
        conn = parcels_sandbox_clean.connection(api, **extra)
        conn["host"] = hostile.base_url(parcels_sandbox_clean, api)
        if https:
            conn["host"] = "https" + conn["host"][len("http"):]
        if not conn["extra"]:
            del conn["extra"]
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        RateLimiter._registry.clear()  # no pause or pace learned by an earlier test
        return conn_id

    return define


@pytest.fixture
def hostile_hook(hostile_conn: Callable[..., str]) -> Iterator[Callable[..., ParcelTrackingHook]]:
    """``hostile_hook(api, hook_kwargs=None, **extra)``: a hook of ``api`` talking to the hostile server."""
    hooks: list[ParcelTrackingHook] = []

    def make(api: str, hook_kwargs: dict[str, Any] | None = None, **extra: Any) -> ParcelTrackingHook:
        hooks.append(hook_class(api)(hostile_conn(api, **extra), **(hook_kwargs or {})))
        return hooks[-1]

    yield make
    for hook in hooks:
        hook.close()

