"""Fixtures for the sensor, trigger and notifier tests: sandbox connections and a webhook receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from helpers.tracking import numbered as parcels  # noqa: F401  (re-exported)

SENSOR_CONN_ID = "parcels_sensor_test"
WEBHOOK_CONN_ID = "parcels_test_webhook"


@pytest.fixture
def sandbox(parcels_sandbox_clean):
    """The session sandbox, stats and poll counters reset."""
    return parcels_sandbox_clean


@pytest.fixture
def sensor_conn(sandbox, monkeypatch: pytest.MonkeyPatch):
    """Define connection ``parcels_sensor_test`` for an API of the sandbox; returns a setter."""

    def define(api: str = "shipengine", conn_id: str = SENSOR_CONN_ID, key: str = "sandbox-key", **extra: Any) -> str:
        monkeypatch.setenv(*sandbox.conn_env(api, key=key, conn_id=conn_id, **extra))
        return conn_id

    return define


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.received.append(
            {"path": self.path, "headers": dict(self.headers), "json": json.loads(body or b"null")}
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A loopback HTTP receiver behind connection ``parcels_test_webhook``; yields what it received."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    conn = {"conn_type": "http", "host": f"http://{host}:{port}/hooks"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{WEBHOOK_CONN_ID.upper()}", json.dumps(conn))
    try:
        yield server.received
    finally:
        server.shutdown()
        server.server_close()
