"""The ledger as hooks use it: keys, limits, exhaustion, the fallback when the store is down, status."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers.connections import set_connection
from quota_support import LocalRedis, free_port

from airflow_provider_parcels.hooks.exceptions import ParcelConnectionError
from airflow_provider_parcels.quota import (
    QuotaExhausted,
    QuotaLedger,
    QuotaLimits,
    SQLiteStore,
    credential_hash,
    ledger_key,
    quota_store_of,
    resolve_limits,
)
from airflow_provider_parcels.quota import ledger as ledger_module
from airflow_provider_parcels.quota.stores import store_from_connection

SECRET = "tf_live_sk_" + "x7Qp2" * 4


def test_the_key_is_the_api_and_a_hash_never_the_credential() -> None:
    digest = credential_hash(None, SECRET)
    assert len(digest) == 16
    assert SECRET not in digest and SECRET[:8] not in digest
    assert digest == credential_hash("", f" {SECRET} ")  # the hook strips the fields too
    assert digest != credential_hash(None, SECRET + "y")
    assert credential_hash("login", SECRET) != credential_hash("log", "in" + SECRET)
    assert ledger_key("trackflow", digest) == f"trackflow:{digest}"


def test_limits_come_from_the_plan_or_the_extras_and_ignore_quota_share() -> None:
    from airflow_provider_parcels.hooks.trackflow import TrackFlowHook
    from airflow_provider_parcels.hooks.whereparcel import WhereParcelHook

    growth = resolve_limits(conn_id="c", provider="trackflow", extra={"plan": "Growth", "quota_share": 0.25},
                            plans=TrackFlowHook.plans)
    assert growth == QuotaLimits(requests_per_minute=300, requests_per_day=100_000, requests_per_month=None)
    pro = resolve_limits(conn_id="c", provider="whereparcel", extra={"plan": "pro"}, plans=WhereParcelHook.plans)
    assert (pro.requests_per_minute, pro.requests_per_day, pro.requests_per_month) == (60, None, 30_000)
    own = resolve_limits(conn_id="c", provider="whereparcel", extra={"plan": "pro", "requests_per_month": "1000"},
                         overrides={"requests_per_minute": 20}, plans=WhereParcelHook.plans)
    assert (own.requests_per_minute, own.requests_per_month) == (20, 1000)
    assert resolve_limits(conn_id="c", provider="shipengine", extra={}) == QuotaLimits()
    with pytest.raises(ParcelConnectionError, match="'requests_per_day'"):
        resolve_limits(conn_id="c", provider="trackflow", extra={"requests_per_day": "lots"})
    assert quota_store_of({"quota_store": " redis_quota "}) == "redis_quota"
    assert quota_store_of({"quota_store": ""}) is None
    assert quota_store_of({}, {"quota_store": "pg"}) == "pg"


def test_an_exhausted_budget_says_which_and_when_it_resets(tmp_path: Path) -> None:
    ledger = QuotaLedger(f"trackflow:{uuid.uuid4().hex[:16]}", QuotaLimits(requests_per_day=5),
                         SQLiteStore(tmp_path / "q.db"))
    assert ledger.reserve(4).ok
    refused = ledger.reserve(2)
    assert not refused.ok and refused.wait_seconds == 0
    exhausted = refused.exhausted
    assert isinstance(exhausted, QuotaExhausted)
    assert (exhausted.period, exhausted.limit, exhausted.used, exhausted.remaining) == ("day", 5, 4, 1)
    assert exhausted.code == "quota_exhausted"
    midnight = (int(time.time()) // 86_400 + 1) * 86_400
    assert abs(exhausted.resets_at.timestamp() - midnight) < 2
    assert "trackflow daily quota of 5" in exhausted.message
    assert exhausted.resets_at.isoformat(timespec="seconds") in exhausted.message
    assert ledger.reserve(1).ok  # what is left still fits a smaller request


def test_lower_remaining_from_the_api_and_a_shared_pause(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    key = f"whereparcel:{uuid.uuid4().hex[:16]}"
    first = QuotaLedger(key, QuotaLimits(requests_per_month=10_000), store)
    other = QuotaLedger(key, QuotaLimits(requests_per_month=10_000), SQLiteStore(tmp_path / "q.db"))
    first.reserve()
    first.lower_remaining("month", 1, reset_at=time.time() + 7 * 86_400)
    assert other.reserve().ok
    refused = other.reserve()
    assert refused.exhausted is not None and refused.exhausted.period == "month"
    assert abs(refused.exhausted.resets_at.timestamp() - (time.time() + 7 * 86_400)) < 5
    first.pause(5)
    third = QuotaLedger("trackflow:other", QuotaLimits(), store)
    assert third.reserve().wait_seconds == 0  # another key is not held back
    assert QuotaLedger(key, QuotaLimits(), store).reserve().exhausted is not None
    assert QuotaLedger(key + "b", QuotaLimits(), store).reserve().wait_seconds == 0
    status = other.status()
    assert status.paused_until is not None
    assert 3 < status.paused_until.timestamp() - time.time() <= 5.5


def test_reserve_async_runs_beside_the_event_loop(tmp_path: Path) -> None:
    ledger = QuotaLedger("trackflow:async", QuotaLimits(requests_per_minute=600), SQLiteStore(tmp_path / "q.db"))

    async def main() -> list[float]:
        return [r.wait_seconds for r in await asyncio.gather(*(ledger.reserve_async() for _ in range(5)))]

    waits = sorted(asyncio.run(main()))
    assert waits[0] == pytest.approx(0, abs=0.05)
    assert waits[-1] == pytest.approx(4 * ledger.limits.interval, abs=0.05)


def test_an_unreachable_store_falls_back_to_this_process_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: tracking goes on, paced by the process alone; when Redis is back the ledger is shared again."""
    port = free_port()
    conn_id = set_connection(monkeypatch, "parcels_test_redis_down", "redis", host="127.0.0.1", port=port)
    monkeypatch.setattr(ledger_module, "RETRY_STORE_AFTER", 0.5)
    key = uuid.uuid4().hex[:16]
    store = store_from_connection(conn_id)
    ledger = QuotaLedger.for_hook("trackflow", key, QuotaLimits(requests_per_minute=600), store)
    with caplog.at_level(logging.INFO, logger=ledger_module.__name__):
        waits = [ledger.reserve().wait_seconds for _ in range(3)]
        assert waits == pytest.approx([0, 0.102, 0.204], abs=0.03)  # still paced, by this process
        assert ledger.using_fallback and ledger.status().store == "fallback"
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "unreachable" in warnings[0].getMessage() and SECRET not in warnings[0].getMessage()
        server = LocalRedis(port).start()
        try:
            time.sleep(0.6)
            assert ledger.reserve().wait_seconds == 0  # the store again: its ledger is new
            assert not ledger.using_fallback
            assert any("reachable again" in r.getMessage() for r in caplog.records)
            assert ledger.status().day.used == 1
        finally:
            server.close()
        assert ledger.reserve().ok
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2  # a new outage, a new warning


def test_an_unreachable_postgres_falls_back_too(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = set_connection(monkeypatch, "parcels_test_pg_down", "postgres", host="127.0.0.1", port=free_port(),
                             login="nobody", schema="nothing")
    ledger = QuotaLedger("trackflow:pgdown", QuotaLimits(requests_per_day=2), store_from_connection(conn_id))
    assert [ledger.reserve().ok for _ in range(3)] == [True, True, False]  # the budget still counts, locally
    assert ledger.using_fallback


def test_status_command_shows_a_connection_and_the_whole_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_quota_conn_id: str
) -> None:
    conn_id = set_connection(monkeypatch, "parcels_test_trackflow_quota", "trackflow", password=SECRET,
                             extra={"plan": "growth", "quota_store": sqlite_quota_conn_id})
    from airflow_provider_parcels.hooks.trackflow import TrackFlowHook

    limits = resolve_limits(conn_id=conn_id, provider="trackflow", extra={"plan": "growth"}, plans=TrackFlowHook.plans)
    ledger = QuotaLedger.for_hook("trackflow", credential_hash(None, SECRET), limits,
                                  store_from_connection(sqlite_quota_conn_id))
    assert ledger.reserve(50).ok
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "airflow_provider_parcels.quota", "status"]
    one = subprocess.run([*cmd, conn_id], capture_output=True, text=True, env=env, timeout=120)
    assert one.returncode == 0, one.stderr
    assert f"trackflow:{credential_hash(None, SECRET)}" in one.stdout
    assert "300/min" in one.stdout and "day: 50 of 100000 used, 99950 left" in one.stdout
    assert SECRET not in one.stdout + one.stderr
    listed = subprocess.run([*cmd, "--store", sqlite_quota_conn_id, "--json"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["day"]["used"] == 50 and row["key"].startswith("trackflow:")
    empty = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert empty.returncode == 0 and "no API key" in empty.stdout


def test_a_quota_store_that_is_not_a_store_is_a_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "parcels_test_not_a_store", "http", host="example.invalid")
    with pytest.raises(ParcelConnectionError, match=r"'quota_store' 'parcels_test_not_a_store'.*type 'http'"):
        QuotaLedger.for_hook("trackflow", "abc", QuotaLimits(), "parcels_test_not_a_store")
    with pytest.raises(ParcelConnectionError, match="'quota_store' 'parcels_test_no_such_conn'"):
        QuotaLedger.for_hook("trackflow", "abc", QuotaLimits(), "parcels_test_no_such_conn")


def test_the_embedded_store_is_a_file_under_airflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_parcels.quota import stores

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("PARCELS_QUOTA_DB", raising=False)  # the tests' own file per test (tests/conftest.py)
    monkeypatch.setattr(stores, "_stores", {})
    ledger = QuotaLedger.for_hook("trackflow", credential_hash(None, SECRET), QuotaLimits(requests_per_day=3))
    assert ledger.store.name == f"sqlite:{tmp_path / 'parcels_quota.db'}"
    assert ledger.reserve(3).ok and not ledger.reserve().ok
    assert QuotaLedger.for_hook("trackflow", credential_hash(None, SECRET), QuotaLimits()) is ledger
    assert SECRET.encode() not in (tmp_path / "parcels_quota.db").read_bytes()
