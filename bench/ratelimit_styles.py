"""Figure 2: requests per batch, 429s with a known plan, and the cost of an unknown limit.

- **Known plan** (no faults, no answer time): each API tracks enough parcels to run for
  ``seconds`` at its plan's quota, with the key ``sandbox-<plan>`` (the sandbox enforces the
  plan's quota and batch size) and the ``plan`` extra on the hook. Figures: requests the sandbox
  received ÷ ``ceil(parcels / batch)`` (goal 1.00) and 429s (goal 0). parcelLab documents no
  plan: it runs without a quota (batching only).
- **Unknown limit**: the hook is given no plan and no ``requests_per_minute``; the sandbox
  enforces ``QUOTA`` units a minute (over its sliding window; a short window where the sandbox
  offers ``window_seconds``) and answers refusals in one of five header styles. Figure: extra
  requests per tracked parcel, ``(requests - ceil(parcels / batch)) / parcels`` (goal < 0.1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from bench.common import ceil_div, fmt, parcels, sandbox_connection, window_seconds_supported

#: (API, plan, quota units a minute, batch); ``None`` plan: the API documents none.
PLANS = (
    ("whereparcel", "business", 200, 5),
    ("trackingmore", "standard", 60, 40),
    ("trackflow", "growth", 300, 50),
    ("parcellab", None, None, 1),
    ("shipengine", "advanced", 200, 1),
)
STYLES = ("retry-after", "http-date", "reset-epoch", "reset-epoch-ms", "reset-seconds")
#: APIs of the unknown-limit runs: one parcel a call, five a call, and a quota that counts items.
UNKNOWN_APIS = (("shipengine", 1, False), ("whereparcel", 5, False), ("trackflow", 5, True))
QUOTA = 600
EXTRA_GOAL = 0.1


def _in_threads(jobs: dict[str, Callable[[], dict[str, Any]]], timeout: float) -> dict[str, dict[str, Any]]:
    """Run ``jobs`` at once; their results by name; raise on a crash or a hang."""
    out: dict[str, dict[str, Any]] = {}

    def body(name: str, job: Callable[[], dict[str, Any]]) -> None:
        try:
            out[name] = job()
        except BaseException as err:
            out[name] = {"crash": f"{type(err).__name__}: {err}"}

    threads = [threading.Thread(target=body, args=item, daemon=True, name=item[0]) for item in jobs.items()]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(1.0, deadline - time.monotonic()))
        if thread.is_alive():
            raise RuntimeError(f"{thread.name} did not finish in {timeout:.0f} s")
    crashed = {k: v["crash"] for k, v in out.items() if "crash" in v}
    if crashed:
        raise RuntimeError(f"crashed: {crashed}")
    return out


def _track(api: str, conn_id: str, count: int, **hook_kwargs: Any) -> dict[str, Any]:
    from airflow_provider_parcels.hooks import hook_class

    hook = hook_class(api)(conn_id, **hook_kwargs)
    started = time.monotonic()
    try:
        results = hook.track(list(parcels(count)))
    finally:
        hook.close()
    errors = sorted({r.error.code for r in results if r.error is not None})
    return {"parcels": len(results), "errors": sum(r.error is not None for r in results), "error_codes": errors,
            "seconds": round(time.monotonic() - started, 2), "batch": hook.settings.batch_size,
            "hook": hook.stats.as_dict()}


def run_known_plans(seconds: float) -> dict[str, Any]:
    """Every API at its plan's quota for about ``seconds``; batching and 429s."""
    from airflow_provider_parcels.sandbox import SandboxServer

    rows = []
    with SandboxServer() as sandbox:
        jobs, counts = {}, {}
        for api, plan, quota, batch in PLANS:
            per_second = (quota / 60 if quota else 5.0) * (batch if api != "trackflow" else 1)
            count = max(batch * 3, int(per_second * seconds))
            counts[api] = count
            key = f"sandbox-{plan}" if plan else "sandbox-key"
            extra = {"plan": plan} if plan else {}
            conn_id = sandbox_connection(sandbox, api, f"bench_plan_{api}", key=key, **extra)
            jobs[api] = lambda a=api, c=conn_id, n=count: _track(a, c, n)
        results = _in_threads(jobs, timeout=seconds * 3 + 300)
        stats = sandbox.stats()
    for api, plan, quota, _ in PLANS:
        figures = results[api]
        expected = ceil_div(counts[api], figures["batch"])
        rows.append({"api": api, "plan": plan, "quota_per_min": quota, "batch": figures["batch"],
                     "parcels": counts[api], "expected_requests": expected, "requests": stats[api]["requests"],
                     "requests_per_batch": stats[api]["requests"] / expected,
                     "rate_limited": stats[api]["rate_limited"], "errors": figures["errors"],
                     "seconds": figures["seconds"], "max_batch_seen": stats[api]["max_batch"]})
    return {"seconds": seconds, "rows": rows}


def _unknown_one(sandbox: Any, api: str, batch: int, count: int, style: str) -> dict[str, Any]:
    conn_id = sandbox_connection(sandbox, api, f"bench_unknown_{api}_{style.replace('-', '_')}",
                                 key="sandbox-unknownlimit", batch_size=batch)
    return _track(api, conn_id, count)


def run_unknown_limit(quick: bool) -> dict[str, Any] | None:
    """Each header style on its own sandbox, all at once; ``None`` when skipped (see below).

    The sandbox's window is 5 s when it has the ``window_seconds`` setting; otherwise 60 s, which
    only the full mode affords (three windows take about two minutes).
    """
    from airflow_provider_parcels.sandbox import SandboxServer, SandboxSettings

    short = window_seconds_supported()
    if quick and not short:
        return None
    window = 5.0 if short else 60.0
    per_window = int(QUOTA * window / 60)
    windows = 3 if quick else 6
    servers, jobs, plan = [], {}, {}
    try:
        for style in STYLES:
            # With a short window the sandbox's quota counts per window: the same rate, per window.
            options: dict[str, Any] = {"rpm": per_window, "ratelimit_style": style}
            if short:
                options["window_seconds"] = window
            sandbox = SandboxServer(settings=SandboxSettings(**options)).start()
            servers.append((style, sandbox))
            for api, batch, counts_items in UNKNOWN_APIS:
                count = per_window * windows * (1 if counts_items else batch)
                plan[(style, api)] = (count, batch)
                jobs[f"{style}/{api}"] = (lambda s=sandbox, a=api, b=batch, n=count, st=style:
                                          _unknown_one(s, a, b, n, st))
        results = _in_threads(jobs, timeout=window * (windows + 2) * 4 + 300)
        stats = {style: sandbox.stats() for style, sandbox in servers}
    finally:
        for _, sandbox in servers:
            sandbox.stop()
    rows = []
    for style in STYLES:
        for api, _, _ in UNKNOWN_APIS:
            count, batch = plan[(style, api)]
            figures = results[f"{style}/{api}"]
            received = stats[style][api]["requests"]
            expected = ceil_div(count, batch)
            rows.append({"style": style, "api": api, "batch": batch, "parcels": count, "requests": received,
                         "expected_requests": expected, "extra_per_parcel": (received - expected) / count,
                         "rate_limited": stats[style][api]["rate_limited"], "errors": figures["errors"],
                         "error_codes": figures["error_codes"], "seconds": figures["seconds"]})
    return {"quota_per_min": QUOTA, "window_seconds": window, "per_window": per_window, "windows": windows,
            "goal": EXTRA_GOAL, "rows": rows}


def run(quick: bool) -> dict[str, Any]:
    """Known plans (quick: 15 s; full: 75 s, past one 60 s window) then the unknown-limit runs."""
    return {"known_plans": run_known_plans(15.0 if quick else 75.0), "unknown_limit": run_unknown_limit(quick)}


def markdown_plans(result: dict[str, Any]) -> list[str]:
    lines = [
        f"Each API at its plan's quota for about {result['seconds']:.0f} s (sandbox key `sandbox-<plan>`, "
        "`plan` extra on the hook), no faults. Goals: 1.00 and 0.",
        "",
        "| API | plan | quota/min | batch | parcels | requests | requests ÷ ceil(parcels/batch) | 429s | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['api']} | {r['plan'] or '(none)'} | {fmt(r['quota_per_min'], 0)} | {r['batch']} | "
                     f"{r['parcels']:,} | {r['requests']:,} | {r['requests_per_batch']:.2f} | "
                     f"{r['rate_limited']} | {r['errors']} |")
    return lines


def markdown_unknown(result: dict[str, Any] | None) -> list[str]:
    if result is None:
        return ["Skipped in quick mode: this sandbox has no `window_seconds` setting, and three 60 s "
                "windows take two minutes (the full mode runs it)."]
    apis = [api for api, _, _ in UNKNOWN_APIS]
    batches = {api: batch for api, batch, _ in UNKNOWN_APIS}
    lines = [
        f"Hook without plan or `requests_per_minute`; the sandbox enforces {result['per_window']} units per "
        f"sliding {result['window_seconds']:.0f} s window ({result['quota_per_min']}/min); "
        f"{result['windows']} windows' worth of "
        f"parcels, no answer time. Cell: extra requests per tracked parcel (429s; parcels ending in error). "
        f"Goal: < {result['goal']}.",
        "",
        "| header style | " + " | ".join(f"{a} (batch {batches[a]})" for a in apis) + " |",
        "|---|" + "---:|" * len(apis),
    ]
    by_key = {(r["style"], r["api"]): r for r in result["rows"]}
    for style in STYLES:
        cells = []
        for api in apis:
            r = by_key[(style, api)]
            cells.append(f"{r['extra_per_parcel']:.3f} ({r['rate_limited']}; {r['errors']})")
        lines.append(f"| `{style}` | " + " | ".join(cells) + " |")
    return lines
