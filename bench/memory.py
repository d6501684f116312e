"""Figure 4: peak memory of streaming N parcels through ``TrackParcelsOperator`` into SQLite.

The sandbox runs in its own process (``python -m airflow_provider_parcels.sandbox``, no answer
time, TrackFlow key ``sandbox-enterprise``: no quota, batches of 50), so its memory is not
counted. Each size runs in a fresh Python process that builds a ``TrackParcelsOperator`` with a
generator of parcels and a SQLite warehouse connection and calls its ``execute`` (the operator
streams: ``hook.iter_track(source, chunk_size)`` then ``warehouse.load(chunk)`` per chunk); at
the end the process reports its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``).

    python -m bench.memory --child --parcels N --port PORT   (one measurement, prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, fmt

API = "trackflow"
PLAN = "enterprise"
CHUNK = 1000
GOAL = 1.2


def child(parcel_count: int, port: int, workdir: Path) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import resource

    from bench.common import bootstrap_airflow, parcels, set_connection

    bootstrap_airflow()
    from airflow_provider_parcels.operators.tracking import TrackParcelsOperator

    set_connection("bench_mem_api", {"conn_type": API, "host": f"http://127.0.0.1:{port}/{API}",
                                     "password": f"sandbox-{PLAN}", "extra": {"plan": PLAN}})
    set_connection("bench_mem_wh", {"conn_type": "sqlite", "host": str(workdir / "warehouse.db")})
    operator = TrackParcelsOperator(task_id="track", conn_id="bench_mem_api", parcels=parcels(parcel_count),
                                    warehouse_conn_id="bench_mem_wh", chunk_size=CHUNK)
    started = time.monotonic()
    summary = operator.execute(context={})  # type: ignore[arg-type]
    seconds = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "parcels": summary["parcels"],
        "errors": summary["errors"],
        "requests": summary["api"]["requests"],
        "rows": summary.get("rows", {}),
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


class SandboxProcess:
    """``python -m airflow_provider_parcels.sandbox --port 0`` in a child process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> SandboxProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_parcels.sandbox", "--port", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in self.proc.stdout:
            found = re.search(r"listening on http://[^:]+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                return self
            if time.monotonic() > deadline:
                break
        self.__exit__()
        raise RuntimeError("the sandbox process did not say where it listens")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure(parcel_count: int, port: int, timeout: float) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter; its JSON line."""
    with tempfile.TemporaryDirectory(prefix="parcels-bench-mem-") as workdir:
        command = [sys.executable, "-m", "bench.memory", "--child", "--parcels", str(parcel_count),
                   "--port", str(port), "--workdir", workdir]
        proc = subprocess.run(command, cwd=ROOT, text=True, capture_output=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"memory child for {parcel_count} parcels exited with {proc.returncode}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    if figures["parcels"] != parcel_count:
        raise RuntimeError(f"memory child tracked {figures['parcels']} of {parcel_count} parcels")
    return figures


def _one(count: int, out: dict[int, Any]) -> None:
    try:
        with SandboxProcess() as sandbox:
            out[count] = measure(count, sandbox.port, timeout=1500)
        print(f"  memory: {count:,} parcels: peak RSS {out[count]['peak_rss_mib']} MiB "
              f"in {out[count]['seconds']} s", flush=True)
    except BaseException as err:
        out[count] = {"crash": f"{type(err).__name__}: {err}"}


def run(quick: bool) -> dict[str, Any]:
    """Small and large run at the same time, each with its own sandbox process (peak RSS does not
    depend on what else runs; quick: 10,000 vs 100,000; full: 100,000 vs 1,000,000)."""
    small, large = (10_000, 100_000) if quick else (100_000, 1_000_000)
    out: dict[int, Any] = {}
    threads = [threading.Thread(target=_one, args=(count, out), daemon=True) for count in (small, large)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    crashed = {count: r["crash"] for count, r in out.items() if "crash" in r}
    if crashed:
        raise RuntimeError(f"memory runs crashed: {crashed}")
    runs = [out[small], out[large]]
    ratio = runs[1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    return {"api": API, "plan": PLAN, "chunk_size": CHUNK, "goal": GOAL, "runs": runs, "ratio": ratio}


def markdown(result: dict[str, Any]) -> list[str]:
    """Table lines for the report."""
    small, large = result["runs"]
    lines = [
        f"TrackParcelsOperator.execute, {result['api']} (batches of 50, no answer time, sandbox in "
        f"another process), chunks of {result['chunk_size']}, SQLite warehouse. Goal: ratio ≤ {GOAL}.",
        "",
        "| parcels | requests | parcel rows | event rows | seconds | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run_ in (small, large):
        rows = run_.get("rows") or {}
        parcel_rows = rows.get("inserted")
        event_rows = rows.get("events_inserted")
        lines.append(f"| {run_['parcels']:,} | {run_['requests']:,} | {fmt(parcel_rows, 0)} | "
                     f"{fmt(event_rows, 0)} | {run_['seconds']:.1f} | {run_['peak_rss_mib']:.1f} |")
    lines += ["", f"Peak RSS ratio, {large['parcels']:,} ÷ {small['parcels']:,} parcels: "
                  f"**{result['ratio']:.2f}** (goal ≤ {GOAL})."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help="measure once in this process and print JSON")
    parser.add_argument("--parcels", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=0, help="port of a running sandbox")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="parcels-bench-mem-"))
        print(json.dumps(child(args.parcels, args.port, workdir)))
        return 0
    from bench.common import bootstrap_airflow

    bootstrap_airflow()
    print("\n".join(markdown(run(args.quick))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
