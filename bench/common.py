"""Helpers shared by the benchmark modules: Airflow bootstrap, connections, sandbox traffic logs,
parcel generators, subprocess calls and the machine description."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
#: The five APIs, in the order the tables list them.
APIS = ("whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine")


def bootstrap_airflow() -> None:
    """Give Airflow a throw-away home and a quiet log before anything imports it."""
    if "AIRFLOW_HOME" not in os.environ:
        os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="parcels-bench-airflow-")
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


def run_section(run: Any, markdown: Any, quick: bool, json_out: Path | None) -> None:
    """
    A section run on its own (``python -m bench.<section>``): bootstrap Airflow, run, write, print.

    :param run: the section's ``run(quick) -> result``.
    :param markdown: the section's ``markdown(result) -> lines``.
    :param quick: the section's quick mode.
    :param json_out: where to write the result as JSON (``None``: nowhere).
    """
    bootstrap_airflow()
    result = run(quick)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(markdown(result)))


def set_connection(conn_id: str, conn: dict[str, Any]) -> str:
    """Publish an Airflow connection through its ``AIRFLOW_CONN_*`` variable; returns ``conn_id``."""
    conn = dict(conn)
    if not conn.get("extra"):
        conn.pop("extra", None)
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return conn_id


def sandbox_connection(sandbox: Any, api: str, conn_id: str, key: str = "sandbox-key", **extra: Any) -> str:
    """An Airflow connection ``conn_id`` to ``api`` in ``sandbox`` (an in-process ``SandboxServer``)."""
    return set_connection(conn_id, sandbox.connection(api, key=key, **extra))


def parcels(count: int, prefix: str = "BENCH", start: int = 0) -> Iterator[dict[str, str]]:
    """``count`` distinct parcels as dicts, made lazily (never all in memory at once)."""
    carriers = ("dhl", "ups", "usps", "kr.cj")
    for i in range(start, start + count):
        yield {"carrier": carriers[i % len(carriers)], "tracking_number": f"{prefix}{i:09d}"}


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` on integers."""
    return -(-a // b)


@dataclass
class Arrival:
    """One request the sandbox's quota counted (or refused).

    :param at: ``time.monotonic()`` when the sandbox saw it.
    :param bucket: the sandbox's quota bucket, ``(api, key)``.
    :param weight: quota units (TrackFlow: items; others: 1).
    :param allowed: whether the quota let it through.
    """

    at: float
    bucket: Any
    weight: int
    allowed: bool


@dataclass
class ArrivalLog:
    """Records every quota decision of an in-process sandbox, with its time.

    The sandbox counts a request against the quota when it arrives, before the simulated
    answer time: this is the server's own view of the traffic, the same for our hook and for
    the baseline loop. It wraps ``sandbox.app.limiter.acquire`` (only called for keys that
    have a quota).
    """

    arrivals: list[Arrival] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attach(self, sandbox: Any) -> ArrivalLog:
        limiter = sandbox.app.limiter
        original = limiter.acquire

        def acquire(bucket: Any, limit: int, *args: Any, **kwargs: Any) -> Any:
            decision = original(bucket, limit, *args, **kwargs)
            weight = args[0] if args else kwargs.get("weight", 1)
            with self._lock:
                self.arrivals.append(Arrival(time.monotonic(), bucket, max(1, int(weight)), decision.allowed))
            return decision

        limiter.acquire = acquire
        return self

    def for_key(self, key: str) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if a.bucket[1] == key]


def window_seconds_supported() -> bool:
    """Whether this sandbox has the ``window_seconds`` setting (a quota window shorter than 60 s)."""
    import dataclasses

    from airflow_provider_parcels.sandbox import SandboxSettings

    return any(f.name == "window_seconds" for f in dataclasses.fields(SandboxSettings))


def run_script(args: list[str], timeout: float, label: str) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` from the repository root, echoing its output; raise on failure."""
    command = [sys.executable, *args]
    print(f"  $ {' '.join(Path(a).name if a.endswith('.py') else a for a in command[1:])}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        print(f"  | {line}", flush=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"{label} exited with {proc.returncode}")
    return proc


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, Python, Airflow and SQLite versions, date (UTC)."""
    import sqlite3

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        ram_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    try:
        from importlib.metadata import version

        airflow_version = version("apache-airflow")
    except Exception:
        airflow_version = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "airflow": airflow_version,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table cell (``-`` for missing)."""
    if value is None:
        return "-"
    if isinstance(value, int) or (digits == 0):
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"
