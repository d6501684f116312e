"""The smoke subset run on every cell of the compatibility matrix (``scripts/matrix``).

Marked ``smoke``: what an installed package must do on the oldest and newest supported
Airflow/Python pairs. The matrix installs the built wheel into a fresh venv and runs these from a
copy of ``tests/`` outside the checkout, with ``PARCELS_SMOKE_EXPECT_INSTALLED_WHEEL=1``: then the
first test also proves that the wheel, not the source tree, was imported. The registration
smoke tests live in ``tests/test_registration.py``.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import pytest
from helpers.dags import run_dag, task_states, xcom_pull

import airflow_provider_parcels
from airflow_provider_parcels.hooks import hook_class
from airflow_provider_parcels.hooks.base import ParcelTrackingHook
from airflow_provider_parcels.hooks.ratelimit import RateLimiter

pytestmark = pytest.mark.smoke

APIS = ("whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine")
PACKAGE_DIR = Path(airflow_provider_parcels.__file__).resolve().parent


def test_the_installed_package_is_complete_and_registered():
    dist = importlib.metadata.distribution("airflow-provider-parcels")
    assert dist.version == airflow_provider_parcels.__version__
    for part in ("py.typed", "sandbox/__main__.py", "sandbox/pytest_plugin.py", "get_provider_info.py"):
        assert (PACKAGE_DIR / part).is_file(), part
    groups = {(ep.group, ep.name): ep.value for ep in dist.entry_points}
    assert groups[("apache_airflow_provider", "provider_info")] == (
        "airflow_provider_parcels.get_provider_info:get_provider_info"
    )
    assert groups[("pytest11", "parcels_sandbox")] == "airflow_provider_parcels.sandbox.pytest_plugin"
    if os.environ.get("PARCELS_SMOKE_EXPECT_INSTALLED_WHEEL"):
        # Imported from the venv's site-packages, installed from a wheel (not editable).
        assert Path(sys.prefix).resolve() in PACKAGE_DIR.parents, (PACKAGE_DIR, sys.prefix)
        assert "site-packages" in PACKAGE_DIR.parts
        direct_url = dist.read_text("direct_url.json") or ""
        assert '"editable": true' not in direct_url, direct_url


@pytest.fixture
def sandbox_conn(parcels_sandbox_clean, monkeypatch):
    """Point ``<api>_default`` at the sandbox (fixture from the installed pytest11 plugin)."""

    def use(api: str) -> str:
        monkeypatch.setenv(*parcels_sandbox_clean.conn_env(api))
        RateLimiter._registry.clear()
        return f"{api}_default"

    return use


@pytest.mark.parametrize("api", APIS)
def test_track_one_call_per_api_against_the_sandbox(api, sandbox_conn, parcels_sandbox_clean):
    sandbox_conn(api)
    numbers = {"DLV-SMOKE-1": "delivered", "EXC-SMOKE-2": "exception", "NFD-SMOKE-3": "not_found"}
    hook = hook_class(api)()  # default connection id: <api>_default
    try:
        results = hook.track([{"carrier": "ups", "tracking_number": n} for n in numbers])
    finally:
        hook.close()
    assert [r.tracking_number for r in results] == list(numbers)
    assert {r.tracking_number: r.status.value for r in results} == numbers
    # TrackingMore ``notfound`` is a tracking the account holds with no scan yet: an answer, no error
    nfd_error = None if api == "trackingmore" else "not_found"
    assert [r.error.code if r.error else None for r in results] == [None, None, nfd_error]
    assert all(r.provider == api for r in results)
    assert results[0].events, "a delivered parcel has a carrier history"
    stats = parcels_sandbox_clean.stats()[api]
    assert stats["requests"] >= 1 and stats["rate_limited"] == 0


def test_dag_test_with_the_sensor_deferred(sandbox_conn, parcels_sandbox_clean, monkeypatch):
    """``sensor_wait_deferrable`` (tests/dags): first check on the worker, then the trigger polls."""
    conn_id = sandbox_conn("shipengine")
    polls = []
    original = ParcelTrackingHook.atrack

    async def counting_atrack(self, parcels):
        polls.append(len(parcels))
        return await original(self, parcels)

    monkeypatch.setattr(ParcelTrackingHook, "atrack", counting_atrack)
    wanted = [{"carrier": "ups", "tracking_number": f"POLLD2-SMOKE-{i}"} for i in range(3)]

    run = run_dag("sensor_wait_deferrable", conf={"conn_id": conn_id, "parcels": wanted})

    assert task_states(run) == {"wait": "success"}
    assert polls, "the sensor never deferred: the trigger's async poll did not run"
    assert set(polls) == {3}
    result = xcom_pull(run, "wait")
    assert [(r["tracking_number"], r["status"]) for r in result] == [
        (p["tracking_number"], "delivered") for p in wanted
    ]
    # 3 lookups on the worker, then in transit once more and delivered at the third lookup.
    assert parcels_sandbox_clean.stats()["shipengine"]["items"] == 3 * 3
