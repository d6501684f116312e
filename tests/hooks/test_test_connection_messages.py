"""The Test button's messages: the user's connection (never Airflow's random test id), and for a call
that got no answer, which host and why (refused, DNS, TLS, reset, timeout)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from airflow_provider_parcels.hooks import hook_class


def define(monkeypatch: pytest.MonkeyPatch, conn_id: str, host: str, api: str = "shipengine", **extra) -> None:
    conn = {"conn_type": api, "host": host, "password": "sandbox-key",
            "extra": {"max_retries": 0, "timeout": 2, **extra}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (closed at teardown)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_stored_connection_is_named_with_the_url_tested(parcels_sandbox_clean, monkeypatch):
    url = parcels_sandbox_clean.base_url("shipengine")  # clean: no quota left set by an earlier test
    define(monkeypatch, "parcels_demo_shipengine", url)
    ok, message = hook_class("shipengine")("parcels_demo_shipengine").test_connection()
    assert ok, message
    accepted = (f"ShipEngine at {url} accepted the credentials of connection 'parcels_demo_shipengine'; "
                "quota shipengine:")
    assert message.startswith(accepted), message
    assert "day: 1 used" in message and "month: 1 used" in message  # the quota ledger's status, key hashed


def test_the_rest_endpoints_random_test_id_is_never_shown(parcels_sandbox_clean, monkeypatch):
    parcels_sandbox = parcels_sandbox_clean  # clean: no quota left set by an earlier test
    # POST /api/v2/connections/test copies the connection under a random 8-character id, defined
    # only as an AIRFLOW_CONN_ variable, and calls the hook with it.
    define(monkeypatch, "LT21Vond", parcels_sandbox.base_url("shipengine"))
    ok, message = hook_class("shipengine")("LT21Vond").test_connection()
    assert ok and "LT21Vond" not in message and "accepted the credentials of this connection" in message
    monkeypatch.setenv("AIRFLOW_CONN_LT21VOND", json.dumps(
        {"conn_type": "shipengine", "host": parcels_sandbox.base_url("shipengine"), "password": "wrong-key-9876"}))
    ok, message = hook_class("shipengine")("LT21Vond").test_connection()
    assert not ok and "LT21Vond" not in message and "this connection" in message, message
    monkeypatch.setenv("AIRFLOW_CONN_LT21VOND", json.dumps({"conn_type": "shipengine"}))
    ok, message = hook_class("shipengine")("LT21Vond").test_connection()
    assert (ok, message) == (False, "this connection (shipengine) has no API key: set the connection's password field")


def test_refused(monkeypatch):
    port = closed_port()
    define(monkeypatch, "t_refused", f"http://127.0.0.1:{port}/api")
    ok, message = hook_class("shipengine")("t_refused").test_connection()
    assert not ok
    assert message == (f"ShipEngine at http://127.0.0.1:{port}/api: connection refused by 127.0.0.1:{port} "
                       "(nothing listens there, or a firewall refuses it)")


def test_tls_spoken_to_a_plain_http_server(parcels_sandbox, monkeypatch):
    https = parcels_sandbox.base_url("shipengine").replace("http://", "https://")
    define(monkeypatch, "t_tls", https)
    ok, message = hook_class("shipengine")("t_tls").test_connection()
    assert not ok
    assert f"TLS handshake with 127.0.0.1:{parcels_sandbox.port} failed: " in message, message
    assert "(TLS; is the scheme right?)" in message


def test_dns(monkeypatch):
    # No name server is asked: the lookup fails as a resolver's NXDOMAIN would.
    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    define(monkeypatch, "t_dns", "https://alice:Pw5ecret77@api.shipengine.invalid/v1")
    ok, message = hook_class("shipengine")("t_dns").test_connection()
    assert not ok
    assert "host name 'api.shipengine.invalid' could not be resolved (DNS)" in message, message
    assert "Pw5ecret77" not in message and "alice" not in message


def test_timeout(silent_server, monkeypatch):
    define(monkeypatch, "t_timeout", f"http://127.0.0.1:{silent_server}/api", timeout=0.5)
    ok, message = hook_class("shipengine")("t_timeout").test_connection()
    assert not ok
    assert message == f"ShipEngine at http://127.0.0.1:{silent_server}/api: no answer from " \
        f"127.0.0.1:{silent_server} within 0.5 s (timeout)"


def test_the_triggers_async_path_says_the_same(monkeypatch):
    port = closed_port()
    define(monkeypatch, "t_async_refused", f"http://127.0.0.1:{port}/api")
    hook = hook_class("shipengine")("t_async_refused")
    (result,) = asyncio.run(hook.atrack([{"carrier": "ups", "tracking_number": "DLV00001"}]))
    assert result.error is not None
    assert f"connection refused by 127.0.0.1:{port}" in result.error.message, result.error
