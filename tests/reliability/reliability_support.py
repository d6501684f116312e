"""Shared pieces of the reliability suite: a sandbox with a pinned clock, parcels, connections, dumps.

The sandbox derives every event time from the start of the current UTC day, so two runs that
straddle midnight would differ. The suite's sandboxes read a pinned clock instead (the
``OutcomeBook`` clock is replaceable for tests), which makes a fault-free run and a faulty run,
or a crashed run and a clean one, comparable row for row whenever the suite runs.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from airflow_provider_parcels.sandbox import SandboxServer
from airflow_provider_parcels.sandbox.apis import API_CLASSES
from airflow_provider_parcels.sandbox.app import CONTROL_TOKEN_ENV, CONTROL_TOKEN_HEADER
from airflow_provider_parcels.sandbox.server import sandbox_connection

APIS = ("whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine")
BATCH_APIS = ("whereparcel", "trackingmore", "trackflow")
#: A carrier code each API (and its sandbox) knows.
CARRIER = {"whereparcel": "kr.cj", "trackingmore": "usps", "trackflow": "ups", "parcellab": "dhl",
           "shipengine": "usps"}
#: The issue's fault mix: 10% 429, 5% 5xx, 2% timeouts, 1% malformed JSON, 1% connection resets.
FAULT_SPEC = "429=0.10,503=0.05,timeout=0.02,badjson=0.01,reset=0.01"
#: Error codes a parcel gets when every attempt of its call failed on a transport fault.
FAULT_CODES = frozenset({"rate_limited", "server_error", "timeout", "connection_error", "malformed_response"})
#: Sandbox prefixes with a fixed outcome (docs/sandbox.md); the POLL/SEC ones change per lookup
#: and are left out on purpose: a retried call would legitimately see a later state.
FIXED_PREFIXES = ("DLV", "TRN", "OFD", "EXC", "FAT", "PUP", "EXP", "PEN", "INF", "UNK", "NFD")
#: Figures the suite's runs record for the terminal summary (see conftest.py).
FIGURES: dict[str, Any] = {}
#: Pacing well above anything a test sends, so the client's own quota never dominates a run.
FAST = {"requests_per_minute": 600_000}


def pinned_sandbox(frozen: float | None = None) -> SandboxServer:
    """A started sandbox whose outcome clock is frozen (at ``frozen``, epoch seconds, or now)."""
    server = SandboxServer(port=0)
    moment = time.time() if frozen is None else frozen
    server.app.book._clock = lambda: moment  # the OutcomeBook clock is documented as replaceable
    return server.start()


class RemoteSandbox:
    """A pinned-clock sandbox in a child process, driven over its HTTP control endpoints.

    It offers what the suite uses of :class:`SandboxServer`: ``connection``, ``stats``,
    ``configure``, ``reset`` and ``stop``.
    """

    prefixes = {cls.name: cls.prefix for cls in API_CLASSES}

    def __init__(self, frozen: float) -> None:
        script = Path(__file__).with_name("sandbox_process.py")
        token = secrets.token_urlsafe(24)  # the child's control token: its POST /_sandbox/* need it
        self._proc = subprocess.Popen([sys.executable, str(script), repr(frozen)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True,
                                      env={**os.environ, CONTROL_TOKEN_ENV: token})
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the sandbox process did not start (it printed {line!r})")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"
        self._http = requests.Session()
        self._http.headers[CONTROL_TOKEN_HEADER] = token

    def base_url(self, api: str) -> str:
        return self.url + self.prefixes[api]

    def connection(self, api: str, key: str = "sandbox-key", **extra: Any) -> dict:
        return sandbox_connection(api, self.base_url(api), key, **extra)

    def stats(self) -> dict:
        response = self._http.get(f"{self.url}/_sandbox/stats", timeout=30)
        response.raise_for_status()
        return response.json()

    def configure(self, **settings: Any) -> None:
        self._http.post(f"{self.url}/_sandbox/config", json=settings, timeout=30).raise_for_status()

    def reset(self) -> None:
        self._http.post(f"{self.url}/_sandbox/reset", timeout=30).raise_for_status()

    def stop(self) -> None:
        if hasattr(self, "_http"):
            self._http.close()
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()


def parcels_for(api: str, count: int, tag: str) -> list[dict[str, str]]:
    """``count`` distinct parcels for ``api``: every fourth one a fixed-outcome prefix, the rest
    stable hash histories (delivered, in transit, exception, ...)."""
    carrier = CARRIER[api]
    out = []
    for i in range(count):
        prefix = FIXED_PREFIXES[(i // 4) % len(FIXED_PREFIXES)] if i % 4 == 0 else "RL"
        out.append({"carrier": carrier, "tracking_number": f"{prefix}{tag}{i:06d}"})
    return out


def connection_json(sandbox: SandboxServer | RemoteSandbox, api: str, key: str = "sandbox-key",
                    secret: str | None = None, **extra: Any) -> str:
    """The JSON of an Airflow connection to ``api`` on ``sandbox`` (``secret``: WhereParcel's password)."""
    conn = sandbox.connection(api, key=key, **extra)
    if secret is not None:
        conn["password"] = secret
    if not conn["extra"]:
        del conn["extra"]
    return json.dumps(conn)


def env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


@contextmanager
def env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for a block (for module-scoped fixtures that have no monkeypatch)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def sqlite_conn(path: os.PathLike | str) -> str:
    return json.dumps({"conn_type": "sqlite", "host": str(path)})


# ------------------------------------------------------------------ comparing warehouse tables

PARCEL_COLUMNS = (
    "provider", "carrier", "tracking_number", "client_id", "status", "provider_status", "status_text",
    "carrier_name", "estimated_delivery", "delivered_at", "last_event_at", "last_event_description",
    "last_event_location", "event_count", "origin_country", "destination_country", "error_code",
    "error_message", "fetched_at", "raw", "last_error_code", "last_error_message", "last_error_at",
)
FETCHED_AT = PARCEL_COLUMNS.index("fetched_at")


def without_fetched_at(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``parcel_tracking`` dump rows minus ``fetched_at`` (the one column two fetches may differ in)."""
    return [row[:FETCHED_AT] + row[FETCHED_AT + 1 :] for row in rows]


def parcel_rows_by_number(dump: Iterable[tuple[Any, ...]]) -> dict[str, dict[str, Any]]:
    """``parcel_tracking`` dump rows as dicts keyed by tracking number (one API, one carrier)."""
    out: dict[str, dict[str, Any]] = {}
    for row in dump:
        record = dict(zip(PARCEL_COLUMNS, row, strict=True))
        assert record["tracking_number"] not in out, f"two rows for {record['tracking_number']}"
        out[record["tracking_number"]] = record
    return out


def events_by_number(dump: Iterable[tuple[Any, ...]]) -> dict[str, set[tuple[Any, ...]]]:
    """``parcel_tracking_events`` dump rows grouped by tracking number (event_id onwards)."""
    out: dict[str, set[tuple[Any, ...]]] = {}
    for row in dump:
        out.setdefault(row[2], set()).add(tuple(row[3:]))
    return out


#: Keys of an API answer that change on every fetch by design (TrackFlow's ``last_updated`` is the
#: minute of the answer), dropped from ``raw`` before two fetches are compared.
VOLATILE_RAW_KEYS = frozenset({"last_updated"})


def stable_raw(raw: str | None) -> Any:
    """The ``raw`` JSON column parsed, minus :data:`VOLATILE_RAW_KEYS` at any depth."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE_RAW_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(raw)) if raw is not None else None


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """A parcel row without ``fetched_at`` (and with a stable ``raw``): what two successful
    fetches of one parcel must share."""
    out = {k: v for k, v in record.items() if k != "fetched_at"}
    out["raw"] = stable_raw(out.get("raw"))
    return out
