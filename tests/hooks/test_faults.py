"""Faults, quotas and rate-limit header styles: every parcel still ends as a result or an error."""

from __future__ import annotations

import pytest
from helpers.tracking import APIS, api_stats, expected, mixed_parcels

from airflow_provider_parcels.models import ParcelStatus

STYLES = ["retry-after", "http-date", "reset-epoch", "reset-epoch-ms", "reset-seconds"]
FAULT_CODES = {"rate_limited", "server_error", "timeout", "connection_error", "malformed_response"}


@pytest.mark.parametrize("api", APIS)
def test_every_parcel_accounted_for_under_faults(api, connect, sandbox):
    sandbox.configure(faults="503=0.1,timeout=0.05,badjson=0.05,reset=0.05,429=0.05", seed=7, timeout_delay=1.0)
    batch = 1 if api in ("parcellab", "shipengine") else 3
    hook = connect(api, timeout=0.4, max_retries=4, batch_size=batch, requests_per_minute=6000,
                   hook_kwargs={"max_concurrency": 8})
    parcels = mixed_parcels(api, 60 if batch > 1 else 30)
    results = hook.track(parcels)
    assert [r.tracking_number for r in results] == [p["tracking_number"] for p in parcels]
    faults = api_stats(sandbox, api)["faults"]
    assert sum(faults.values()) > 0, "the sandbox injected no fault"
    for result in results:
        if result.error is None or result.error.code == "not_found":
            assert result.status is expected(api, result.tracking_number)
        else:
            assert result.error.code in FAULT_CODES, result.error
            assert result.status is ParcelStatus.UNKNOWN
    assert hook.stats.retries > 0


@pytest.mark.parametrize("api", APIS)
def test_faults_exhausting_retries_give_error_rows(api, connect, sandbox):
    sandbox.configure(faults="503=1.0", seed=1)
    hook = connect(api, max_retries=1)
    results = hook.track(mixed_parcels(api, 3))
    assert [r.error.code for r in results] == ["server_error"] * 3
    assert all("after retries" in r.error.message for r in results)


@pytest.mark.parametrize("style", STYLES)
def test_each_rate_limit_header_style_is_honoured(style, connect, sandbox):
    sandbox.configure(faults="429=0.3", seed=3, ratelimit_style=style)
    hook = connect("trackflow", batch_size=5)
    results = hook.track(mixed_parcels("trackflow", 20))
    assert all(r.error is None or r.error.code == "not_found" for r in results)
    assert api_stats(sandbox, "trackflow")["rate_limited"] > 0
    assert hook.stats.rate_limited > 0


@pytest.mark.parametrize("style", STYLES)
def test_unknown_enforced_limit_every_parcel_still_answered(style, connect, sandbox):
    # 8 requests per 2-second window, a limit the hook is not told about
    sandbox.configure(rpm=8, window_seconds=2.0, ratelimit_style=style)
    hook = connect("shipengine", hook_kwargs={"max_concurrency": 4})
    parcels = mixed_parcels("shipengine", 20)
    results = hook.track(parcels)
    assert all(r.error is None or r.error.code == "not_found" for r in results), [r.error for r in results]
    stats = api_stats(sandbox, "shipengine")
    assert stats["rate_limited"] > 0, "the sandbox never enforced the limit"
    assert stats["requests"] == len(parcels) + stats["rate_limited"]
