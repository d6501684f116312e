"""Helpers of the webhook tests: the receiver served over loopback by uvicorn, signed TrackFlow
bodies, warehouse reads (imported by ``conftest.py`` and the test modules)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any

import requests
import uvicorn

from airflow_provider_parcels.sandbox.push import DEFAULT_WEBHOOK_SECRET
from airflow_provider_parcels.warehouse import ParcelWarehouse
from airflow_provider_parcels.webhooks.app import URL_PREFIX, create_standalone_app
from airflow_provider_parcels.webhooks.receiver import WebhookReceiver

TF_CONN = "tf_push"
WP_CONN = "wp_push"
WP_TOKEN = "wp-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ReceiverServer:
    """The standalone receiver app under uvicorn in a thread, on a free loopback port.

    :param receiver: the receiver to serve.
    """

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.port = free_port()
        config = uvicorn.Config(create_standalone_app(receiver=receiver), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ReceiverServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("receiver did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def url(self, conn_id: str) -> str:
        return f"http://127.0.0.1:{self.port}{URL_PREFIX}/{conn_id}"


def shipment(number: str = "EXC0001", status: str = "exception", updated: datetime | None = None,
             events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A TrackFlow shipment as the tracking answer (and the webhook) has it."""
    updated = updated or datetime.now(timezone.utc)
    if events is None:
        events = [{"status": "Picked up", "location": "Berlin", "timestamp": "2026-06-14T08:00:00Z", "type": "transit"}]
        if status != "in_transit":
            events.insert(0, {"status": status.title(), "location": "Hamburg", "timestamp": "2026-06-15T09:00:00Z",
                              "type": status})
    return {"tracking_number": number, "carrier": {"code": "dhl", "name": "DHL Express"}, "status": status,
            "status_description": status, "events": events,
            "last_updated": updated.isoformat().replace("+00:00", "Z")}


def signed(payload: dict[str, Any] | bytes, secret: str = DEFAULT_WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    """The raw body and its ``X-TrackFlow-Signature`` header."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return body, {"X-TrackFlow-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
                  "Content-Type": "application/json"}


def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(url, data=body, headers=headers, timeout=10)


def rows(warehouse: ParcelWarehouse, table: str) -> list[tuple]:
    """All rows of a warehouse table ([] when it does not exist yet)."""
    try:
        return warehouse.dump(table)
    except Exception:
        return []
