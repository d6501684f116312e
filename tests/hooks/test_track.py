"""Bulk tracking through each hook against the sandbox, over loopback."""

from __future__ import annotations

import logging
import math

import pytest
from helpers.tracking import APIS, CARRIER, api_stats, expected, mixed_parcels

from airflow_provider_parcels.hooks.exceptions import ParcelApiAuthError
from airflow_provider_parcels.models import Parcel, ParcelStatus

S = ParcelStatus


@pytest.mark.parametrize("api", APIS)
def test_mixed_outcomes_one_result_per_parcel_in_order(api, connect, sandbox):
    hook = connect(api)
    parcels = mixed_parcels(api)
    results = hook.track(parcels)
    assert [r.tracking_number for r in results] == [p["tracking_number"] for p in parcels]
    for result in results:
        assert result.status is expected(api, result.tracking_number), result
        assert result.provider == api
        if result.tracking_number.startswith("NFD") and api == "trackingmore":
            # a tracking the account holds, no carrier scan yet: an answer, not an error
            assert result.error is None and result.provider_status == "notfound", result
        elif result.tracking_number.startswith("NFD"):
            assert result.error is not None and result.error.code == "not_found"
        else:
            assert result.error is None, result.error
            if not result.tracking_number.startswith("PEN"):
                assert result.events, f"{result.tracking_number} has no events"
    stats = api_stats(sandbox, api)
    batch = hook.settings.batch_size
    assert stats["requests"] == math.ceil(len(parcels) / batch)
    assert stats["max_batch"] <= batch


@pytest.mark.parametrize("api", APIS)
def test_duplicates_requested_once_answered_for_each(api, connect, sandbox):
    hook = connect(api)
    # parcelLab reads client_id as the order to look up, so its duplicates carry none
    ids = (None, None) if api == "parcellab" else ("a", "b")
    parcels = [{"carrier": CARRIER[api], "tracking_number": "DLVDUP0001", "client_id": ids[0]},
               {"carrier": CARRIER[api], "tracking_number": "DLVDUP0001", "client_id": ids[1]},
               {"carrier": CARRIER[api], "tracking_number": "TRNDUP0002"}]
    results = hook.track(parcels)
    assert [r.client_id for r in results] == [*ids, None]
    assert results[0].status is S.DELIVERED and results[1].status is S.DELIVERED
    assert api_stats(sandbox, api)["items"] == 2


@pytest.mark.parametrize("api", APIS)
def test_invalid_inputs_become_error_rows_and_nothing_else_is_lost(api, connect):
    hook = connect(api)
    parcels = [{"carrier": CARRIER[api], "tracking_number": "DLVOK00001"}, {"carrier": CARRIER[api],
               "tracking_number": "  "}, None, {"carrier": CARRIER[api], "tracking_number": "TRNOK00002"}]
    results = hook.track(parcels)
    assert len(results) == 4
    assert [r.error.code if r.error else None for r in results] == [None, "invalid_input", "invalid_input", None]
    assert "parcel #1" in results[1].error.message and "parcel #2" in results[2].error.message


@pytest.mark.parametrize("api", APIS)
def test_known_quota_gets_no_429(api, connect, sandbox):
    sandbox.configure(rpm=300)
    hook = connect(api, requests_per_minute=300, batch_size=5 if api == "trackflow" else None)
    results = hook.track(mixed_parcels(api, 12))
    assert len(results) == 12
    assert api_stats(sandbox, api)["rate_limited"] == 0


@pytest.mark.parametrize("api", APIS)
def test_wrong_key_is_sent_once_and_raises_clearly(api, connect, sandbox):
    hook = connect(api, key="wrong-key-123456")
    with pytest.raises(ParcelApiAuthError) as err:
        hook.track(mixed_parcels(api, 12))
    assert f"'test_{api}'" in str(err.value)
    assert "wrong-key-123456" not in str(err.value)
    assert api_stats(sandbox, api)["requests"] == 1


@pytest.mark.parametrize("api", APIS)
def test_secrets_never_reach_debug_logs(api, connect, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "httpx", "airflow_provider_parcels"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    hook = connect(api, key="sandbox-topsecret-77")
    hook.track(mixed_parcels(api, 6))
    with pytest.raises(ParcelApiAuthError) as err:
        connect(api, key="wrong-topsecret-88", conn_id="other").track(mixed_parcels(api, 1))
    text = caplog.text + str(err.value) + repr(hook)
    assert caplog.records, "DEBUG logging captured nothing"
    for secret in ("sandbox-topsecret-77", "wrong-topsecret-88", "sandbox-secret"):
        assert secret not in text


@pytest.mark.parametrize("api", APIS)
def test_test_connection(api, connect):
    ok, message = connect(api).test_connection()
    assert ok, message
    ok, message = connect(api, key="wrong-key-123456", conn_id="bad").test_connection()
    assert not ok
    assert "'bad'" in message and "wrong-key" not in message


@pytest.mark.parametrize("api", APIS)
def test_as_dataframe(api, connect):
    frame = connect(api).track(mixed_parcels(api, 4), as_dataframe=True)
    assert list(frame["tracking_number"]) == [p["tracking_number"] for p in mixed_parcels(api, 4)]
    assert {"status", "error_code", "event_count"} <= set(frame.columns)


def test_iter_track_streams_in_chunks(connect):
    hook = connect("shipengine")
    source = ({"carrier": "usps", "tracking_number": f"DLVSTREAM{i:05d}"} for i in range(25))
    stream = hook.iter_track(source, chunk_size=10)
    first = [next(stream) for _ in range(10)]
    assert len(first) == 10
    assert len(list(stream)) == 15


def test_parcel_objects_and_dataframe_input(connect):
    import pandas as pd

    hook = connect("whereparcel")
    frame = pd.DataFrame([{"carrier": "kr.cj", "tracking_number": "DLVDF00001", "client_id": "o-1"},
                          {"carrier": "kr.cj", "tracking_number": "EXCDF00002", "client_id": None}])
    results = hook.track(frame)
    assert [r.status for r in results] == [S.DELIVERED, S.EXCEPTION]
    assert results[0].client_id == "o-1" and results[1].client_id is None
    assert hook.track([Parcel("kr.cj", "TRNOBJ0001")])[0].status is S.IN_TRANSIT
