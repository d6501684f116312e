"""Issue 16, point 6 (part): an answer's size is capped, on both paths, without reading it whole.

Before: no cap; one 50 MB answer added ~350 MiB to the worker.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hostile_support import APIS, numbers, track

from airflow_provider_parcels.hooks.exceptions import ParcelConnectionError
from airflow_provider_parcels.hooks.transport import DEFAULT_MAX_RESPONSE_BYTES

MIB = 1024 * 1024


@pytest.mark.parametrize("path", ["sync", "async"])
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("api", APIS)
def test_an_answer_over_the_cap_is_an_error_row_not_retried_and_not_read_whole(api, framing, path, hostile,
                                                                               hostile_hook):
    hostile.mode("huge", size=50 * MIB, framing=framing, only="DLVHUGE")
    hook = hostile_hook(api, batch_size=1, max_retries=3, max_response_mb=1)
    good = numbers(api, "DLV", 1)[0]
    huge = {"carrier": good["carrier"], "tracking_number": f"DLVHUGE{api[:3].upper()}1"}

    results = track(hook, [huge, good], path)

    assert results[0].error is not None and results[0].error.code == "response_too_large", results[0]
    assert "max_response_mb" in results[0].error.message
    assert results[1].error is None
    assert hostile.hostile_calls == 1, "a too-large answer is not asked for again"
    # the client stopped reading early: the server got rid of a few MiB at most (socket buffers)
    assert hostile.sent < 20 * MIB, f"the server sent {hostile.sent / MIB:.0f} MiB before the client hung up"


@pytest.mark.parametrize("path", ["sync", "async"])
def test_the_default_cap_is_16_mib_and_memory_stays_bounded(path, hostile, hostile_hook):
    hostile.mode("huge", size=50 * MIB, framing="chunked")
    hook = hostile_hook("trackflow", max_retries=0)
    assert hook.settings.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES == 16 * MIB

    tracemalloc.start()
    started = time.monotonic()
    try:
        (result,) = track(hook, numbers("trackflow", "DLV", 1), path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.error is not None and result.error.code == "response_too_large", result
    assert peak < 3 * 16 * MIB, f"reading a capped answer peaked at {peak / MIB:.0f} MiB"
    assert time.monotonic() - started < 60


def test_an_answer_under_the_cap_is_read(hostile, hostile_hook):
    hostile.mode("proxy")
    hook = hostile_hook("trackflow", max_response_mb=0.01)  # 10 KiB: a real answer fits
    assert [r.error for r in hook.track(numbers("trackflow", "DLV", 2))] == [None, None]


@pytest.mark.parametrize("value", ["lots", -1, 0, "nan"])
def test_a_bad_max_response_mb_extra_names_the_extra(value, hostile_hook):
    hook = hostile_hook("trackflow", max_response_mb=value)
    with pytest.raises(ParcelConnectionError, match="max_response_mb"):
        _ = hook.settings
