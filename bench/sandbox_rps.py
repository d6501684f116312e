"""Requests per second of the parcels sandbox, per API, over keep-alive connections.

Starts ``python -m airflow_provider_parcels.sandbox --port 0`` as a subprocess (or in-process
with ``--in-process``), measures its start-up time (process start to the first answer), then
for each API fires its tracking call (one parcel, no latency, no faults) from ``--clients``
client processes, each holding one keep-alive connection (``http.client`` by default, a
``requests.Session`` with ``--client requests``), for ``--duration`` seconds. With a
subprocess server on Linux it also reports the server's CPU time per request, a figure that
depends less on what else the machine is running.

    python bench/sandbox_rps.py [--duration 5] [--clients 4] [--client http|requests] [--in-process]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from urllib.parse import urlsplit

CALLS = {
    "whereparcel": ("POST", "/whereparcel/v2/track", {"Authorization": "Bearer sandbox-key:sandbox-secret"},
                    {"trackingItems": [{"carrier": "kr.cj", "trackingNumber": "DLV0001"}]}),
    "trackingmore": ("GET", "/trackingmore/v2/trackings/get?numbers=DLV0001",
                     {"Trackingmore-Api-Key": "sandbox-key"}, None),
    "trackflow": ("GET", "/trackflow/v2/track/DLV0001", {"X-API-Key": "sandbox-key"}, None),
    "parcellab": ("GET", "/parcellab/v4/track/orders/PL-DEMO-0001/", {"Authorization": "Bearer sandbox-key"}, None),
    "shipengine": ("GET", "/shipengine/v1/tracking?carrier_code=ups&tracking_number=DLV0001",
                   {"API-Key": "sandbox-key"}, None),
}


def _caller(url: str, api: str, kind: str):
    method, path, headers, body = CALLS[api]
    if kind == "requests":
        import requests

        session = requests.Session()
        return lambda: session.request(method, url + path, headers=headers, json=body, timeout=10).status_code
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    payload = json.dumps(body).encode() if body is not None else None
    headers = {**headers, "Content-Type": "application/json"} if payload else headers

    def call() -> int:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status

    return call


def _client(url: str, api: str, kind: str, start_at: float, stop_at: float) -> tuple[int, int]:
    """One client: call the API in a loop between start_at and stop_at; returns (ok, failed)."""
    call = _caller(url, api, kind)
    call()  # connect
    ok = failed = 0
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < stop_at:
        if call() == 200:
            ok += 1
        else:
            failed += 1
    return ok, failed


def _wait_ready(url: str) -> None:
    parts = urlsplit(url)
    while True:
        try:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=1)
            connection.request("GET", "/_sandbox/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.01)


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per API (default 5)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--client", choices=("http", "requests"), default="http", help="client library")
    parser.add_argument("--in-process", action="store_true", help="run the server in this process")
    args = parser.parse_args()

    process = server = None
    begin = time.perf_counter()
    if args.in_process:
        from airflow_provider_parcels.sandbox import SandboxServer

        server = SandboxServer(port=0).start()
        url = server.url
        _wait_ready(url)
        print(f"start-up (in-process, to the first answer): {time.perf_counter() - begin:.3f} s")
    else:
        process = subprocess.Popen([sys.executable, "-m", "airflow_provider_parcels.sandbox", "--port", "0"],
                                   stdout=subprocess.PIPE, text=True)
        url = process.stdout.readline().split()[-1]
        printed = time.perf_counter() - begin
        _wait_ready(url)
        print(f"start-up (subprocess): URLs printed after {printed:.3f} s, "
              f"first answer after {time.perf_counter() - begin:.3f} s")
    print(f"{args.clients} {args.client} clients with keep-alive, {args.duration:g} s per API, "
          f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'api':<14}{'requests/s':>12}{'ok':>9}{'failed':>8}{'server CPU/request':>21}")
    rates = {}
    try:
        with ProcessPoolExecutor(args.clients) as pool:
            for api in CALLS:
                start_at = time.time() + 0.5
                stop_at = start_at + args.duration
                futures = [pool.submit(_client, url, api, args.client, start_at, stop_at)
                           for _ in range(args.clients)]
                while time.time() < start_at:
                    time.sleep(0.001)
                cpu_before = _cpu_seconds(process.pid) if process else None
                results = [future.result() for future in futures]
                cpu_after = _cpu_seconds(process.pid) if process else None
                ok, failed = sum(r[0] for r in results), sum(r[1] for r in results)
                rates[api] = ok / args.duration
                cpu = "" if cpu_before is None or cpu_after is None or not ok else \
                    f"{(cpu_after - cpu_before) / ok * 1e6:.0f} us"
                print(f"{api:<14}{rates[api]:>12.0f}{ok:>9}{failed:>8}{cpu:>21}", flush=True)
    finally:
        if server is not None:
            server.stop()
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
    print(f"slowest API: {min(rates.values()):.0f} requests/s (goal >= 500)")


if __name__ == "__main__":
    main()
