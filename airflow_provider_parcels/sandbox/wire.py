"""Request and response objects passed between the HTTP server and the API modules, and the
time formats the APIs write."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

_UNPARSED = object()


@dataclass
class Request:
    """One HTTP request, with the path already stripped of the API prefix.

    :param method: HTTP method.
    :param path: path below the API prefix, e.g. ``/v2/track``.
    :param query: query parameters (first value of each).
    :param headers: request headers (case-insensitive mapping).
    :param body: raw body.
    :param base_url: the API's base URL as the client addressed it (for absolute links).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes = b""
    base_url: str = ""
    _json: Any = field(default=_UNPARSED, repr=False)

    def header(self, name: str) -> str:
        """A header value, "" when absent."""
        return (self.headers.get(name) or "").strip()

    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` when it is not JSON."""
        if self._json is _UNPARSED:
            try:
                self._json = json.loads(self.body.decode("utf-8")) if self.body.strip() else None
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                self._json = exc
        if isinstance(self._json, Exception):
            raise ValueError(str(self._json))
        return self._json

    def json_or_none(self) -> Any:
        """The parsed body, or None when it is missing or not JSON."""
        try:
            return self.json()
        except ValueError:
            return None


@dataclass
class Response:
    """An answer: ``body`` is a JSON value, raw ``bytes`` (sent as is) or None (no body).

    :param status: HTTP status.
    :param body: the body.
    :param headers: extra headers.
    """

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _utc(moment: datetime) -> datetime:
    return moment if moment.utcoffset() == timedelta(0) else moment.astimezone(timezone.utc)


def _wall(moment: datetime, sep: str = "T", seconds: bool = True) -> str:
    """Wall-clock digits of ``moment`` (no zone); faster than ``strftime``."""
    text = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}{sep}{moment.hour:02d}:{moment.minute:02d}"
    return f"{text}:{moment.second:02d}" if seconds else text


def iso_z(moment: datetime | None, millis: bool = False) -> str | None:
    """``2026-06-15T03:42:00Z`` (or ``...:00.000Z``)."""
    if moment is None:
        return None
    text = _wall(_utc(moment))
    return f"{text}.000Z" if millis else f"{text}Z"


def iso_offset(moment: datetime | None, offset_minutes: int) -> str | None:
    """``2026-02-05T14:30:00+09:00``: the moment in a fixed UTC offset."""
    if moment is None:
        return None
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{_wall(_utc(moment) + timedelta(minutes=offset_minutes))}{sign}{hours:02d}:{minutes:02d}"


def local_naive(moment: datetime | None, offset_minutes: int, sep: str = "T", seconds: bool = True) -> str | None:
    """The local wall-clock time without any zone, e.g. ``2021-09-20T14:03:00`` or ``2015-10-25 15:01``."""
    if moment is None:
        return None
    return _wall(_utc(moment) + timedelta(minutes=offset_minutes), sep, seconds)
