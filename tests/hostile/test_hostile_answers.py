"""Issue 16, point 1: a poisoned answer costs only its own parcel(s), never the run.

Every test talks HTTP to the hostile server (``helpers.hostile_server``), which forwards the
good requests to the sandbox and poisons the others.
"""

from __future__ import annotations

import math
import time

import pytest
from helpers.hostile_server import break_lists, poison_times
from hostile_support import APIS, BATCH_APIS, numbers, track

from airflow_provider_parcels.hooks.base import ParcelTrackingHook
from airflow_provider_parcels.hooks.transport import MAX_JSON_DEPTH, ApiResponse, json_depth
from airflow_provider_parcels.models import ParcelStatus


@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("api", APIS)
def test_json_nested_100000_deep_costs_only_its_own_request(api, path, hostile, hostile_hook):
    good = numbers(api, "DLV", 3)
    poisoned = {"carrier": good[0]["carrier"], "tracking_number": f"DLVPOISON{api[:3].upper()}"}
    hostile.mode("deep", depth=100_000, only=poisoned["tracking_number"])
    hook = hostile_hook(api, batch_size=1, max_retries=2)

    results = track(hook, [good[0], poisoned, good[1], good[2]], path)  # before: RecursionError out of track()

    assert [r.tracking_number for r in results] == [good[0]["tracking_number"], poisoned["tracking_number"],
                                                    good[1]["tracking_number"], good[2]["tracking_number"]]
    bad = results[1]
    assert bad.error is not None and bad.error.code == "malformed_response", bad
    assert f"deeper than {MAX_JSON_DEPTH} levels" in bad.error.message and bad.status is ParcelStatus.UNKNOWN
    assert [r.status for r in results[::2] + results[3:]] == [ParcelStatus.DELIVERED] * 3
    assert hostile.hostile_calls == 1, "the same poisoned answer would come back: it is not retried"


@pytest.mark.parametrize("value", ["99999999999999999999", "9999-12-31T23:59:59-14:00", "10000-01-01T00:00:00Z",
                                   99999999999999999999, "2026-13-45T99:99:99Z"],
                         ids=["20-digit-text", "year-10000-in-utc", "year-10000", "20-digit-number", "nonsense"])
@pytest.mark.parametrize("api", APIS)
def test_absurd_event_times_are_kept_as_written_and_cost_nothing(api, value, hostile, hostile_hook):
    hostile.mode("proxy", transform=poison_times(value))
    hook = hostile_hook(api, batch_size=1, max_retries=0)
    parcels = numbers(api, "DLV", 2)

    results = hook.track(parcels)  # before: OverflowError out of track(), or malformed_response rows

    assert [r.error for r in results] == [None, None]
    # (which event is the newest is unknowable when no time can be read: only error-free is asked)
    events = [e for r in results for e in r.events]
    assert events, "the sandbox sent no event to poison"
    assert all(e.occurred_at is None and e.occurred_at_local == str(value) for e in events), events[0]


@pytest.mark.parametrize("api", sorted(BATCH_APIS))
def test_one_year_10000_time_in_a_full_batch_costs_nothing(api, hostile, hostile_hook):
    size = BATCH_APIS[api]
    parcels = numbers(api, "DLV", size)
    victim = parcels[size // 2]["tracking_number"]
    hostile.mode("proxy", transform=poison_times("9999-12-31T23:59:59-14:00", only=victim))
    hook = hostile_hook(api, max_retries=0)

    results = hook.track(parcels)  # before: the whole batch became malformed_response

    assert [r.error for r in results] == [None] * size
    assert all(r.status is ParcelStatus.DELIVERED for r in results)
    (poisoned,) = [r for r in results if r.tracking_number == victim]
    assert {e.occurred_at_local for e in poisoned.events} == {"9999-12-31T23:59:59-14:00"}
    assert all(e.occurred_at_local != "9999-12-31T23:59:59-14:00"
               for r in results if r.tracking_number != victim for e in r.events)
    assert hostile.calls == 1


@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("api", sorted(BATCH_APIS))
def test_an_unreadable_entry_costs_only_its_own_parcel(api, path, hostile, hostile_hook):
    size = BATCH_APIS[api]
    parcels = numbers(api, "DLV", size)
    victim = parcels[1]["tracking_number"]
    hostile.mode("proxy", transform=break_lists(only=victim))  # its events/checkpoints become the number 7
    hook = hostile_hook(api, max_retries=2)

    results = track(hook, parcels, path)  # before: every parcel of the batch got malformed_response

    by_number = {r.tracking_number: r for r in results}
    bad = by_number.pop(victim)
    assert bad.error is not None and bad.error.code == "malformed_response", bad
    assert "entry for this parcel" in bad.error.message
    assert [r.error for r in by_number.values()] == [None] * (size - 1)
    assert all(r.status is ParcelStatus.DELIVERED for r in by_number.values())
    assert hostile.calls == 1, "an entry the parser cannot read is not a reason to ask again"


class _Exploding(Exception):
    pass


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"), OverflowError("too big"),
                                   ZeroDivisionError("division by zero"), _Exploding("?")],
                         ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("path", ["sync", "async"])
def test_any_error_while_reading_an_answer_becomes_error_rows_of_that_request(error, path, hostile, hostile_hook,
                                                                              monkeypatch):
    """The last line of defence: whatever a parser raises on one answer stays with that answer's parcels."""
    hook = hostile_hook("shipengine", max_retries=2)
    parcels = numbers("shipengine", "DLV", 3)
    victim = parcels[1]["tracking_number"]
    parse = type(hook).parse_track_response

    def fragile(self: ParcelTrackingHook, request, body):
        if request.parcels[0].tracking_number == victim:
            raise error
        return parse(self, request, body)

    monkeypatch.setattr(type(hook), "parse_track_response", fragile)
    results = track(hook, parcels, path)

    assert [r.error.code if r.error else None for r in results] == [None, "malformed_response", None]
    assert type(error).__name__ in results[1].error.message
    assert hostile.calls == 3, "not retried: the same answer would break the same way"


#: Raw answers (the body ``[]`` is no valid tracking answer for any of the five APIs).
RAW_ANSWERS = {
    "length-of-23-digits": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n[]",
    "negative-length": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n[]",
    "status-of-22-digits": b"HTTP/1.1 2000000000000000000000 OK\r\nContent-Length: 2\r\n\r\n[]",
    "header-line-of-100-kib": b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 100_000 + b"\r\nContent-Length: 2\r\n\r\n[]",
    "absurd-waits": b"HTTP/1.1 503 Busy\r\nRetry-After: 99999999999999999999999\r\nX-RateLimit-Reset: 1e308\r\n"
                    b"X-RateLimit-Remaining: 0.001\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
}


@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("answer", list(RAW_ANSWERS), ids=list(RAW_ANSWERS))
@pytest.mark.parametrize("api", APIS)
def test_broken_framing_and_absurd_headers_become_error_rows(api, answer, path, hostile, hostile_hook):
    hostile.mode("raw", data=RAW_ANSWERS[answer], only="DLVRAW")
    hook = hostile_hook(api, batch_size=1, max_retries=0, timeout=5)  # (a retry would wait the 120 s clamp)
    good = numbers(api, "DLV", 1)[0]
    broken = {"carrier": good["carrier"], "tracking_number": f"DLVRAW{api[:3].upper()}1"}

    started = time.monotonic()
    results = track(hook, [broken, good], path)

    assert results[0].error is not None, results[0]
    assert results[1].error is None and results[1].status is ParcelStatus.DELIVERED
    assert time.monotonic() - started < 10, "an absurd wait header held the connection"


def test_decoded_answers_hold_only_values_a_warehouse_can_store():
    body = (b'{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e400, "e": 99999999999999999999, '
            b'"f": "x\\u0000y", "g": "\\ud800", "h": "\xed\xa0\x80", "i": {"\\u0000k": ["\\udfff"]}, "j": 1.5}')
    value = ApiResponse(200, {}, body).json()
    assert value["a"] is None and value["b"] is None and value["c"] is None and value["d"] is None
    assert value["e"] == 99999999999999999999 and value["j"] == 1.5
    assert value["f"] == "x\ufffdy" and value["g"] == "\ufffd" and value["h"] == "\ufffd"
    assert value["i"] == {"\ufffdk": ["\ufffd"]}
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in value.values())


@pytest.mark.parametrize(("body", "depth"), [
    (b"[]", 1), (b'{"a": [{"b": []}]}', 4), (b'["[[[[", "]]]]"]', 1), (b'["a\\\\", "[[[["]', 1),
    (b'["a\\"[[[", [[1]]]', 3), (b"[" * 150 + b"]" * 150, 150), (b'"' + b"[" * 500 + b'"', 0),
])
def test_json_depth_counts_only_brackets_outside_strings(body, depth):
    assert json_depth(body) == depth


def test_brackets_inside_strings_never_make_an_answer_too_deep():
    body = b'{"description": "' + b"[{" * 500 + b'", "events": [[1]]}'
    assert ApiResponse(200, {}, body).json()["events"] == [[1]]
