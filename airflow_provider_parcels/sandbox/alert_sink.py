"""A loopback endpoint standing in for a Slack incoming webhook: it records every alert posted to it.

Point an ``http`` connection at :attr:`AlertSink.url` and give it to ``ParcelReportNotifier``
(``http_conn_id``) or the deadline callbacks, then read :attr:`AlertSink.received`: the demo,
the example-DAG tests and the end-to-end suite check their alerts this way, and so can your own
DAG tests. Standard library only; it listens on 127.0.0.1 and stops with :meth:`stop`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _AlertHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload: Any = json.loads(body or b"null")
        except ValueError:
            payload = body.decode("utf-8", "replace")
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.received.append({"path": self.path, "json": payload})  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


class AlertSink:
    """
    An HTTP server on a free loopback port, in a daemon thread, that answers ``200 ok`` to every
    POST and records it as ``{"path": ..., "json": <the body as JSON, else as text>}``.

    :param path: the path :attr:`url` names (any path is accepted and recorded).
    :param name: the thread's name, for stack dumps.
    """

    def __init__(self, path: str = "/alerts", name: str = "alert-sink") -> None:
        self.path = path
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _AlertHandler)
        self.server.received = []  # type: ignore[attr-defined]
        self.server.lock = threading.Lock()  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True, name=name)
        self.thread.start()

    @property
    def url(self) -> str:
        """Where to post alerts (the ``host`` of an ``http`` connection)."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    @property
    def received(self) -> list[dict[str, Any]]:
        """What was posted so far, oldest first (a copy)."""
        with self.server.lock:  # type: ignore[attr-defined]
            return list(self.server.received)  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> AlertSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
