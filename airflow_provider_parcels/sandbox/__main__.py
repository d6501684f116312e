"""``python -m airflow_provider_parcels.sandbox``: run the sandbox until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .apis import API_NAMES
from .server import SandboxServer
from .settings import RATELIMIT_STYLES, SandboxSettings


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_parcels.sandbox",
                                     description="Serve the five parcel-tracking APIs locally.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--latency-per-item", type=float, default=0.0, metavar="S",
                        help="seconds slept per tracked item before answering")
    parser.add_argument("--rpm", type=int, default=None, metavar="N",
                        help="per-minute quota for keys that name no plan (default: none)")
    parser.add_argument("--faults", default="", metavar="SPEC",
                        help='e.g. "503=0.1,timeout=0.05,badjson=0.02,reset=0.01,429=0.05"')
    parser.add_argument("--seed", type=int, default=None, metavar="N", help="seed of the fault generator")
    parser.add_argument("--ratelimit-style", default="retry-after", choices=RATELIMIT_STYLES,
                        help="how refusals say when to retry (default retry-after)")
    parser.add_argument("--timeout-delay", type=float, default=5.0, metavar="S",
                        help="seconds a timeout fault sleeps (default 5)")
    parser.add_argument("--window-seconds", type=float, default=60.0, metavar="S",
                        help="length of the quota window (default 60: a per-minute quota)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start the server, print where it is, wait for a signal."""
    args = build_parser().parse_args(argv)
    try:
        settings = SandboxSettings(rpm=args.rpm, latency_per_item=args.latency_per_item, faults=args.faults,
                                   seed=args.seed, ratelimit_style=args.ratelimit_style,
                                   timeout_delay=args.timeout_delay,
                                   window_seconds=args.window_seconds)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    server = SandboxServer(args.host, args.port, settings)
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    lines = [f"Parcels sandbox listening on {server.url}"]
    lines += [f"  {api:<13} {server.base_url(api)}" for api in API_NAMES]
    lines.append("Airflow connections:")
    lines += [f"export {name}='{value}'" for name, value in (server.conn_env(api) for api in API_NAMES)]
    lines.append(f"Control: {server.url}/_sandbox/stats | POST /_sandbox/reset | POST /_sandbox/config")
    print("\n".join(lines), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    print("Parcels sandbox stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
