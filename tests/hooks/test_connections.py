"""Each hook reads its connection: base URL, auth header, plan, overrides and clear errors."""

from __future__ import annotations

import json

import pytest

from airflow_provider_parcels.hooks import hook_class
from airflow_provider_parcels.hooks.exceptions import ParcelConnectionError
from airflow_provider_parcels.hooks.parcellab import ParcelLabHook
from airflow_provider_parcels.hooks.shipengine import ShipEngineHook
from airflow_provider_parcels.hooks.trackflow import TrackFlowHook
from airflow_provider_parcels.hooks.trackingmore import TrackingMoreHook
from airflow_provider_parcels.hooks.whereparcel import WhereParcelHook

KEY = "live-key-0123456789"
SECRET = "live-secret-9876543210"

# (hook, conn type, expected auth headers, documented default URL)
CASES = [
    (WhereParcelHook, {"Authorization": f"Bearer {KEY}:{SECRET}"}, "https://api.whereparcel.com"),
    (TrackingMoreHook, {"Trackingmore-Api-Key": SECRET}, "https://api.trackingmore.com/v2"),
    (TrackFlowHook, {"X-API-Key": SECRET}, "https://api.trackflow.io"),
    (ParcelLabHook, {"Authorization": f"Bearer {SECRET}"}, "https://api.parcellab.com"),
    (ShipEngineHook, {"API-Key": SECRET}, "https://api.shipengine.com"),
]
IDS = [c[0].conn_type for c in CASES]


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def creds(hook_cls) -> dict:
    if hook_cls is WhereParcelHook:
        return {"login": KEY, "password": SECRET}
    return {"password": SECRET}


@pytest.mark.parametrize(("hook_cls", "auth", "default_url"), CASES, ids=IDS)
def test_default_conn_id_auth_header_and_default_url(monkeypatch, hook_cls, auth, default_url):
    set_conn(monkeypatch, hook_cls.default_conn_name, conn_type=hook_cls.conn_type, **creds(hook_cls))
    hook = hook_cls()
    assert hook.conn_id == f"{hook_cls.conn_type}_default"
    assert hook.settings.base_url == default_url
    headers = hook.headers()
    for name, value in auth.items():
        assert headers[name] == value
    assert headers["User-Agent"].startswith("airflow-provider-parcels/")


@pytest.mark.parametrize(("hook_cls", "auth", "default_url"), CASES, ids=IDS)
def test_host_override_with_path_prefix(monkeypatch, hook_cls, auth, default_url):
    set_conn(monkeypatch, "x", conn_type=hook_cls.conn_type, host="http://127.0.0.1:8765/sandbox/api/",
             **creds(hook_cls))
    hook = hook_cls("x")
    assert hook.settings.base_url == "http://127.0.0.1:8765/sandbox/api"
    assert hook.url("/v1/tracking") == "http://127.0.0.1:8765/sandbox/api/v1/tracking"


def test_uri_form_with_schema_as_path_prefix_and_port(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SE", f"shipengine://:{SECRET}@127.0.0.1:8765/shipengine?scheme=http")
    hook = ShipEngineHook("se")
    assert hook.settings.base_url == "http://127.0.0.1:8765/shipengine"
    assert hook.headers()["API-Key"] == SECRET


def test_host_without_scheme_defaults_to_https(monkeypatch):
    set_conn(monkeypatch, "tf", conn_type="trackflow", host="eu.trackflow.example", port=8443, password=SECRET)
    assert TrackFlowHook("tf").settings.base_url == "https://eu.trackflow.example:8443"


@pytest.mark.parametrize(
    ("hook_cls", "plan", "rpm", "batch"),
    [
        (WhereParcelHook, "free", 1, 5),
        (WhereParcelHook, "starter", 30, 5),
        (WhereParcelHook, "pro", 60, 5),
        (WhereParcelHook, "business", 200, 5),
        (TrackFlowHook, "free", 10, 5),
        (TrackFlowHook, "starter", 60, 20),
        (TrackFlowHook, "growth", 300, 50),
        (TrackFlowHook, "enterprise", None, 50),
        (TrackingMoreHook, "standard", 60, 40),
        (ShipEngineHook, "advanced", 200, 1),
    ],
)
def test_plan_sets_documented_quota_and_batch(monkeypatch, hook_cls, plan, rpm, batch):
    set_conn(monkeypatch, "p", conn_type=hook_cls.conn_type, extra={"plan": plan}, **creds(hook_cls))
    settings = hook_cls("p").settings
    assert settings.requests_per_minute == rpm
    assert settings.batch_size == batch


def test_overrides_win_over_plan(monkeypatch):
    extra = {"plan": "growth", "requests_per_minute": "120", "max_concurrency": 3, "timeout": "2.5",
             "batch_size": 10}
    set_conn(monkeypatch, "tf", conn_type="trackflow", password=SECRET, extra=extra)
    settings = TrackFlowHook("tf").settings
    assert (settings.requests_per_minute, settings.max_concurrency, settings.timeout, settings.batch_size) == (
        120, 3, 2.5, 10)
    # arguments of the hook win over the connection
    assert TrackFlowHook("tf", requests_per_minute=30, quota_share=0.5).settings.requests_per_minute == 15


def test_parcellab_and_shipengine_default_batch_is_one(monkeypatch):
    set_conn(monkeypatch, "pl", conn_type="parcellab", password=SECRET)
    assert ParcelLabHook("pl").settings.batch_size == 1
    assert ParcelLabHook("pl").settings.requests_per_minute is None


@pytest.mark.parametrize(("hook_cls", "auth", "default_url"), CASES, ids=IDS)
def test_missing_key_names_connection_and_field(monkeypatch, hook_cls, auth, default_url):
    set_conn(monkeypatch, "nokey", conn_type=hook_cls.conn_type, host="http://127.0.0.1:1")
    with pytest.raises(ParcelConnectionError) as err:
        _ = hook_cls("nokey").settings
    message = str(err.value)
    assert "'nokey'" in message
    assert ("login" if hook_cls is WhereParcelHook else "password") in message


def test_whereparcel_missing_secret_is_named(monkeypatch):
    set_conn(monkeypatch, "wp", conn_type="whereparcel", login=KEY)
    with pytest.raises(ParcelConnectionError, match=r"'wp'.*secret key.*password"):
        _ = WhereParcelHook("wp").settings


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ({"plan": "platinum"}, r"plan 'platinum'; accepted: business, free, pro, starter"),
        ({"requests_per_minute": -5}, r"'requests_per_minute' must be a number >= 1"),
        ({"max_concurrency": 0}, r"'max_concurrency' must be a number >= 1"),
        ({"timeout": "soon"}, r"'timeout' must be a number"),
        ({"batch_size": 6}, r"'batch_size' 6 exceeds the whereparcel limit of 5"),
        ({"quota_share": 3}, r"'quota_share' must be in \(0, 1\]"),
    ],
)
def test_bad_extras_name_field_and_accepted_values(monkeypatch, extra, pattern):
    set_conn(monkeypatch, "wp", conn_type="whereparcel", login=KEY, password=SECRET, extra=extra)
    with pytest.raises(ParcelConnectionError, match=pattern):
        _ = WhereParcelHook("wp").settings


@pytest.mark.parametrize(("hook_cls", "auth", "default_url"), CASES, ids=IDS)
def test_repr_and_errors_never_show_the_key(monkeypatch, hook_cls, auth, default_url):
    set_conn(monkeypatch, "k", conn_type=hook_cls.conn_type, extra={"plan": "nope"}, **creds(hook_cls))
    hook = hook_cls("k")
    with pytest.raises(ParcelConnectionError) as err:
        _ = hook.settings
    for text in (repr(hook), str(err.value), repr(hook._password), repr(vars(hook))):
        assert SECRET not in text
        assert KEY not in text


def test_hook_class_by_connection_type():
    assert hook_class("shipengine") is ShipEngineHook
    with pytest.raises(ParcelConnectionError, match="expected one of whereparcel, trackingmore"):
        hook_class("http", "my_http")
