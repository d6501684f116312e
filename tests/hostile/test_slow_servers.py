"""Issue 16, point 3: ``timeout`` bounds a whole call, and no header makes us wait past the clamp.

Figures before the fix (timeout=2): a server dripping its body one byte a second held a call
59 s, its headers 105 s, on both paths; a trigger with end_time 5 s away fired after 105 s.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hostile_support import APIS, numbers, track

from airflow_provider_parcels.hooks import hook_class
from airflow_provider_parcels.hooks.ratelimit import RateLimiter
from airflow_provider_parcels.hooks.transport import MAX_WAIT_SECONDS, ApiResponse, number_header, wait_from_headers
from airflow_provider_parcels.triggers.parcel_status import ParcelStatusTrigger

TIMEOUT = 2.0
#: Generous: a call with timeout=2 ends well under this (it took 59 s and 105 s before).
CALL_BOUND = 6.0


@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("drip", ["drip_headers", "drip_body"])
@pytest.mark.parametrize("api", APIS)
def test_a_dripping_server_cannot_hold_a_call_past_its_timeout(api, drip, path, hostile, hostile_hook):
    hostile.mode(drip, interval=0.5)  # a byte every 0.5 s: no single read ever waits 2 s
    hook = hostile_hook(api, timeout=TIMEOUT, max_retries=0)

    started = time.monotonic()
    (result,) = track(hook, numbers(api, "DLV", 1), path)
    elapsed = time.monotonic() - started

    assert result.error is not None and result.error.code == "timeout", result
    assert elapsed < CALL_BOUND, f"{drip} held a call with timeout={TIMEOUT} for {elapsed:.1f} s"
    assert hostile.calls == 1


@pytest.mark.parametrize("path", ["sync", "async"])
def test_a_tls_handshake_dripped_byte_by_byte_cannot_hold_a_call(path, hostile, hostile_conn):
    # a TLS handshake record announcing 16 KiB, whose bytes then come one every 0.5 s
    hostile.mode("raw", data=b"\x16\x03\x03\x40\x00", drip=b"\x00" * 16_384, interval=0.5, at_once=True)
    hook = hook_class("shipengine")(hostile_conn("shipengine", https=True, timeout=TIMEOUT, max_retries=0))
    started = time.monotonic()
    (result,) = track(hook, numbers("shipengine", "DLV", 1), path)
    elapsed = time.monotonic() - started

    assert result.error is not None and result.error.code == "timeout", result
    assert elapsed < CALL_BOUND, f"a dripped TLS handshake held a call with timeout={TIMEOUT} for {elapsed:.1f} s"


@pytest.mark.parametrize("api", ["trackflow", "whereparcel"])
def test_a_trigger_never_outlives_its_end_time_by_more_than_one_call(api, hostile, hostile_conn):
    hostile.mode("drip_headers", interval=0.5)
    conn_id = hostile_conn(api)
    end_in = 5.0
    trigger = ParcelStatusTrigger(
        conn_id=conn_id, conn_type=api, parcels=numbers(api, "TRN", 2), poll_interval=1.0,
        end_time=time.time() + end_in, hook_params={"timeout": TIMEOUT},  # default max_retries: 6 retries
    )

    async def run() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    started = time.monotonic()
    (event,) = asyncio.run(run())
    elapsed = time.monotonic() - started

    assert event["status"] == "timeout", event
    # end_time plus at most one call's deadline (2 s); generous margin for a loaded machine
    assert elapsed < end_in + TIMEOUT + 5, f"the trigger fired {elapsed - end_in:.1f} s after its end_time"


ABSURD_HEADERS = {
    "fraction-remaining": {"X-RateLimit-Remaining": "0.001", "X-RateLimit-Reset": "60"},
    "nan": {"X-RateLimit-Remaining": "nan", "X-RateLimit-Reset": "nan", "X-RateLimit-Limit": "nan"},
    "inf": {"X-RateLimit-Remaining": "inf", "X-RateLimit-Reset": "inf", "Retry-After": "inf"},
    "negative": {"X-RateLimit-Remaining": "-5", "X-RateLimit-Reset": "-60", "X-RateLimit-Limit": "-1"},
    "1e308": {"X-RateLimit-Remaining": "1e308", "X-RateLimit-Reset": "1e308", "X-RateLimit-Limit": "1e308"},
    "tiny-reset": {"X-RateLimit-Remaining": "1e-300", "X-RateLimit-Reset": "1e-300"},
}


@pytest.mark.parametrize("headers", list(ABSURD_HEADERS.values()), ids=list(ABSURD_HEADERS))
@pytest.mark.parametrize("api", APIS)
def test_absurd_rate_headers_on_answers_never_pace_beyond_the_clamp(api, headers, hostile, hostile_hook):
    hostile.mode("proxy", headers=headers)
    hook = hostile_hook(api, max_retries=0)
    (result,) = hook.track(numbers(api, "DLV", 1))

    assert result.error is None, result.error
    # the waits the next two requests would get (before: 60,000 s for "0.001 remaining, reset in 60 s"),
    # from this process's limiter and from the key's shared quota ledger
    first, second = hook.limiter.reserve(1), hook.limiter.reserve(1)
    assert first <= MAX_WAIT_SECONDS + 1 and second - first <= MAX_WAIT_SECONDS + 1, (first, second)
    first, second = hook.ledger.reserve(1), hook.ledger.reserve(1)
    assert first.ok and second.ok, "nonsense headers spent no day or month budget"
    assert first.wait_seconds <= MAX_WAIT_SECONDS + 1 and second.wait_seconds <= MAX_WAIT_SECONDS + 1


@pytest.mark.parametrize("limit", ["0.001", "1e-300", "nan", "-3", "1e308", "inf"])
@pytest.mark.parametrize("api", APIS)
def test_a_refusal_with_an_absurd_limit_never_slows_the_connection_past_the_clamp(api, limit, hostile, hostile_hook):
    hostile.mode("json", status=429, body={"error": "slow down"},
                 headers={"X-RateLimit-Limit": limit, "Retry-After": "1", "X-RateLimit-Remaining": "0"})
    hook = hostile_hook(api, max_retries=0)
    hook.limiter.requests_per_minute = None  # an unknown quota: the one a refusal teaches
    (result,) = hook.track(numbers(api, "DLV", 1))

    assert result.error is not None and result.error.code == "rate_limited"
    # before: a 429 with X-RateLimit-Limit 0.001 paced the connection at 61,288 s a request
    first, second = hook.limiter.reserve(1), hook.limiter.reserve(1)
    assert first <= MAX_WAIT_SECONDS + 1 and second - first <= MAX_WAIT_SECONDS + 1, (first, second)
    # the refusal's Retry-After (1 s) holds every process back through the ledger, and no longer
    shared = hook.ledger.reserve(1)
    assert shared.ok and shared.wait_seconds <= MAX_WAIT_SECONDS + 1


def test_the_limiter_ignores_or_clamps_nonsense_from_headers():
    limiter = RateLimiter(None)
    for _ in range(3):
        limiter.record(1)
    limiter.follow_window(0.001, 60)  # a fraction of a request left: none left, wait for the reset
    assert limiter.reserve(1) <= 60.5
    limiter = RateLimiter(None)
    limiter.follow_window(1, 1e308)
    assert limiter.reserve(1) <= MAX_WAIT_SECONDS + 0.5 and limiter.reserve(1) <= 2 * MAX_WAIT_SECONDS + 0.5
    for nonsense in (float("nan"), float("inf"), -1.0):
        limiter = RateLimiter(None)
        limiter.record(1)
        limiter.follow_window(nonsense, nonsense)
        limiter.learn_from_refusal(nonsense, nonsense)
        limiter.pause(nonsense)
        limiter.note_remaining(nonsense, 1)
        assert limiter.reserve(1) <= MAX_WAIT_SECONDS + 0.5
    limiter = RateLimiter(None)
    limiter.record(1)
    limiter.learn_from_refusal(1, 61_288)  # one request per 17 hours, says the header
    assert limiter.reserve(1) == 0 and limiter.reserve(1) <= MAX_WAIT_SECONDS + 0.5


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "nan"}, None), ({"Retry-After": "inf"}, None), ({"Retry-After": "-5"}, 0.0),
    ({"Retry-After": "Fri, 31 Dec 99999 23:59:59 GMT"}, None), ({"X-RateLimit-Reset": "nan"}, None),
    ({"X-RateLimit-Reset": "-1e308"}, 0.0), ({"Retry-After": "2.5"}, 2.5),
])
def test_wait_headers_that_are_not_finite_numbers_count_as_not_said(headers, expected):
    assert wait_from_headers(ApiResponse(429, headers, b"")) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("0.001", 0.0), ("7.9", 7.0), ("nan", None), ("inf", None), ("-1", None), ("", None), ("many", None),
])
def test_count_headers_are_whole_numbers_or_nothing(value, expected):
    assert number_header(ApiResponse(200, {"X-RateLimit-Remaining": value}, b""), "X-RateLimit-Remaining") == expected


def test_the_python_3_10_deadline_behaves_as_asyncio_timeout():
    """``async_deadline`` on 3.10 (``_CancelAfter``): a block past its deadline ends with
    ``TimeoutError`` and ``expired()``; a block within it runs to its end untouched."""
    from airflow_provider_parcels.hooks.transport import _CancelAfter

    async def run(deadline: float, work: float) -> tuple[str, bool, float]:
        limit = _CancelAfter(deadline)
        started = time.monotonic()
        try:
            async with limit:
                await asyncio.sleep(work)
            outcome = "done"
        except TimeoutError:
            outcome = "timeout"
        return outcome, limit.expired(), time.monotonic() - started

    outcome, expired, took = asyncio.run(run(0.2, 5.0))
    assert (outcome, expired) == ("timeout", True) and took < 2.0, took
    assert asyncio.run(run(2.0, 0.05))[:2] == ("done", False)
