"""A hostile API server on loopback: what a broken, malicious or overloaded API can send.

``HostileServer`` answers every request (any method, any path) according to its current mode,
so any hook, present or future, is tested against it by pointing its connection's host at
``server.base_url(sandbox, api)`` (same path prefix as the sandbox). Modes (``server.mode(...)``):

- ``proxy``: forward to the sandbox and hand back its answer, optionally rewritten by a
  ``transform(json) -> json`` and with ``headers`` added or replaced (absurd rate headers);
  :func:`poison_times` and :func:`break_lists` are ready-made transforms;
- ``json``: a fixed answer (``body`` as bytes, or any JSON value), ``status`` and ``headers``;
- ``deep``: an array nested ``depth`` levels (100,000 by default);
- ``huge``: a ``size``-byte JSON body, framed by ``Content-Length`` (``framing="length"``),
  chunked (``"chunked"``) or by closing the connection (``"close"``);
- ``drip_headers``: the status line, then headers one byte every ``interval`` seconds;
- ``drip_body``: headers announcing ``size`` bytes, then the body one byte every ``interval``;
- ``raw``: ``data`` (bytes) sent as is, status line and headers included, then the connection
  closed: a broken status line, a nonsense ``Content-Length``, a header line of 100 KiB (add
  ``Connection: close`` to a well-framed answer, or a client may reuse the closed connection);
  with ``drip`` (bytes) and ``interval``, these follow one byte at a time; with
  ``at_once=True`` it is sent as soon as the client connects, before any request (e.g. a TLS
  record header, then its body dripped, to stall an ``https`` client's handshake).

Every mode takes ``only="TEXT"``: then only requests whose path or body holds ``TEXT`` (a
tracking number) get it, and the others get ``otherwise`` (options of another mode; default a
plain proxy), so one poisoned parcel can sit among good ones.

It is a raw-socket server (one thread per connection), so it can send what no framework
would: half a header, a body slower than any read timeout, a length it never honours.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

JsonTransform = Callable[[Any], Any]
_TIME_KEY = re.compile(r"time|date|_at$|timestamp", re.IGNORECASE)


class HostileServer:
    """
    The server; ``start()`` binds a free loopback port, ``close()`` stops every connection.

    :param upstream: the sandbox's root URL (``http://127.0.0.1:PORT``) that ``proxy`` forwards to.
    """

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.calls = 0
        self.hostile_calls = 0
        self.sent = 0
        self.paths: list[str] = []
        self._options: dict[str, Any] = {"mode": "proxy"}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name="hostile-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, sandbox: Any, api: str) -> str:
        """The connection host of ``api`` on this server: the sandbox's path prefix, this server's port."""
        return self.url + sandbox.base_url(api)[len(sandbox.url):]

    def mode(self, mode: str, **options: Any) -> HostileServer:
        """Switch what every following request gets (see the module docstring)."""
        with self._lock:
            self._options = {"mode": mode, **options}
        return self

    def start(self) -> HostileServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ serving

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)
        try:
            with self._lock:
                options = dict(self._options)
            if options.get("at_once"):
                with self._lock:
                    self.calls += 1
                    self.hostile_calls += 1
                self._answer(conn, ("?", "?", {}, b""), options)
                return
            reader = conn.makefile("rb")
            while not self._stop.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                with self._lock:
                    self.calls += 1
                    self.paths.append(request[1])
                    options = dict(self._options)
                    only = options.pop("only", None)
                    if only is not None and only.encode() not in request[1].encode() + request[3]:
                        options = dict(options.get("otherwise") or {"mode": "proxy"})
                    else:
                        self.hostile_calls += 1
                if not self._answer(conn, request, options):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()

    def _answer(self, conn: socket.socket, request: tuple[str, str, dict[str, str], bytes],
                options: dict[str, Any]) -> bool:
        """Send one answer; ``False`` when the connection must close after it."""
        mode = options["mode"]
        if mode == "proxy":
            status, headers, body = self._forward(request)
            transform = options.get("transform")
            if transform is not None and body.strip():
                body = json.dumps(transform(json.loads(body))).encode().replace(b'"__1e400__"', b"1e400")
            headers.update(options.get("headers") or {})
            conn.sendall(_head(options.get("status", status), headers, len(body)) + body)
            return True
        if mode == "json":
            body = options.get("body", {})
            body = body if isinstance(body, bytes) else json.dumps(body).encode()
            conn.sendall(_head(options.get("status", 200), options.get("headers") or {}, len(body)) + body)
            return True
        if mode == "raw":
            conn.sendall(options["data"])
            self._drip(conn, options.get("drip", b""), options.get("interval", 1.0))
            return False
        if mode == "deep":
            depth = options.get("depth", 100_000)
            body = b"[" * depth + b"]" * depth
            conn.sendall(_head(200, {}, len(body)) + body)
            return True
        if mode == "huge":
            return self._huge(conn, options.get("size", 50 * 1024 * 1024), options.get("framing", "length"))
        if mode == "drip_headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            self._drip(conn, b"X-Padding: " + b"a" * 10_000 + b"\r\n", options.get("interval", 1.0))
            return False
        if mode == "drip_body":
            size = options.get("size", 10_000)
            conn.sendall(_head(200, {}, size))
            self._drip(conn, b" " * size, options.get("interval", 1.0))
            return False
        raise ValueError(f"unknown hostile mode {mode!r}")

    def _drip(self, conn: socket.socket, data: bytes, interval: float) -> None:
        for i in range(len(data)):
            if self._stop.wait(interval):
                return
            try:
                conn.sendall(data[i : i + 1])
            except OSError:  # the client gave up: what a deadline is for
                return

    def _huge(self, conn: socket.socket, size: int, framing: str) -> bool:
        head = b'{"padding": "'
        tail = b'"}'
        fill = size - len(head) - len(tail)
        block = b"x" * 65536
        if framing == "length":
            conn.sendall(_head(200, {}, size))
        elif framing == "chunked":
            conn.sendall(_head(200, {"Transfer-Encoding": "chunked"}, None))
        else:
            conn.sendall(_head(200, {"Connection": "close"}, None))

        def send(data: bytes) -> None:
            if framing == "chunked":
                data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
            conn.sendall(data)
            with self._lock:
                self.sent += len(data)

        try:
            send(head)
            while fill > 0 and not self._stop.is_set():
                send(block[: min(fill, len(block))])
                fill -= len(block)
            send(tail)
            if framing == "chunked":
                conn.sendall(b"0\r\n\r\n")
        except OSError:  # the client stopped reading: what a size cap is for
            return False
        return framing != "close"

    def _forward(self, request: tuple[str, str, dict[str, str], bytes]) -> tuple[int, dict[str, str], bytes]:
        if self.upstream is None:
            raise RuntimeError("proxy mode needs an upstream")
        method, path, headers, body = request
        skip = {"host", "content-length", "connection", "accept-encoding"}
        forward = urllib.request.Request(self.upstream + path, data=body or None, method=method,
                                         headers={k: v for k, v in headers.items() if k.lower() not in skip})
        try:
            with urllib.request.urlopen(forward, timeout=30) as answer:
                status, answer_headers, content = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as err:
            status, answer_headers, content = err.code, err.headers, err.read()
        keep = {k: v for k, v in answer_headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server")}
        return status, keep, content


def _read_request(reader: Any) -> tuple[str, str, dict[str, str], bytes] | None:
    line = reader.readline(65536)
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) != 3:  # the client hung up, or speaks no HTTP (a TLS ClientHello): answered all the same
        return ("?", "?", {}, b"") if line.strip() else None
    method, path, _ = parts
    headers: dict[str, str] = {}
    while True:
        header = reader.readline(65536)
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip()] = value.strip()
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0") or 0)
    return method, path, headers, reader.read(length) if length else b""


def _head(status: int, headers: dict[str, str], length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-type"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# ---------------------------------------------------------------------- ready-made transforms


def _within(target: str | None, transform: Callable[[Any], Any]) -> JsonTransform:
    """Apply ``transform`` to the whole answer, or only to the objects that name tracking number ``target``."""

    def walk(value: Any, inside: bool) -> Any:
        if isinstance(value, dict):
            inside = inside or any(isinstance(v, str) and v.upper() == target for v in value.values())
            out = {k: walk(v, inside) for k, v in value.items()}
            return transform(out) if inside else out
        if isinstance(value, list):
            return [walk(v, inside) for v in value]
        return value

    return lambda body: walk(body, target is None)


def poison_times(value: Any, only: str | None = None) -> JsonTransform:
    """Every time-like field (``timestamp``, ``*_date``, ``*_at``, ``*time*``) set to ``value``."""
    return _within(only and only.upper(), lambda d: {k: (value if _TIME_KEY.search(k) and isinstance(v, str | int)
                                                          else v) for k, v in d.items()})


def break_lists(only: str | None = None) -> JsonTransform:
    """Every list (events, checkpoints...) replaced by the number 7: an entry no parser can walk."""
    return _within(only and only.upper(), lambda d: {k: (7 if isinstance(v, list) else v) for k, v in d.items()})


def add_odd_values(only: str | None = None) -> JsonTransform:
    """Strings and numbers a database may refuse, in every object: NaN, Infinity, 1e400 (a float
    overflow), a 40-digit integer, NUL, a lone surrogate, and description/location texts holding them."""
    odd = {"nan": float("nan"), "inf": float("inf"), "overflow": "__1e400__", "big": 10**40,
           "nul": "a\x00b", "surrogate": "x\ud800y", "rtl": "\u202e\ufeff\U0001f4e6"}

    def add(d: dict) -> dict:
        d = {**d, "hostile": odd}
        for key in ("description", "location", "status_description", "message"):
            if isinstance(d.get(key), str):
                d[key] = d[key] + "\x00\ud800\u202e"
        return d

    return _within(only and only.upper(), add)
