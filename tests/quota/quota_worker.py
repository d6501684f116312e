"""
One process of the multi-process quota tests (run as a script, one per process).

Arguments: a JSON object: ``store`` (a connection id, null for the embedded file, or
``{"kind": "sqlite"|"redis"|"postgres", ...}`` to open the store without importing Airflow), ``provider``,
``cred_hash``, ``limits`` (QuotaLimits fields), ``cost``, ``duration`` (seconds of work),
``max_reservations``. Prints ``ready``, waits for a line on stdin, then books and "sends"
until the duration or the count is reached; prints one JSON line: ``sent`` (times each
request left, after its wait), ``exhausted`` (how many were refused), ``overhead_ms`` (per reservation).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from airflow_provider_parcels.quota import PostgresStore, QuotaLedger, QuotaLimits, QuotaStore, RedisStore, SQLiteStore


def open_store(spec: Any) -> QuotaStore | str | None:
    """
    The store a worker spec names.

    :param spec: a connection id, ``None``, or a dict with ``kind`` and ``path``, ``port`` or ``dsn``.
    """
    if not isinstance(spec, dict):
        return spec
    if spec["kind"] == "sqlite":
        return SQLiteStore(spec["path"])
    if spec["kind"] == "redis":
        import redis

        return RedisStore(redis.Redis(host="127.0.0.1", port=spec["port"], socket_timeout=2), "test")
    import psycopg2

    return PostgresStore(lambda: psycopg2.connect(spec["dsn"]), "test")


def main() -> None:
    """Run one worker as the JSON argument says."""
    spec = json.loads(sys.argv[1])
    limits = QuotaLimits(**spec["limits"])
    ledger = QuotaLedger.for_hook(spec["provider"], spec["cred_hash"], limits, open_store(spec["store"]))
    ledger.status()  # connect before the start
    print("ready", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + spec["duration"]
    sent: list[float] = []
    overhead: list[float] = []
    exhausted = 0
    count = 0
    while time.monotonic() < deadline and count < spec.get("max_reservations", 10**9):
        count += 1
        started = time.perf_counter()
        reservation = ledger.reserve(spec["cost"])
        overhead.append((time.perf_counter() - started) * 1000)
        if reservation.exhausted is not None:
            exhausted += 1
            continue
        if time.monotonic() + reservation.wait_seconds > deadline:
            break  # this slot is wasted: it stands for a process killed right after booking
        time.sleep(reservation.wait_seconds)
        sent.append(time.time())
    print(json.dumps({"sent": sent, "exhausted": exhausted, "overhead_ms": overhead,
                      "fallback": ledger.using_fallback}), flush=True)


if __name__ == "__main__":
    main()
