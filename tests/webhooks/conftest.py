"""Fixtures of the webhook tests: the receiver served over loopback by uvicorn, connections whose
extras name a real warehouse, and the sandbox that pushes signed deliveries to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from webhook_support import TF_CONN, WP_CONN, WP_TOKEN, ReceiverServer

from airflow_provider_parcels.sandbox.push import DEFAULT_WEBHOOK_SECRET
from airflow_provider_parcels.warehouse import ParcelWarehouse
from airflow_provider_parcels.webhooks.receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    """A receiver that reads connections on every delivery (no cache), served over loopback."""
    server = ReceiverServer(WebhookReceiver(connection_ttl=0)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_conn_id(request: pytest.FixtureRequest) -> str:
    """The warehouse: SQLite, then PostgreSQL."""
    return request.getfixturevalue("sqlite_conn_id" if request.param == "sqlite" else "postgres_conn_id")


@pytest.fixture
def push_conns(parcels_sandbox_clean, sqlite_conn_id: str, monkeypatch: pytest.MonkeyPatch
               ) -> Callable[..., ParcelWarehouse]:
    """``push_conns(warehouse_conn_id=sqlite)``: TrackFlow and WhereParcel connections to the sandbox whose
    extras name that warehouse; returns the warehouse."""

    def make(warehouse_conn_id: str = sqlite_conn_id, table_prefix: str = "") -> ParcelWarehouse:
        extra = {"warehouse_conn_id": warehouse_conn_id, "table_prefix": table_prefix}
        monkeypatch.setenv(*parcels_sandbox_clean.conn_env("trackflow", conn_id=TF_CONN,
                                                          webhook_secret=DEFAULT_WEBHOOK_SECRET, **extra))
        monkeypatch.setenv(*parcels_sandbox_clean.conn_env("whereparcel", conn_id=WP_CONN, webhook_token=WP_TOKEN,
                                                          **extra))
        return ParcelWarehouse(warehouse_conn_id, table_prefix=table_prefix)

    return make
