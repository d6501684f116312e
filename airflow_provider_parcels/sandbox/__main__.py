"""``python -m airflow_provider_parcels.sandbox``: run the sandbox until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .apis import API_NAMES
from .app import CONTROL_TOKEN_ENV, CONTROL_TOKEN_HEADER
from .server import SandboxServer
from .settings import RATELIMIT_STYLES, SandboxSettings

#: The connection ids the example DAGs' params name by default.
EXAMPLE_CONN_PREFIX = "parcels_demo_"
EXAMPLE_WAREHOUSE_CONN_ID = f"{EXAMPLE_CONN_PREFIX}warehouse"
DEFAULT_WAREHOUSE_DB = "parcels_demo_warehouse.db"
#: The sandbox's keys have no quota unless one is asked for; without this the clients would pace
#: themselves to each API's default plan (e.g. ShipEngine's 200 calls a minute).
EXAMPLE_REQUESTS_PER_MINUTE = 6000


def example_connections(server: SandboxServer, warehouse_db: Path) -> dict[str, dict[str, Any]]:
    """
    The connections of the example DAGs, by id: ``parcels_demo_<api>`` for the five APIs of
    ``server`` (extra ``requests_per_minute``: the sandbox's ``--rpm``, else
    :data:`EXAMPLE_REQUESTS_PER_MINUTE`) and ``parcels_demo_warehouse`` (SQLite at
    ``warehouse_db``), in the form ``airflow connections import`` reads (``extra`` as JSON text).

    :param server: the running sandbox.
    :param warehouse_db: the SQLite file of the warehouse (created on first use).
    """
    connections: dict[str, dict[str, Any]] = {}
    rpm = server.settings.rpm or EXAMPLE_REQUESTS_PER_MINUTE
    for api in API_NAMES:
        conn = server.connection(api, requests_per_minute=rpm)
        conn["extra"] = json.dumps(conn["extra"])
        connections[f"{EXAMPLE_CONN_PREFIX}{api}"] = conn
    connections[EXAMPLE_WAREHOUSE_CONN_ID] = {"conn_type": "sqlite", "host": str(warehouse_db)}
    return connections


def env_line(conn_id: str, conn: dict[str, Any]) -> str:
    """``export AIRFLOW_CONN_<ID>='<json>'`` for one connection (extra as a JSON object)."""
    value = dict(conn)
    if isinstance(value.get("extra"), str):
        value["extra"] = json.loads(value["extra"])
    if not value.get("extra"):
        value.pop("extra", None)
    return f"export AIRFLOW_CONN_{conn_id.upper()}='{json.dumps(value)}'"


def banner(server: SandboxServer, connections: dict[str, dict[str, Any]], written: Path | None) -> list[str]:
    """What the sandbox prints when it is ready: URLs, the example DAGs' connections, control."""
    lines = [f"Parcels sandbox listening on {server.url}"]
    lines += [f"  {api:<13} {server.base_url(api)}" for api in API_NAMES]
    lines.append(f"Connections of the example DAGs ({EXAMPLE_CONN_PREFIX}*), as environment variables "
                 "(set them for every Airflow process):")
    lines += [env_line(conn_id, conn) for conn_id, conn in connections.items()]
    if written is not None:
        lines.append(f"Written to {written}: airflow connections import --overwrite {written}")
    else:
        lines.append("Or into Airflow's database: start with --connections-file FILE, then "
                     "airflow connections import --overwrite FILE")
    lines.append("A hook used without a conn_id reads <api>_default, e.g. AIRFLOW_CONN_SHIPENGINE_DEFAULT "
                 f"with the value of AIRFLOW_CONN_{EXAMPLE_CONN_PREFIX.upper()}SHIPENGINE.")
    lines.append(f"Control: {server.url}/_sandbox/stats | POST /_sandbox/reset | POST /_sandbox/config "
                 f"with header {CONTROL_TOKEN_HEADER}: {server.control_token} (set {CONTROL_TOKEN_ENV} to choose it)")
    return lines


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
    parser.add_argument("--connections-file", type=Path, default=None, metavar="FILE",
                        help="write the example DAGs' connections (parcels_demo_*) to FILE (JSON) for "
                             "`airflow connections import --overwrite FILE`")
    parser.add_argument("--warehouse-db", type=Path, default=Path(DEFAULT_WAREHOUSE_DB), metavar="PATH",
                        help=f"SQLite file of {EXAMPLE_WAREHOUSE_CONN_ID} (default ./{DEFAULT_WAREHOUSE_DB})")
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
    connections = example_connections(server, args.warehouse_db.expanduser().resolve())
    written = None
    if args.connections_file is not None:
        written = args.connections_file.expanduser().resolve()
        try:
            written.write_text(json.dumps(connections, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            server.stop()
            print(f"error: cannot write {written}: {exc}", file=sys.stderr)
            return 1
    print("\n".join(banner(server, connections, written)), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    print("Parcels sandbox stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
