"""
Benchmark: what the deferrable ``ParcelStatusSensor`` costs against poke mode.

1,000 parcels that the sandbox reports in transit for 3 lookups and delivered from the 4th
(``POLLD3-000001`` ...), tracked through one API with batches larger than one (TrackFlow by
default: batches of 50). For each mode the sandbox's stats are reset and the script prints

- requests and items the API received, and 429s;
- worker time: seconds in ``execute`` (+ ``execute_complete`` when deferred), i.e. how long a
  worker slot is held;
- wall time from the start of ``execute`` to the result.

The deferred case runs as Airflow would, in this one process: ``execute`` does the first
check and raises ``TaskDeferred``; the trigger is rebuilt from its ``serialize()`` output and
its ``run()`` is driven on an asyncio loop (the triggerer's part, not worker time); then a new
sensor instance gets the event in ``execute_complete``. Poke mode is ``execute`` from start to end.

The plan sets quota and batch size in the sandbox and the hook alike (the key
``sandbox-<plan>``): ``enterprise`` (no quota, 50 a batch; the default, about 30 s in all) or
``growth`` (300 parcel lookups a minute, 50 a batch: 4,000 lookups take about 13.5 minutes per
mode, the first check alone about 3.2 minutes).

    python bench/sensor_deferral.py [--api trackflow] [--plan enterprise] [--parcels 1000]
                                    [--poll-interval 5] [--modes deferred,poke] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if "AIRFLOW_HOME" not in os.environ:  # keep the benchmark's Airflow away from ~/airflow
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="parcels-bench-airflow-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

CONN_ID = "parcels_bench_sensor"


class _TaskInstance:
    """The little of a task instance the sensor touches outside a DAG run."""

    task_id = "wait"
    try_number = 1

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def _sensor(parcels: list[dict], args: argparse.Namespace, deferrable: bool):
    from airflow_provider_parcels.sensors.parcel_status import ParcelStatusSensor

    return ParcelStatusSensor(task_id="wait", conn_id=CONN_ID, parcels=parcels, deferrable=deferrable,
                              poke_interval=args.poll_interval, timeout=args.timeout)


async def _first_event(trigger) -> Any:
    async for event in trigger.run():
        return event
    raise RuntimeError("the trigger ended without an event")


def run_deferred(parcels: list[dict], args: argparse.Namespace) -> dict[str, Any]:
    from airflow.sdk.exceptions import TaskDeferred
    from airflow.sdk.module_loading import import_string

    context = {"ti": _TaskInstance()}
    started = time.perf_counter()
    try:
        result = _sensor(parcels, args, deferrable=True).execute(context)
        deferred = None
    except TaskDeferred as defer:
        deferred = defer
    first_check = time.perf_counter() - started
    triggerer = completion = 0.0
    open_at_defer = 0
    if deferred is not None:
        classpath, kwargs = deferred.trigger.serialize()
        open_at_defer = len(kwargs["parcels"])
        trigger = import_string(classpath)(**json.loads(json.dumps(kwargs)))
        mark = time.perf_counter()
        event = asyncio.run(_first_event(trigger))
        triggerer = time.perf_counter() - mark
        mark = time.perf_counter()
        result = _sensor(parcels, args, deferrable=True).execute_complete(context, event.payload)
        completion = time.perf_counter() - mark
    wall = time.perf_counter() - started
    return {"result": result, "worker_seconds": first_check + completion, "first_check_seconds": first_check,
            "triggerer_seconds": triggerer, "wall_seconds": wall, "open_at_defer": open_at_defer}


def run_poke(parcels: list[dict], args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    result = _sensor(parcels, args, deferrable=False).execute({"ti": _TaskInstance()})
    wall = time.perf_counter() - started
    return {"result": result, "worker_seconds": wall, "wall_seconds": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default="trackflow",
                        choices=["whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine"])
    parser.add_argument("--plan", default="enterprise", help="the API's plan (sandbox key sandbox-<plan>)")
    parser.add_argument("--parcels", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=5.0, help="poke/poll interval in seconds")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--modes", default="deferred,poke")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--verbose", action="store_true", help="show the sensor's and trigger's log lines")
    args = parser.parse_args(argv)
    if not args.verbose and "airflow" not in sys.modules:
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)

    from airflow_provider_parcels.sandbox import SandboxServer

    parcels = [{"carrier": "dhl", "tracking_number": f"POLLD3-{i:06d}"} for i in range(1, args.parcels + 1)]
    runners = {"deferred": run_deferred, "poke": run_poke}
    rows = []
    with SandboxServer() as sandbox:
        name, value = sandbox.conn_env(args.api, key=f"sandbox-{args.plan}", conn_id=CONN_ID, plan=args.plan)
        os.environ[name] = value
        for mode in args.modes.split(","):
            sandbox.reset()
            figures = runners[mode](parcels, args)
            stats = sandbox.stats()[args.api]
            result = figures.pop("result")
            delivered = sum(1 for r in result if r["status"] == "delivered")
            rows.append({"mode": mode, "requests": stats["requests"], "items": stats["items"],
                         "rate_limited": stats["rate_limited"], "delivered": delivered, **figures})

    print(f"\n{args.parcels} POLLD3 parcels, {args.api} plan {args.plan}, poll interval {args.poll_interval} s\n")
    print("| mode | requests | items | 429s | worker s | wall s | worker share | first check s | triggerer s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        share = row["worker_seconds"] / row["wall_seconds"] if row["wall_seconds"] else 0.0
        print(f"| {row['mode']} | {row['requests']} | {row['items']} | {row['rate_limited']} | "
              f"{row['worker_seconds']:.2f} | {row['wall_seconds']:.2f} | {share:.1%} | "
              f"{row.get('first_check_seconds', row['worker_seconds']):.2f} | "
              f"{row.get('triggerer_seconds', 0.0):.2f} |")
    for row in rows:
        if row["delivered"] != args.parcels:
            print(f"WARNING: {row['mode']}: only {row['delivered']} of {args.parcels} delivered", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
