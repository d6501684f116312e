"""The async twin used by the trigger: same requests, parsing and status map as the sync path."""

from __future__ import annotations

import asyncio

import pytest
from helpers.tracking import APIS, api_stats, mixed_parcels

from airflow_provider_parcels.hooks import hook_class
from airflow_provider_parcels.hooks.exceptions import ParcelApiAuthError


@pytest.mark.parametrize("api", APIS)
def test_atrack_matches_track(api, connect, sandbox):
    sync_hook = connect(api)
    parcels = mixed_parcels(api, 12)
    expected = [(r.tracking_number, r.status, r.error.code if r.error else None) for r in sync_hook.track(parcels)]
    sync_requests = api_stats(sandbox, api)["requests"]
    sandbox.reset()

    async def run():
        hook = await hook_class(api).for_trigger(sync_hook.conn_id)
        return await hook.atrack(parcels)

    results = asyncio.run(run())
    assert [(r.tracking_number, r.status, r.error.code if r.error else None) for r in results] == expected
    assert api_stats(sandbox, api)["requests"] == sync_requests


@pytest.mark.parametrize("api", ["whereparcel", "trackingmore"])
def test_atrack_wrong_key_raises_without_the_key(api, connect):
    hook_id = connect(api, key="wrong-async-key-42").conn_id

    async def run():
        hook = await hook_class(api).for_trigger(hook_id)
        return await hook.atrack(mixed_parcels(api, 3))

    with pytest.raises(ParcelApiAuthError) as err:
        asyncio.run(run())
    assert "wrong-async-key-42" not in str(err.value)
