"""Push instead of poll: ``python -m bench.webhooks [--quick] [--out FILE]``.

1. **Quota over a 5-day transit.** Parcels whose carrier scans come 3 to 20 hours apart (the
   sandbox's pattern) for 5 days, delivered at the end. Hourly polling (``OPEN_PARCELS``) against
   webhooks with the hybrid safety net (subscribe once, ``OPEN_PARCELS_NOT_PUSHED`` every hour with
   ``push_safety_net_hours`` N, unsubscribe at delivery), on a virtual clock through the real
   selection code (``open_parcels_not_pushed``, ``parcel_subscriptions``, the SQLite warehouse).
   Billable: one lookup per parcel tracked (TrackFlow counts each parcel of a batch), one call per
   registration and per ``DELETE``.
2. **Receiver throughput.** The receiver as its own process (``uvicorn
   airflow_provider_parcels.webhooks.app:app``, one worker, SQLite warehouse) and the sandbox pushing
   signed TrackFlow webhooks to it over loopback, 64 at once, with 10 % redelivery and 10 %
   duplicates; deliveries answered 2xx per second, and parcels lost (warehouse status not the
   pushed one; event rows other than one per event).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import RESULTS, bootstrap_airflow, machine, set_connection

HOUR = 3600.0
TRANSIT_HOURS = 120


def _scan_hours(rng: random.Random) -> list[float]:
    """Scan times (hours from the start) of one parcel: 3..20 h apart, the last (delivered) at 5 days."""
    hours, at = [], rng.uniform(0, 6)
    while at < TRANSIT_HOURS - 3:
        hours.append(at)
        at += rng.uniform(3, 20)
    hours.append(TRANSIT_HOURS - rng.uniform(0, 2))
    return hours


def quota(parcel_count: int, silence_hours: tuple[float, ...], workdir: Path) -> dict[str, Any]:
    """Billable calls per parcel: hourly polling vs webhooks with the safety net."""
    from airflow_provider_parcels.models import ParcelStatus, TrackingResult
    from airflow_provider_parcels.warehouse import ParcelWarehouse
    from airflow_provider_parcels.webhooks.hybrid import open_parcels_not_pushed
    from airflow_provider_parcels.webhooks.subscriptions import SubscriptionStore

    rng = random.Random(18)
    scans = {f"TRN{i:07d}": _scan_hours(rng) for i in range(parcel_count)}
    t0 = datetime(2026, 6, 1, tzinfo=timezone.utc).timestamp()

    def state(number: str, hour: float) -> TrackingResult:
        done = [h for h in scans[number] if h <= hour]
        delivered = len(done) == len(scans[number])
        status = (ParcelStatus.DELIVERED if delivered else ParcelStatus.IN_TRANSIT if done
                  else ParcelStatus.INFO_RECEIVED)
        return TrackingResult(provider="trackflow", carrier="dhl", tracking_number=number, status=status,
                              fetched_at=datetime.fromtimestamp(t0 + hour * HOUR, tz=timezone.utc))

    def warehouse(name: str) -> ParcelWarehouse:
        set_connection(name, {"conn_type": "sqlite", "host": str(workdir / f"{name}.db")})
        wh = ParcelWarehouse(name)
        wh.load([state(n, 0) for n in scans])
        return wh

    wh = warehouse("bench_poll")
    polled = 0
    for hour in range(1, TRANSIT_HOURS + 3):
        open_now = [p["tracking_number"] for p in wh.open_parcels(provider="trackflow")]
        polled += len(open_now)
        wh.load([state(n, hour) for n in open_now])
    out: dict[str, Any] = {"parcels": parcel_count, "transit_hours": TRANSIT_HOURS,
                           "scans_per_parcel": round(sum(map(len, scans.values())) / parcel_count, 2),
                           "hourly_polling_per_parcel": round(polled / parcel_count, 2), "hybrid": {}}
    for silence in silence_hours:
        wh = warehouse(f"bench_push_{int(silence)}")
        store = SubscriptionStore(wh)
        for number in scans:
            store.record("trackflow", "bench", "dhl", number, f"wh_{number}", "https://x/parcels/webhooks/bench",
                         ("all",), at=t0)
        billable = {"register": parcel_count, "safety_net_polls": 0, "unsubscribe": 0}
        pushes = sorted((h, n) for n, hours in scans.items() for h in hours)
        ended: set[str] = set()
        index = 0
        for hour in range(1, TRANSIT_HOURS + 3):
            now = t0 + hour * HOUR
            batch = []
            while index < len(pushes) and pushes[index][0] <= hour:  # the receiver's commits in this hour
                batch.append(state(pushes[index][1], pushes[index][0]))
                index += 1
            if batch:
                wh.load(batch)
                for result in batch:
                    store.touch([result], at=result.fetched_at.timestamp())
            polled_now = [p["tracking_number"] for p in open_parcels_not_pushed(wh, "trackflow", silence * HOUR,
                                                                                 now=now)]
            billable["safety_net_polls"] += len(polled_now)
            wh.load([state(n, hour) for n in polled_now])
            for number, status in store.parcel_statuses("trackflow").items():  # unsubscribe at delivery
                if status == "delivered" and number[1] not in ended:
                    store.end("trackflow", "dhl", number[1])
                    ended.add(number[1])
                    billable["unsubscribe"] += 1
        per_parcel = sum(billable.values()) / parcel_count
        out["hybrid"][f"{silence:g}h"] = {
            **{k: round(v / parcel_count, 2) for k, v in billable.items()},
            "total_per_parcel": round(per_parcel, 2),
            "fewer_than_polling_x": round(out["hourly_polling_per_parcel"] / per_parcel, 1),
        }
    return out


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children (uvicorn's workers)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def throughput(parcel_count: int, workdir: Path, redeliver: float = 0.1, duplicate: float = 0.1,
               concurrency: int = 64, workers: int = 1) -> dict[str, Any]:
    """Signed webhooks per second the receiver (its own process) accepts, and what is lost."""
    import requests

    from airflow_provider_parcels.hooks.trackflow import TrackFlowHook
    from airflow_provider_parcels.operators.subscriptions import subscribe, subscription_store, webhook_url
    from airflow_provider_parcels.sandbox import SandboxServer
    from airflow_provider_parcels.sandbox.push import DEFAULT_WEBHOOK_SECRET
    from airflow_provider_parcels.warehouse import ParcelWarehouse

    sandbox = SandboxServer().start()
    port = _free_port()
    wh_id = set_connection("bench_wh_push", {"conn_type": "sqlite", "host": str(workdir / "push.db")})
    conn = sandbox.connection("trackflow", webhook_secret=DEFAULT_WEBHOOK_SECRET, warehouse_conn_id=wh_id)
    set_connection("bench_tf_push", conn)
    log = open(workdir / "receiver.log", "w")  # noqa: SIM115
    receiver = subprocess.Popen([sys.executable, "-m", "uvicorn", "airflow_provider_parcels.webhooks.app:app",
                                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                                 "--no-access-log", "--workers", str(workers)],
                                env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or receiver.poll() is not None:
                    raise RuntimeError(f"receiver did not start: {(workdir / 'receiver.log').read_text()}") from None
                time.sleep(0.2)
        hook = TrackFlowHook("bench_tf_push")
        numbers = [f"TRN8{i:07d}" for i in range(parcel_count)]
        store = subscription_store(hook)
        started = time.monotonic()
        counts = subscribe(hook, store, [{"carrier": "dhl", "tracking_number": n} for n in numbers],
                           webhook_url(f"http://127.0.0.1:{port}", "bench_tf_push"))
        register_s = time.monotonic() - started
        pusher = sandbox.app.pusher
        pusher.configure(redeliver=redeliver, duplicate=duplicate, seed=7, concurrency=concurrency)
        warm = numbers[0]
        pusher.scan(warm, "out_for_delivery")  # first delivery opens the warehouse and the connection
        pusher.wait_idle(30)
        first = len(pusher.log)
        cpu_before = _cpu_seconds(receiver.pid)
        started = time.monotonic()
        for number in numbers:
            pusher.scan(number, "exception")
        idle = pusher.wait_idle(600)
        elapsed = time.monotonic() - started
        cpu = _cpu_seconds(receiver.pid) - cpu_before
        log_rows = pusher.log[first:]
        ok = [d for d in log_rows if d.http_status is not None and 200 <= d.http_status < 300]
        wh = ParcelWarehouse(wh_id)
        statuses = wh.status_counts()
        events = len(wh.dump("parcel_tracking_events"))
        expected_events = sum(len(r.events) for r in hook.track([{"carrier": "dhl", "tracking_number": n}
                                                                 for n in numbers]))
        return {
            "parcels": parcel_count, "concurrency": concurrency, "workers": workers, "registered": counts["subscribed"],
            "register_seconds": round(register_s, 2),
            "deliveries_sent": len(log_rows), "answered_2xx": len(ok),
            "redeliveries": sum(d.kind == "redelivery" for d in log_rows),
            "duplicates": sum(d.kind == "duplicate" for d in log_rows),
            "retries_after_no_2xx": sum(d.kind == "retry" for d in log_rows),
            "seconds": round(elapsed, 2), "accepted_per_second": round(len(ok) / elapsed, 1),
            # what the receiver itself spends (its processes' CPU time), apart from the pusher sharing the cores
            "receiver_cpu_ms_per_delivery": round(cpu * 1000 / len(ok), 2),
            "receiver_capacity_per_core_per_second": round(len(ok) / cpu, 1) if cpu else None,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "all_delivered": idle, "warehouse_statuses": statuses,
            "lost": parcel_count - statuses.get("exception", 0),
            "event_rows": events, "event_rows_expected": expected_events,
        }
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
        log.close()
        sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer parcels")
    parser.add_argument("--out", type=Path, default=RESULTS / "webhooks.json")
    args = parser.parse_args()
    bootstrap_airflow()
    workdir = Path(tempfile.mkdtemp(prefix="parcels-bench-webhooks-"))
    result = {
        "machine": machine(),
        "quota": quota(50 if args.quick else 200, (6.0, 12.0, 24.0), workdir),
        "receiver": throughput(500 if args.quick else 3000, workdir),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
