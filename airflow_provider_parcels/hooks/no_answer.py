"""
Why an HTTP call got no answer, in words a user can act on: refused, DNS, TLS, reset, timeout.

``requests`` and ``httpx`` bury the cause under their own wrappers (``ConnectionError`` →
``MaxRetryError`` → ``NewConnectionError`` → ``ConnectionRefusedError``); :func:`no_answer_reason`
walks that chain and names the first cause it recognises, with the host and port it concerns.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def causes(error: BaseException | None, limit: int = 12) -> Iterator[BaseException]:
    """
    ``error`` and what it wraps: ``__cause__``, ``__context__``, urllib3's ``reason`` and exceptions in ``args``.

    :param error: the exception the HTTP client raised.
    :param limit: the most exceptions visited (chains are short; this bounds a cyclic one).
    """
    pending = [error] if error is not None else []
    seen: set[int] = set()
    while pending and len(seen) < limit:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        pending.extend(item for item in wrapped if isinstance(item, BaseException))


def endpoint(url: str) -> tuple[str, int | None]:
    """``(host, port)`` of ``url`` (the scheme's port when none is written); never its userinfo."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or "", port or _DEFAULT_PORTS.get(parts.scheme)


def _tls_detail(error: ssl.SSLError) -> str:
    detail = getattr(error, "verify_message", None) or getattr(error, "reason", None) or str(error)
    return str(detail).lower().replace("_", " ")


def no_answer_reason(error: BaseException | None, url: str) -> str:
    """
    One sentence on why a call to ``url`` got no answer.

    :param error: what the HTTP client raised (``requests`` or ``httpx``), or ``None``.
    :param url: the URL called (its host and port are named; pass it redacted of userinfo).
    """
    host, port = endpoint(url)
    where = f"{host}:{port}" if port else host
    chain = list(causes(error))
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate of {host} not accepted: {_tls_detail(cause)} (TLS)"
    for cause in chain:
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake with {where} failed: {_tls_detail(cause)} (TLS; is the scheme right?)"
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return f"host name {host!r} could not be resolved (DNS)"
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {where} (nothing listens there, or a firewall refuses it)"
        if isinstance(cause, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            return f"{where} closed the connection before answering (reset)"
        if isinstance(cause, TimeoutError) or type(cause).__name__ in ("ConnectTimeout", "ConnectTimeoutError"):
            return f"no connection to {where} in time (connect timeout)"
    for cause in chain:
        if type(cause).__name__ in ("RemoteDisconnected", "RemoteProtocolError", "ProtocolError"):
            return f"{where} closed the connection before answering (reset)"
    name = type(error).__name__ if error is not None else "no answer"
    first_line = (str(error).splitlines() or [""])[0][:200] if error is not None else ""
    return f"{name} calling {where}" + (f": {first_line}" if first_line else "")
