"""Figure 1: tracking throughput as a fraction of the quota, with simulated answer time.

One in-process sandbox with a quota of ``QUOTA`` units a minute for every key (``rpm``) and
``LATENCY`` seconds of answer time per tracked item. For each case (an API and a batch size)
three clients run at the same time, each with its own key (its own quota bucket):

- ``hook``: ``hook.track(parcels)`` with ``requests_per_minute=QUOTA`` on the hook;
- ``operator``: ``hook.iter_track(parcels, chunk_size=1000)`` consumed chunk by chunk, the way
  ``TrackParcelsOperator`` calls it (a chunk is finished before the next one starts);
- ``baseline``: a plain sequential ``requests`` loop sending the same payloads (built by the
  hook's ``build_batch_request``) one after the other.

Our clients are measured from the sandbox's own quota accounting: the quota units it accepted
from that key inside a window of ``window`` seconds that opens once the hook's first call (sent
alone, to check the key) has been answered, as units per minute between the first and the last
arrival in the window. The baseline, being sequential, is measured as units answered per minute
of its running time. ``fraction = units per minute / QUOTA`` (units: requests; TrackFlow: items).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import ArrivalLog, ceil_div, fmt, parcels, sandbox_connection

QUOTA = 600
LATENCY = 0.5
OPERATOR_CHUNK = 1000
GOAL = 0.95
#: Seconds after the first paced call before the window opens.
SETTLE = 1.0


@dataclass(frozen=True)
class Case:
    """One API at one batch size.

    :param label: short name used in keys and tables.
    :param api: the sandbox / hook API name.
    :param batch: parcels per call.
    :param counts_items: whether the quota counts items (TrackFlow) rather than requests.
    """

    label: str
    api: str
    batch: int
    counts_items: bool = False

    @property
    def answer_time(self) -> float:
        return LATENCY * self.batch

    @property
    def unit(self) -> str:
        return "items" if self.counts_items else "requests"


FULL_CASES = (
    Case("wp5", "whereparcel", 5),
    Case("tf5", "trackflow", 5, True),
    Case("tf20", "trackflow", 20, True),
    Case("tf50", "trackflow", 50, True),
    Case("se1", "shipengine", 1),
)
QUICK_CASES = tuple(c for c in FULL_CASES if c.label != "tf50")


def hook_for(case: Case, conn_id: str) -> Any:
    from airflow_provider_parcels.hooks import hook_class

    return hook_class(case.api)(conn_id, requests_per_minute=QUOTA)


def units_to_send(case: Case, warmup: float, window: float) -> int:
    """Parcels that keep a client at the quota until just after the window closes."""
    rate = QUOTA / 60 * (1 if case.counts_items else case.batch)  # parcels a second at the quota
    interval = 60 / QUOTA * (case.batch if case.counts_items else 1)
    seconds = warmup - case.answer_time + window + 2 * interval
    return case.batch + ceil_div(int(rate * seconds * 1000), 1000)


def run_hook(case: Case, conn_id: str, count: int, chunked: bool) -> dict[str, Any]:
    hook = hook_for(case, conn_id)
    started = time.monotonic()
    errors = done = 0
    try:
        if chunked:
            for result in hook.iter_track(parcels(count), chunk_size=OPERATOR_CHUNK):
                done += 1
                errors += result.error is not None
        else:
            results = hook.track(list(parcels(count)))
            done, errors = len(results), sum(r.error is not None for r in results)
    finally:
        hook.close()
    return {"parcels": done, "errors": errors, "seconds": time.monotonic() - started,
            "max_concurrency": hook.settings.max_concurrency, "hook_stats": hook.stats.as_dict()}


def run_baseline(case: Case, conn_id: str, deadline: float) -> dict[str, Any]:
    """Sequential ``requests``: one call after the other, same payloads, until ``deadline``
    (and at least two calls)."""
    import requests

    from airflow_provider_parcels.models import Parcel

    hook = hook_for(case, conn_id)
    _ = hook.settings  # reads the connection: credentials and base URL
    session = requests.Session()
    session.headers.update(hook.headers())
    source = parcels(10**8)
    units = calls = refused = 0
    started = time.monotonic()
    while calls < 2 or time.monotonic() < deadline:
        batch = [Parcel.coerce(next(source)) for _ in range(case.batch)]
        request = hook.build_batch_request(batch)
        response = session.request(request.method, hook.url(request.path), params=request.params,
                                   json=request.json, timeout=120)
        if response.status_code == 429:
            refused += 1
            time.sleep(float(response.headers.get("Retry-After", "1") or 1))
            continue
        response.raise_for_status()
        calls += 1
        units += request.cost if case.counts_items else 1
    seconds = time.monotonic() - started
    session.close()
    return {"calls": calls, "units": units, "seconds": seconds, "rate_limited": refused,
            "units_per_min": units / seconds * 60}


def window_rate(arrivals: list, window: float) -> tuple[float | None, int]:
    """Units per minute between the first and the last accepted arrival in a window of
    ``window`` seconds opening ``SETTLE`` seconds after the second arrival (the first one
    after the hook's lone key-checking call)."""
    accepted = sorted((a for a in arrivals if a.allowed), key=lambda a: a.at)
    if len(accepted) < 2:
        return None, len(accepted)
    start = accepted[1].at + SETTLE
    inside = [a for a in accepted if start <= a.at <= start + window]
    if len(inside) < 3:
        return None, len(inside)
    span = inside[-1].at - inside[0].at
    return sum(a.weight for a in inside[:-1]) / span * 60, len(inside)


def _thread(target: Callable[[], dict[str, Any]], out: dict[str, Any], name: str) -> threading.Thread:
    def body() -> None:
        try:
            out[name] = target()
        except BaseException as err:  # reported by the caller
            out[name] = {"crash": f"{type(err).__name__}: {err}"}

    thread = threading.Thread(target=body, name=f"bench-{name}", daemon=True)
    thread.start()
    return thread


def run(quick: bool, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run every case at once against one sandbox; return the figures.

    :param quick: 15 s windows and no batch of 50 (60 s windows otherwise).
    :param only: case labels to run (default all of the mode).
    """
    from airflow_provider_parcels.sandbox import SandboxServer, SandboxSettings

    cases = tuple(c for c in FULL_CASES if c.label in only) if only else QUICK_CASES if quick else FULL_CASES
    window = 15.0 if quick else 60.0
    settings = SandboxSettings(rpm=QUOTA, latency_per_item=LATENCY)
    out: dict[str, Any] = {}
    with SandboxServer(settings=settings) as sandbox:
        log = ArrivalLog().attach(sandbox)
        threads, plans = [], {}
        t0 = time.monotonic()
        for case in cases:
            warmup = case.answer_time + 2.0
            count = units_to_send(case, warmup, window)
            plans[case.label] = (t0 + warmup + window, count)
            for method in ("hook", "operator", "baseline"):
                key = f"sandbox-{case.label}-{method}"
                conn_id = sandbox_connection(sandbox, case.api, f"bench_tp_{case.label}_{method}", key=key,
                                             batch_size=case.batch)
                name = f"{case.label}/{method}"
                if method == "baseline":
                    deadline = t0 + warmup + window
                    threads.append(_thread(lambda c=case, i=conn_id, d=deadline: run_baseline(c, i, d), out, name))
                else:
                    chunked = method == "operator"
                    threads.append(_thread(lambda c=case, i=conn_id, n=count, k=chunked: run_hook(c, i, n, k),
                                           out, name))
        limit = max(p[0] for p in plans.values()) - t0 + 300
        for thread in threads:
            thread.join(timeout=max(1.0, t0 + limit - time.monotonic()))
            if thread.is_alive():
                raise RuntimeError(f"throughput: {thread.name} did not finish in {limit:.0f} s")
        rows = []
        for case in cases:
            count = plans[case.label][1]
            row: dict[str, Any] = {"case": case.label, "api": case.api, "batch": case.batch, "unit": case.unit,
                                   "quota_per_min": QUOTA, "answer_seconds": case.answer_time,
                                   "window_seconds": window, "parcels": count}
            for method in ("hook", "operator"):
                figures = out[f"{case.label}/{method}"]
                if "crash" in figures:
                    raise RuntimeError(f"throughput {case.label}/{method}: {figures['crash']}")
                arrivals = log.for_key(f"sandbox-{case.label}-{method}")
                rate, seen = window_rate(arrivals, window)
                total_units = sum(a.weight for a in arrivals if a.allowed)
                row[method] = {
                    **{k: v for k, v in figures.items() if k != "hook_stats"},
                    "requests": figures["hook_stats"]["requests"],
                    "arrivals_in_window": seen,
                    "units_per_min": rate,
                    "fraction": None if rate is None else rate / QUOTA,
                    "rate_limited": sum(1 for a in arrivals if not a.allowed),
                    "end_to_end_fraction": total_units / figures["seconds"] * 60 / QUOTA,
                }
            base = out[f"{case.label}/baseline"]
            if "crash" in base:
                raise RuntimeError(f"throughput {case.label}/baseline: {base['crash']}")
            row["baseline"] = {**base, "fraction": base["units_per_min"] / QUOTA}
            rows.append(row)
    return {"quota_per_min": QUOTA, "latency_per_item": LATENCY, "window_seconds": window,
            "operator_chunk": OPERATOR_CHUNK, "goal": GOAL, "rows": rows}


def markdown(result: dict[str, Any]) -> list[str]:
    """Table lines for the report."""
    lines = [
        f"Quota {result['quota_per_min']} units/min on hook and sandbox, {result['latency_per_item']} s "
        f"answer time per item, window {result['window_seconds']:.0f} s. Goal: hook ≥ {GOAL}.",
        "",
        "| API | batch | unit | answer s | hook | operator path (chunks of 1000) | sequential baseline "
        "| hook ÷ baseline | 429s | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        hook, op, base = row["hook"], row["operator"], row["baseline"]
        ratio = hook["fraction"] / base["fraction"] if hook["fraction"] and base["fraction"] else None
        lines.append(
            f"| {row['api']} | {row['batch']} | {row['unit']} | {row['answer_seconds']:g} | "
            f"{fmt(hook['fraction'], 3)} | {fmt(op['fraction'], 3)} | {fmt(base['fraction'], 3)} | "
            f"{fmt(ratio, 1)}x | {hook['rate_limited'] + op['rate_limited']} | {hook['errors'] + op['errors']} |"
        )
    return lines
