"""Requests per second of the parcels sandbox, per API, over keep-alive connections.

Starts ``python -m airflow_provider_parcels.sandbox --port 0`` as a subprocess (or in-process
with ``--in-process``), measures its start-up time (process start to the first answer), then
for each API fires its tracking call (one parcel, no latency, no faults) from several client
processes, each with one keep-alive ``requests.Session``, for ``--duration`` seconds.

    python bench/sandbox_rps.py [--duration 5] [--clients 4] [--in-process]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import requests

CALLS = {
    "whereparcel": ("POST", "/v2/track", {"Authorization": "Bearer sandbox-key:sandbox-secret"},
                    {"json": {"trackingItems": [{"carrier": "kr.cj", "trackingNumber": "DLV0001"}]}}),
    "trackingmore": ("GET", "/trackings/get", {"Trackingmore-Api-Key": "sandbox-key"},
                     {"params": {"numbers": "DLV0001"}}),
    "trackflow": ("GET", "/v2/track/DLV0001", {"X-API-Key": "sandbox-key"}, {}),
    "parcellab": ("GET", "/v4/track/orders/PL-DEMO-0001/", {"Authorization": "Bearer sandbox-key"}, {}),
    "shipengine": ("GET", "/v1/tracking", {"API-Key": "sandbox-key"},
                   {"params": {"carrier_code": "ups", "tracking_number": "DLV0001"}}),
}
PREFIXES = {"whereparcel": "/whereparcel", "trackingmore": "/trackingmore/v2", "trackflow": "/trackflow",
            "parcellab": "/parcellab", "shipengine": "/shipengine"}


def _client(url: str, api: str, start_at: float, stop_at: float) -> tuple[int, int]:
    """One client: call the API in a loop between start_at and stop_at; (ok, failed)."""
    method, path, headers, kwargs = CALLS[api]
    ok = failed = 0
    with requests.Session() as session:
        session.request(method, url + PREFIXES[api] + path, headers=headers, timeout=10, **kwargs)  # connect
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < stop_at:
            response = session.request(method, url + PREFIXES[api] + path, headers=headers, timeout=10, **kwargs)
            if response.status_code == 200:
                ok += 1
            else:
                failed += 1
    return ok, failed


def _start_subprocess() -> tuple[subprocess.Popen, str, float, float]:
    begin = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "airflow_provider_parcels.sandbox", "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    first = process.stdout.readline()
    printed = time.perf_counter() - begin
    url = first.split()[-1]
    while True:
        try:
            requests.get(url + "/_sandbox/health", timeout=1).raise_for_status()
            break
        except requests.RequestException:
            time.sleep(0.01)
    return process, url, printed, time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per API (default 5)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--in-process", action="store_true", help="run the server in this process")
    args = parser.parse_args()

    process = server = None
    if args.in_process:
        from airflow_provider_parcels.sandbox import SandboxServer

        begin = time.perf_counter()
        server = SandboxServer(port=0).start()
        url = server.url
        requests.get(url + "/_sandbox/health", timeout=5).raise_for_status()
        print(f"start-up (in-process, to first answer): {time.perf_counter() - begin:.3f} s")
    else:
        process, url, printed, answered = _start_subprocess()
        print(f"start-up (subprocess): URLs printed after {printed:.3f} s, first answer after {answered:.3f} s")
    print(f"{'api':<14}{'requests/s':>12}{'ok':>10}{'failed':>8}   ({args.clients} clients, {args.duration:g} s each)")
    rates = {}
    try:
        with ProcessPoolExecutor(args.clients) as pool:
            for api in CALLS:
                start_at = time.time() + 0.5
                stop_at = start_at + args.duration
                futures = [pool.submit(_client, url, api, start_at, stop_at) for _ in range(args.clients)]
                results = [future.result() for future in futures]
                ok, failed = sum(r[0] for r in results), sum(r[1] for r in results)
                rates[api] = ok / args.duration
                print(f"{api:<14}{rates[api]:>12.0f}{ok:>10}{failed:>8}", flush=True)
    finally:
        if server is not None:
            server.stop()
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
    print(f"slowest API: {min(rates.values()):.0f} requests/s (goal >= 500)")


if __name__ == "__main__":
    main()
