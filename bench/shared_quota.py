"""
The shared quota ledger (issue 17): its cost per reservation in each store, and 1, 2, 4 and 8
processes, each a real hook user (``hook.track``), on one API key against the sandbox.

``python -m bench.shared_quota [--quick] [--json OUT]``, or ``python -m bench --only shared_quota``
(writes ``bench/results/shared_quota.{json,md}``).

The sandbox enforces TrackFlow's ``starter`` plan (key ``sandbox-starter``: 60 lookups per sliding
window) with a shortened window (``WINDOW`` seconds), so the hooks are given that quota per minute
(``60 * 60 / WINDOW``) as ``requests_per_minute``: a known plan. Loads are skewed (one process
holds half of the parcels, the others share the rest), the stores are the embedded SQLite file and
Redis (a ``redis-server`` of its own). Two baselines at 4 processes show the issue's starting point:
each process pacing itself (a ledger file per process, as the per-process limiter did) without and
with ``quota_share=0.25``. Starts its own ``redis-server`` and, for the overhead table, PostgreSQL
(``initdb`` from the PATH or ``/usr/lib/postgresql/*/bin``); a store that cannot be started is skipped.
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
PER_WINDOW = 60  # TrackFlow starter plan in the sandbox: 60 lookups per window
KEY = "sandbox-starter"
WINDOW = 10.0  # seconds: 2 % of it (the ledger margin) is 200 ms of scheduling jitter (1.2 s of a real minute)
CONN_ID = "parcels_bench_shared_key"


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


def hook_worker(spec: dict[str, Any]) -> None:
    """
    One process of a run: a hook on the shared key tracks its parcels (``hook.track``), then reports.

    :param spec: ``env`` (variables to set first), ``numbers``, ``hook_kwargs``.
    """
    os.environ.update(spec["env"])
    from airflow_provider_parcels.hooks import hook_class

    hook = hook_class("trackflow")(CONN_ID, **spec.get("hook_kwargs", {}))
    _ = hook.ledger  # read the connection and open the store before the start
    parcels = [{"carrier": "ups", "tracking_number": n} for n in spec["numbers"]]
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()
    results = hook.track(parcels)
    finished = time.time()
    stats = hook.stats.as_dict()
    hook.close()
    codes: dict[str, int] = {}
    for r in results:
        code = r.error.code if r.error else "ok"
        codes[code] = codes.get(code, 0) + 1
    print(json.dumps({"codes": codes, "started": started, "finished": finished, "requests": stats["requests"],
                      "ledger_ms": stats["ledger_ms"], "fallback": hook.ledger.using_fallback}), flush=True)


def loads(processes: int, total: int) -> list[int]:
    """A skewed split of ``total`` parcels: one process holds half (all of them when alone), the others the rest."""
    if processes == 1:
        return [total]
    rest = total - total // 2
    return [total // 2] + [rest // (processes - 1) + (1 if i < rest % (processes - 1) else 0)
                           for i in range(processes - 1)]


def hook_run(sandbox: Any, processes: int, total: int, window: float, store: dict[str, Any],
             quota_share: float | None = None) -> dict[str, Any]:
    """
    ``processes`` hook processes on one key; the sandbox's 200s and 429s, quota use, wall time, ledger cost.

    :param sandbox: the in-process ``SandboxServer`` (window already set).
    :param processes: how many processes.
    :param total: parcels in all (one lookup each).
    :param window: the sandbox's quota window, seconds.
    :param store: ``{"kind": "embedded"}``, ``{"kind": "redis", "conn": ...}`` or ``{"kind": "per-process"}``.
    :param quota_share: the per-process cap of the baseline.
    """
    rpm = PER_WINDOW * 60 / window
    extra: dict[str, Any] = {"requests_per_minute": rpm, "batch_size": 1}
    tmp = tempfile.mkdtemp(prefix="parcels-bench-ledger-")
    env = {"PARCELS_QUOTA_DB": os.path.join(tmp, "quota.db")}
    if store["kind"] == "redis":
        extra["quota_store"] = store["conn_id"]
        env[f"AIRFLOW_CONN_{store['conn_id'].upper()}"] = store["conn"]
    name, value = sandbox.conn_env("trackflow", key=KEY, conn_id=CONN_ID, **extra)
    env[name] = value
    tag = uuid.uuid4().hex[:6].upper()
    numbers = [f"TRN{tag}{i:06d}" for i in range(total)]
    specs, at = [], 0
    for i, n in enumerate(loads(processes, total)):
        own = dict(env)
        if store["kind"] == "per-process":  # today's pacing: each process counts alone
            own["PARCELS_QUOTA_DB"] = os.path.join(tmp, f"quota-{i}.db")
        specs.append({"env": own, "numbers": numbers[at:at + n],
                      "hook_kwargs": {"quota_share": quota_share} if quota_share else {}})
        at += n
    sandbox.app.reset()
    time.sleep(window)  # an empty sliding window
    procs = [subprocess.Popen([sys.executable, "-m", "bench.shared_quota", "--hook-worker", json.dumps(spec)],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **spec["env"]}) for spec in specs]
    for proc in procs:
        line = proc.stdout.readline().strip()
        assert line == "ready", f"a worker did not start: {line!r}"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=total / rpm * 60 * 6 + 300)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    # from the first process's start to the last one's last answer (not counting interpreter exits)
    wall = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    stats = sandbox.stats()["trackflow"]
    ok = stats["status_counts"].get("200", 0)
    ideal = total / PER_WINDOW * window  # the plan's pace, nothing left idle
    per_request = sorted(r["ledger_ms"] / r["requests"] for r in reports if r["requests"])
    errors: dict[str, int] = {}
    for r in reports:
        for code, n in r["codes"].items():
            if code != "ok":
                errors[code] = errors.get(code, 0) + n
    return {
        "store": store["kind"], "processes": processes, "loads": loads(processes, total),
        "quota_share": quota_share, "parcels": total, "requests": stats["requests"], "ok": ok,
        "rate_limited": stats["rate_limited"], "errors": errors, "wall_seconds": round(wall, 2),
        "ideal_seconds": round(ideal, 2), "quota_use": round(ok / (wall / window * PER_WINDOW), 3),
        "wall_vs_ideal": round(wall / ideal, 3),
        "ledger_ms_per_request": round(statistics.median(per_request), 3) if per_request else None,
        "fallback": any(r["fallback"] for r in reports),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """
    The section: the store's cost per reservation, then the hook runs (quick: fewer, shorter).

    :param quick: 1 and 4 processes, 2 windows of parcels, embedded store and Redis; no baselines.
    """
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "tests" / "quota"))
    from helpers.postgres import LocalPostgres, create_database, find_bindir
    from quota_support import LocalRedis

    from airflow_provider_parcels.sandbox import SandboxServer, SandboxSettings

    window = 4.0 if quick else WINDOW
    total = PER_WINDOW * (2 if quick else 3)
    counts = (1, 4) if quick else (1, 2, 4, 8)
    tmp = tempfile.mkdtemp(prefix="parcels-bench-quota-")
    specs: list[dict[str, Any]] = [{"kind": "memory"}, {"kind": "sqlite", "path": os.path.join(tmp, "quota.db")}]
    stores: list[dict[str, Any]] = [{"kind": "embedded"}]
    cleanup = []
    try:
        redis_server = LocalRedis().start()
        cleanup.append(redis_server.close)
        specs.append({"kind": "redis", "port": redis_server.port})
        stores.append({"kind": "redis", "conn_id": "parcels_bench_quota_redis",
                       "conn": json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": redis_server.port,
                                           "extra": {"db": 0}})})
    except RuntimeError as exc:
        print(f"redis skipped: {exc}", file=sys.stderr)
    bindir = None if quick else find_bindir()
    if bindir is not None:
        pg = LocalPostgres(bindir)
        pg.start()
        cleanup.append(pg.stop)
        create_database(pg.dsn("postgres"), "bench")
        specs.append({"kind": "postgres", "dsn": pg.dsn("bench")})
    try:
        overhead = {spec["kind"]: overhead_ms(spec, 500 if quick else 2000) for spec in specs}
        rows = []
        with SandboxServer(settings=SandboxSettings(window_seconds=window)) as sandbox:
            for store in stores:
                for n in counts:
                    rows.append(hook_run(sandbox, n, total, window, store))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if not quick:
                for share in (None, 0.25):
                    rows.append(hook_run(sandbox, 4, total, window, {"kind": "per-process"}, share))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:
        for close in reversed(cleanup):
            close()
    return {"api": "trackflow", "key": KEY, "per_window": PER_WINDOW, "window_seconds": window,
            "quota_per_min": PER_WINDOW * 60 / window, "parcels": total, "overhead_ms": overhead, "rows": rows}


def markdown(result: dict[str, Any]) -> list[str]:
    """The section's tables."""
    lines = [
        f"{result['parcels']} parcels (one lookup each) on one TrackFlow `starter` key: the sandbox enforces "
        f"{result['per_window']} lookups per sliding {result['window_seconds']:g} s window "
        f"({result['quota_per_min']:g}/min), the hooks know that quota. Loads skewed: one process holds half "
        "of the parcels. Quota use: lookups answered ÷ what the plan allows in the wall time; ideal: "
        "parcels at the plan's pace. Goals: 0 429s, quota use >= 0.95.",
        "",
        "| store | processes | loads | 200 | 429 | errors | quota use | wall s | ideal s | wall ÷ ideal "
        "| ledger ms/request (median) |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        store = r["store"] if r["store"] != "per-process" else (
            "per-process pacing" + (f", quota_share {r['quota_share']:g}" if r["quota_share"] else ""))
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
        ms = "-" if r["ledger_ms_per_request"] is None else f"{r['ledger_ms_per_request']:.3f}"
        lines.append(f"| {store} | {r['processes']} | {'/'.join(map(str, r['loads']))} | {r['ok']} | "
                     f"{r['rate_limited']} | {errors} | {r['quota_use']:.3f} | {r['wall_seconds']:.1f} | "
                     f"{r['ideal_seconds']:.1f} | {r['wall_vs_ideal']:.2f} | {ms} |")
    lines += ["", "One process, no waiting: milliseconds per `reserve()` (a store round trip).", "",
              "| store | mean | p50 | p99 |", "|---|---:|---:|---:|"]
    for kind, o in result["overhead_ms"].items():
        lines.append(f"| {kind} | {o['mean']:.3f} | {o['p50']:.3f} | {o['p99']:.3f} |")
    return lines


def main() -> None:
    """Run the section and print its tables (``--json OUT`` also writes the result)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--hook-worker")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.hook_worker:
        hook_worker(json.loads(args.hook_worker))
        return
    from bench.common import run_section

    run_section(run, markdown, args.quick, args.json)


if __name__ == "__main__":
    main()
