"""
The shared quota ledger (issue 17): its cost per reservation in each store, and N processes on
one API key against the sandbox, with the ledger and with only today's per-process limiter.

``python -m bench.shared_quota [--processes 4] [--seconds 8] [--window 2]``

Starts its own ``redis-server`` and PostgreSQL (``initdb`` from the PATH or
``/usr/lib/postgresql/*/bin``); a store that cannot be started is skipped. The sandbox runs with a
shortened quota window (``--window`` seconds; TrackFlow's free plan: 10 lookups a window), so the
ledger is given the same quota per minute (``10 * 60 / window``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PER_WINDOW = 10  # TrackFlow free plan in the sandbox: 10 lookups per window


def _store(spec: dict[str, Any]) -> Any:
    from airflow_provider_parcels.quota import MemoryStore, PostgresStore, RedisStore, SQLiteStore

    if spec["kind"] == "memory":
        return MemoryStore()
    if spec["kind"] == "sqlite":
        return SQLiteStore(spec["path"])
    if spec["kind"] == "redis":
        import redis

        return RedisStore(redis.Redis(host="127.0.0.1", port=spec["port"], socket_timeout=2), "bench")
    import psycopg2

    return PostgresStore(lambda: psycopg2.connect(spec["dsn"]), "bench")


def overhead_ms(spec: dict[str, Any], count: int = 2000) -> dict[str, float]:
    """
    Milliseconds per ``reserve()`` in one process, no waiting (no minute quota, a day budget counted).

    :param spec: the store.
    :param count: reservations to time.
    """
    from airflow_provider_parcels.quota import QuotaLedger, QuotaLimits

    ledger = QuotaLedger(f"bench:{uuid.uuid4().hex[:16]}", QuotaLimits(requests_per_day=10**9), _store(spec))
    ledger.reserve()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        ledger.reserve()
        times.append((time.perf_counter() - started) * 1000)
    assert not ledger.using_fallback, f"{spec['kind']} store unreachable"
    times.sort()
    return {"mean": statistics.fmean(times), "p50": times[len(times) // 2], "p99": times[int(len(times) * 0.99)]}


def worker(spec: dict[str, Any]) -> None:
    """One process of the sandbox run: book (ledger or local limiter), then look one parcel up, until the end."""
    import requests

    from airflow_provider_parcels.hooks.ratelimit import RateLimiter
    from airflow_provider_parcels.quota import QuotaLedger, QuotaLimits

    rpm = PER_WINDOW * 60 / spec["window"]
    if spec["store"]["kind"] == "local":
        limiter = RateLimiter(rpm)
        book = limiter.reserve
    else:
        ledger = QuotaLedger(f"trackflow:{spec['key']}", QuotaLimits(requests_per_minute=rpm), _store(spec["store"]))
        ledger.status()

        def book(cost: float) -> float:
            return ledger.reserve(cost).wait_seconds

    session = requests.Session()
    url = f"{spec['url']}/trackflow/v2/track/TRN{uuid.uuid4().hex[:10].upper()}"
    print("ready", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + spec["seconds"]
    statuses: dict[str, int] = {}
    while True:
        wait = book(1)
        if time.monotonic() + wait > deadline:
            break
        time.sleep(wait)
        answer = session.get(url, headers={"X-API-Key": "sandbox-free"}, params={"carrier": "ups"}, timeout=10)
        statuses[str(answer.status_code)] = statuses.get(str(answer.status_code), 0) + 1
        if answer.status_code == 429:  # what a hook does: back off as told (shared pause with the ledger)
            retry = float(answer.headers.get("Retry-After") or 1)
            if spec["store"]["kind"] == "local":
                limiter.pause(retry)
            else:
                ledger.pause(retry)
    print(json.dumps(statuses), flush=True)


def sandbox_run(spec: dict[str, Any], processes: int, seconds: float, window: float, url: str) -> dict[str, Any]:
    """
    ``processes`` processes on one key for ``seconds``; the sandbox's 200s and 429s.

    :param spec: the store (``{"kind": "local"}``: each process paces itself alone).
    """
    payload = json.dumps({"store": spec, "key": uuid.uuid4().hex[:16], "window": window, "seconds": seconds,
                          "url": url})
    procs = [subprocess.Popen([sys.executable, "-m", "bench.shared_quota", "--worker", payload], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    total: dict[str, int] = {}
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        for status, n in json.loads(out.strip().splitlines()[-1]).items():
            total[status] = total.get(status, 0) + n
    allowed = seconds / window * PER_WINDOW
    return {"ok": total.get("200", 0), "429": total.get("429", 0), "quota_used": total.get("200", 0) / allowed}


def main() -> None:
    """Run the measurements and print a table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--window", type=float, default=2.0)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return

    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "tests" / "quota"))
    from helpers.postgres import LocalPostgres, create_database, find_bindir
    from quota_support import LocalRedis

    from airflow_provider_parcels.sandbox import SandboxServer, SandboxSettings

    tmp = tempfile.mkdtemp(prefix="parcels-bench-quota-")
    specs: list[dict[str, Any]] = [{"kind": "memory"}, {"kind": "sqlite", "path": os.path.join(tmp, "quota.db")}]
    cleanup = []
    try:
        redis_server = LocalRedis().start()
        cleanup.append(redis_server.close)
        specs.append({"kind": "redis", "port": redis_server.port})
    except RuntimeError as exc:
        print(f"redis skipped: {exc}")
    bindir = find_bindir()
    if bindir is not None:
        pg = LocalPostgres(bindir)
        pg.start()
        cleanup.append(pg.stop)
        create_database(pg.dsn("postgres"), "bench")
        specs.append({"kind": "postgres", "dsn": pg.dsn("bench")})
    try:
        print("| store | ms per reserve: mean | p50 | p99 |\n|---|---:|---:|---:|")
        for spec in specs:
            o = overhead_ms(spec)
            print(f"| {spec['kind']} | {o['mean']:.3f} | {o['p50']:.3f} | {o['p99']:.3f} |")
        settings = SandboxSettings(window_seconds=args.window)
        with SandboxServer(settings=settings) as sandbox:
            print(f"\n{args.processes} processes, one TrackFlow free key (10 lookups / {args.window:g} s window), "
                  f"{args.seconds:g} s each\n\n| pacing | 200 | 429 | quota used |\n|---|---:|---:|---:|")
            for spec in [{"kind": "local"}, *specs[1:]]:
                sandbox.app.reset()
                time.sleep(args.window)
                r = sandbox_run(spec, args.processes, args.seconds, args.window, sandbox.url)
                label = "per-process limiter only" if spec["kind"] == "local" else f"ledger in {spec['kind']}"
                print(f"| {label} | {r['ok']} | {r['429']} | {r['quota_used']:.0%} |")
    finally:
        for close in reversed(cleanup):
            close()


if __name__ == "__main__":
    main()
