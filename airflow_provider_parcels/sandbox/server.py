"""The HTTP server: one port, keep-alive, a thread per connection, all five APIs by path prefix."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import traceback
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .apis import API_NAMES
from .app import CONTROL_TOKEN_HEADER, SandboxApp
from .settings import SandboxSettings
from .wire import Response

DEFAULT_KEY = "sandbox-key"
WHEREPARCEL_SECRET = "sandbox-secret"


class _Headers(dict):
    """Request headers with case-insensitive ``get`` (keys are stored lower-cased)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "parcels-sandbox"
    timeout = 600  # idle keep-alive connections are closed after this long
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def handle_one_request(self) -> None:
        """Parse one request (a lean replacement of the stdlib's email-based header parsing)."""
        try:
            line = self.rfile.readline(65537)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if not line:
            self.close_connection = True
            return
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or len(line) > 65536 or not parts[2].startswith("HTTP/"):
            self.close_connection = True
            self.request_version = "HTTP/1.1"
            self._write(Response(400, {"error": "malformed request line"}))
            return
        self.command, self.path, self.request_version = parts
        self.requestline = line.decode("latin-1").rstrip("\r\n")
        headers = _Headers()
        for _ in range(200):
            raw = self.rfile.readline(65537)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment]
        connection = (headers.get("connection") or "").lower()
        self.close_connection = connection == "close" or (
            self.request_version != "HTTP/1.1" and connection != "keep-alive")
        if (headers.get("expect") or "").lower() == "100-continue":
            try:
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                self.close_connection = True
                return
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(Response(400, {"error": "malformed request body"}))
            return
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        try:
            response = self.server.app.handle(self.command, self.path, self.headers, body, host)
        except Exception as exc:  # a sandbox bug: say so instead of dropping the connection
            traceback.print_exc()
            response = Response(500, {"error": f"sandbox error: {exc!r}"})
        if response is None:
            self._reset()
        else:
            self._write(response)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset and no answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _write(self, response: Response) -> None:
        body = response.body
        if isinstance(body, bytes):
            payload = body
        elif body is None:
            payload = b""
        else:
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        lines = [f"HTTP/1.1 {response.status} {phrase}", f"Date: {formatdate(usegmt=True)}"]
        if response.status != 204:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(payload)}")
        lines.extend(f"{name}: {value}" for name, value in response.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        if self.command == "HEAD":
            payload = b""
        try:
            self.wfile.write(head + payload)
        except OSError:  # the client gave up (e.g. its read timed out)
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SandboxApp) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class SandboxServer:
    """All five fake APIs on one local port, served from a background thread.

    :param host: interface to bind (default loopback).
    :param port: port to bind; 0 picks a free one (read it back from :attr:`url`).
    :param settings: initial :class:`SandboxSettings`.
    :param control_token: the token that ``POST /_sandbox/reset`` and ``/_sandbox/config`` need
        in the ``X-Sandbox-Token`` header (default: ``$PARCELS_SANDBOX_TOKEN``, else random; read
        it back from :attr:`control_token`). The methods of this object need none.

    Use it as a context manager or call :meth:`start` and :meth:`stop`::

        with SandboxServer() as sandbox:
            os.environ.update([sandbox.conn_env("shipengine")])
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, settings: SandboxSettings | None = None,
                 control_token: str | None = None) -> None:
        self.host = host
        self.port = port
        self.app = SandboxApp(settings or SandboxSettings(), control_token)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------
    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self.app.stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self.app)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"parcels-sandbox-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and wake sleeping requests."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.app.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- addresses and connections ------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def base_url(self, api: str) -> str:
        """Base URL of one API (the connection's host), e.g. ``http://127.0.0.1:PORT/shipengine``."""
        if api not in self.app.apis:
            raise ValueError(f"unknown API {api!r}; choose from {', '.join(API_NAMES)}")
        return self.url + self.app.apis[api].prefix

    def connection(self, api: str, key: str = DEFAULT_KEY, **extra: Any) -> dict:
        """An Airflow connection dict pointing at this sandbox.

        :param api: one of ``whereparcel``, ``trackingmore``, ``trackflow``, ``parcellab``, ``shipengine``.
        :param key: the API key (``sandbox-<plan>`` enforces a plan).
        :param extra: connection extras (parcelLab gets ``account=1`` unless given).
        """
        return sandbox_connection(api, self.base_url(api), key, **extra)

    def conn_env(self, api: str, key: str = DEFAULT_KEY, conn_id: str | None = None, **extra: Any) -> tuple[str, str]:
        """``("AIRFLOW_CONN_<CONN_ID>", json)`` for an environment variable (default conn id ``<api>_default``)."""
        conn = self.connection(api, key, **extra)
        if not conn["extra"]:
            del conn["extra"]
        name = "AIRFLOW_CONN_" + (conn_id or f"{api}_default").upper()
        return name, json.dumps(conn)

    # --- control ------------------------------------------------------------------------
    @property
    def control_token(self) -> str:
        """The token the state-changing ``/_sandbox/*`` endpoints ask for."""
        return self.app.control_token

    @property
    def control_headers(self) -> dict[str, str]:
        """``{"X-Sandbox-Token": token}``: the header to send to ``POST /_sandbox/reset`` and ``/config``."""
        return {CONTROL_TOKEN_HEADER: self.app.control_token}

    @property
    def settings(self) -> SandboxSettings:
        """The settings in force."""
        return self.app.settings

    def stats(self) -> dict:
        """The same counters as ``GET /_sandbox/stats``."""
        return self.app.stats.snapshot()

    def reset(self) -> None:
        """Zero stats, poll counters, quota windows and created orders/trackings."""
        self.app.reset()

    def configure(self, **settings: Any) -> None:
        """Change settings at run time, e.g. ``configure(rpm=10, faults="503=0.2", seed=1)``."""
        self.app.configure(**settings)


def sandbox_connection(api: str, base_url: str, key: str = DEFAULT_KEY, **extra: Any) -> dict[str, Any]:
    """
    The Airflow connection (as a dict) of one API of a sandbox at ``base_url``.

    :param api: one of ``whereparcel``, ``trackingmore``, ``trackflow``, ``parcellab``, ``shipengine``.
    :param base_url: that API's base URL on the sandbox.
    :param key: the API key (``sandbox-<plan>`` enforces a plan).
    :param extra: connection extras (parcelLab gets ``account=1`` unless given).
    """
    conn: dict[str, Any] = {"conn_type": api, "host": base_url}
    if api == "whereparcel":
        conn.update(login=key, password=WHEREPARCEL_SECRET)
    else:
        conn["password"] = key
    if api == "parcellab":
        extra.setdefault("account", 1)
    conn["extra"] = dict(extra)
    return conn
