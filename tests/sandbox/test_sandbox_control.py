"""Server-wide behaviour: stats, control endpoints, faults, quota header styles, timed outcomes, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import pytest
import requests

from airflow_provider_parcels.sandbox import SandboxServer, SandboxSettings

SE_KEY = {"API-Key": "sandbox-key"}
WP_FREE = {"Authorization": "Bearer sandbox-free:sandbox-secret"}


def _se(sandbox, http, number="DLV1", **kwargs):
    return http.get(sandbox.base_url("shipengine") + "/v1/tracking", headers=SE_KEY,
                    params={"carrier_code": "ups", "tracking_number": number}, **kwargs)


def _wp(sandbox, http, items=1, headers=WP_FREE):
    body = {"trackingItems": [{"carrier": "kr.cj", "trackingNumber": f"TRN{i}"} for i in range(items)]}
    return http.post(sandbox.base_url("whereparcel") + "/v2/track", headers=headers, json=body)


# --- stats, reset, config ------------------------------------------------------------------
def test_stats_endpoint(sandbox, http):
    _wp(sandbox, http, 3, headers={"Authorization": "Bearer sandbox-key:s"})
    _wp(sandbox, http, 5, headers={"Authorization": "Bearer sandbox-key:s"})
    _wp(sandbox, http, 1, headers={"Authorization": "Bearer nope:s"})
    _se(sandbox, http)
    stats = http.get(sandbox.url + "/_sandbox/stats").json()
    assert stats == sandbox.stats()
    wp = stats["whereparcel"]
    assert wp["requests"] == 3 and wp["items"] == 9 and wp["max_batch"] == 5
    assert wp["status_counts"] == {"200": 2, "401": 1}
    assert wp["by_endpoint"] == {"POST /v2/track": 3}
    assert wp["in_flight"] == 0 and wp["max_in_flight"] == 1
    assert stats["shipengine"]["requests"] == 1 and stats["total_requests"] == 4


def test_max_in_flight_with_concurrent_requests(sandbox):
    sandbox.configure(latency_per_item=0.2)

    def call(_):
        with requests.Session() as session:
            return _se(sandbox, session).status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(call, range(4))) == [200] * 4
    assert sandbox.stats()["shipengine"]["max_in_flight"] >= 2


def test_reset_and_config_endpoints(sandbox, http):
    http.headers.update(sandbox.control_headers)
    _se(sandbox, http)
    assert http.post(sandbox.url + "/_sandbox/reset").json() == {"ok": True}
    assert sandbox.stats()["total_requests"] == 0
    changed = http.post(sandbox.url + "/_sandbox/config", json={"rpm": 120, "faults": "503=0.1", "seed": 1,
                                                                 "latency_per_item": 0.01,
                                                                 "ratelimit_style": "http-date",
                                                                 "timeout_delay": 2})
    assert changed.status_code == 200
    assert changed.json() == http.get(sandbox.url + "/_sandbox/config").json()
    assert sandbox.settings == SandboxSettings(rpm=120, faults="503=0.1", seed=1, latency_per_item=0.01,
                                               ratelimit_style="http-date", timeout_delay=2)
    for bad in ({"faults": "boom=1"}, {"faults": "503=0.8,reset=0.5"}, {"ratelimit_style": "x"},
                {"nope": 1}, {"rpm": "many"}, {"latency_per_item": -1}):
        response = http.post(sandbox.url + "/_sandbox/config", json=bad)
        assert response.status_code == 400 and "error" in response.json()
    assert sandbox.settings.rpm == 120
    assert http.get(sandbox.url + "/_sandbox/health").json()["ok"] is True
    assert http.get(sandbox.url + "/elsewhere").status_code == 404


@pytest.mark.parametrize("token", [None, "", "wrong-token", "ünïcode"], ids=["none", "empty", "wrong", "non-ascii"])
def test_control_writes_need_the_servers_token(sandbox, http, token):
    """Any local user can reach a loopback port: without this server's token nobody may switch
    faults on or wipe state under a test run; reading stays open."""
    sandbox.configure(rpm=7)
    _se(sandbox, http)
    headers = {} if token is None else {"X-Sandbox-Token": token.encode().decode("latin-1")}
    for path, body in (("/_sandbox/config", {"faults": "503=1.0"}), ("/_sandbox/reset", None)):
        response = http.post(sandbox.url + path, json=body, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert "X-Sandbox-Token" in response.json()["error"]
    assert sandbox.settings.faults == "" and sandbox.settings.rpm == 7
    assert sandbox.stats()["shipengine"]["requests"] == 1
    for path in ("/_sandbox/stats", "/_sandbox/config", "/_sandbox/health"):
        assert http.get(sandbox.url + path).status_code == 200
    allowed = http.post(sandbox.url + "/_sandbox/config", json={"rpm": 9}, headers=sandbox.control_headers)
    assert allowed.json()["rpm"] == 9


def test_each_server_has_its_own_random_token_unless_the_environment_sets_one(monkeypatch):
    monkeypatch.delenv("PARCELS_SANDBOX_TOKEN", raising=False)
    first, second = SandboxServer(), SandboxServer()
    assert first.control_token != second.control_token and len(first.control_token) >= 24
    monkeypatch.setenv("PARCELS_SANDBOX_TOKEN", "demo-token-1")
    with SandboxServer() as server:
        assert server.control_token == "demo-token-1"
        assert requests.post(server.url + "/_sandbox/reset", headers={"X-Sandbox-Token": "demo-token-1"},
                             timeout=5).json() == {"ok": True}
    assert SandboxServer(control_token="given").control_token == "given"


def test_reset_forgets_created_data(sandbox, http):
    tm = sandbox.base_url("trackingmore")
    key = {"Trackingmore-Api-Key": "sandbox-key"}
    http.post(tm + "/trackings/post", headers=key, json={"tracking_number": "NEWR1", "carrier_code": "ups"})
    assert http.get(tm + "/trackings/get", headers=key, params={"numbers": "NEWR1"}).json()["data"]["total"] == "1"
    sandbox.reset()
    assert http.get(tm + "/trackings/get", headers=key, params={"numbers": "NEWR1"}).json()["data"]["total"] == "0"


# --- faults ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("api", "status", "check"), [
    ("whereparcel", 503, lambda body: body["error"]["code"] == "SERVICE_UNAVAILABLE"),
    ("trackingmore", 503, lambda body: body["meta"]["code"] == 503),
    ("trackflow", 503, lambda body: body["error"]["code"] == "carrier_unavailable"),
    ("parcellab", 503, lambda body: body == {"detail": "Service temporarily unavailable."}),
    ("shipengine", 503, lambda body: body["errors"][0]["error_type"] == "system"),
])
def test_503_fault_per_api(sandbox, http, api, status, check):
    sandbox.configure(faults="503=1")
    response = http.get(sandbox.base_url(api) + "/anything")
    assert response.status_code == status and check(response.json())
    assert sandbox.stats()[api]["faults"] == {"503": 1}


def test_badjson_reset_and_429_faults(sandbox, http):
    sandbox.configure(faults="badjson=1")
    bad = _se(sandbox, http)
    assert bad.status_code == 200
    with pytest.raises(ValueError):
        bad.json()
    sandbox.configure(faults="reset=1")
    with pytest.raises(requests.ConnectionError):
        _se(sandbox, http)
    sandbox.configure(faults="429=1")
    limited = _se(sandbox, http)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json()["errors"][0]["error_code"] == "rate_limit_exceeded"
    sandbox.configure(faults="")
    assert _se(sandbox, http).status_code == 200
    stats = sandbox.stats()["shipengine"]
    assert stats["faults"] == {"badjson": 1, "reset": 1, "429": 1} and stats["requests"] == 4
    assert stats["rate_limited"] == 1


def test_timeout_fault(sandbox, http):
    sandbox.configure(faults="timeout=1", timeout_delay=0.6)
    with pytest.raises(requests.Timeout):
        _se(sandbox, http, timeout=0.2)
    sandbox.configure(faults="")
    assert _se(sandbox, http, timeout=5).status_code == 200


def _sequence(sandbox, http, count=30):
    outcomes = []
    for _ in range(count):
        try:
            outcomes.append(_se(sandbox, http).status_code)
        except requests.ConnectionError:
            outcomes.append("reset")
    return outcomes


def test_same_seed_same_fault_sequence(sandbox, http):
    sandbox.configure(faults="503=0.3,429=0.2,reset=0.1", seed=42)
    first = _sequence(sandbox, http)
    sandbox.reset()
    assert _sequence(sandbox, http) == first
    sandbox.configure(seed=42)
    assert _sequence(sandbox, http) == first
    assert {200, 503, 429, "reset"} <= set(first)
    sandbox.configure(seed=7)
    assert _sequence(sandbox, http) != first


# --- quota header styles ---------------------------------------------------------------------
@pytest.mark.parametrize("style", ["retry-after", "http-date", "reset-epoch", "reset-epoch-ms", "reset-seconds"])
def test_429_header_styles(sandbox, http, style):
    sandbox.configure(ratelimit_style=style)
    allowed = _wp(sandbox, http)
    assert allowed.status_code == 200
    assert allowed.headers["X-RateLimit-Limit"] == "1" and allowed.headers["X-RateLimit-Remaining"] == "0"
    refused = _wp(sandbox, http)
    assert refused.status_code == 429
    headers, now = refused.headers, time.time()
    assert headers["X-RateLimit-Limit"] == "1" and headers["X-RateLimit-Remaining"] == "0"
    if style == "retry-after":
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert now - 1 <= int(headers["X-RateLimit-Reset"]) <= now + 61
    elif style == "http-date":
        assert "X-RateLimit-Reset" not in headers
        assert now - 1 <= parsedate_to_datetime(headers["Retry-After"]).timestamp() <= now + 62
    else:
        assert "Retry-After" not in headers
        reset = int(headers["X-RateLimit-Reset"])
        if style == "reset-epoch":
            assert now - 1 <= reset <= now + 61
        elif style == "reset-epoch-ms":
            assert (now - 1) * 1000 <= reset <= (now + 61) * 1000
        else:
            assert 1 <= reset <= 60
    assert sandbox.stats()["whereparcel"]["rate_limited"] == 1


def test_rpm_setting_applies_to_keys_without_plan(sandbox, http):
    sandbox.configure(rpm=2)
    assert [_se(sandbox, http).status_code for _ in range(3)] == [200, 200, 429]
    assert _se(sandbox, http).headers["X-RateLimit-Remaining"] == "0"  # refusals are not counted
    headers = {"API-Key": "sandbox-other"}
    other = http.get(sandbox.base_url("shipengine") + "/v1/tracking", headers=headers,
                     params={"carrier_code": "ups", "tracking_number": "DLV1"})
    assert other.status_code == 200  # windows are per key


# --- timed outcomes --------------------------------------------------------------------------
def test_poll_transitions_per_api(sandbox, http):
    assert [_se(sandbox, http, "POLLD2-A").json()["status_code"] for _ in range(4)] == ["IT", "IT", "DE", "DE"]
    assert [_se(sandbox, http, "POLLX1-A").json()["status_code"] for _ in range(3)] == ["IT", "EX", "EX"]
    tf = sandbox.base_url("trackflow") + "/v2/track/POLLD2-A"
    statuses = [http.get(tf, headers={"X-API-Key": "sandbox-key"}).json()["status"] for _ in range(3)]
    assert statuses == ["in_transit", "in_transit", "delivered"]  # counted separately per API
    delivered = _se(sandbox, http, "POLLD2-A").json()
    assert delivered["events"][0]["description"].startswith("Delivered")
    sandbox.reset()
    assert _se(sandbox, http, "POLLD2-A").json()["status_code"] == "IT"


def test_seconds_transition(sandbox, http):
    assert _se(sandbox, http, "SECD1-A").json()["status_code"] == "IT"
    assert _se(sandbox, http, "SECX1-A").json()["status_code"] == "IT"
    time.sleep(1.1)
    assert _se(sandbox, http, "SECD1-A").json()["status_code"] == "DE"
    assert _se(sandbox, http, "SECX1-A").json()["status_code"] == "EX"


def test_latency_applies_per_item(sandbox, http):
    sandbox.configure(latency_per_item=0.05)
    assert _wp(sandbox, http, 2, headers={"Authorization": "Bearer sandbox-key:s"}).status_code == 200
    assert http.get(sandbox.url + "/_sandbox/stats").status_code == 200


# --- helpers and CLI -------------------------------------------------------------------------
def test_connection_helpers(sandbox):
    assert sandbox.connection("shipengine") == {"conn_type": "shipengine", "host": sandbox.url + "/shipengine",
                                                "password": "sandbox-key", "extra": {}}
    wp = sandbox.connection("whereparcel", key="sandbox-pro", plan="pro")
    assert (wp["login"], wp["password"], wp["extra"]) == ("sandbox-pro", "sandbox-secret", {"plan": "pro"})
    assert sandbox.connection("parcellab")["extra"] == {"account": 1}
    name, value = sandbox.conn_env("trackingmore", conn_id="tm")
    assert name == "AIRFLOW_CONN_TM"
    assert json.loads(value) == {"conn_type": "trackingmore", "host": sandbox.url + "/trackingmore/v2",
                                 "password": "sandbox-key"}
    assert sandbox.conn_env("trackflow")[0] == "AIRFLOW_CONN_TRACKFLOW_DEFAULT"
    with pytest.raises(ValueError):
        sandbox.base_url("fedex")


def test_env_fixture(parcels_sandbox_env):
    value = json.loads(os.environ["AIRFLOW_CONN_SHIPENGINE_DEFAULT"])
    assert value["host"] == parcels_sandbox_env.base_url("shipengine")


def test_server_context_manager_and_stop():
    with SandboxServer(settings=SandboxSettings(rpm=5)) as server:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        assert requests.get(server.url + "/_sandbox/config", timeout=5).json()["rpm"] == 5
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/_sandbox/health", timeout=5)


def test_cli_prints_urls_and_stops_on_sigterm():
    process = subprocess.Popen([sys.executable, "-m", "airflow_provider_parcels.sandbox", "--port", "0",
                                "--faults", "503=0.1", "--seed", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(20, process.kill)  # never hang the suite on a silent child
    watchdog.start()
    try:
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Control:"):
                break
        assert lines and lines[0].startswith("Parcels sandbox listening on http://127.0.0.1:")
        url = lines[0].split()[-1]
        assert requests.get(url + "/_sandbox/config", timeout=5).json()["seed"] == 3
        # the banner's control line gives the token that state-changing control calls need
        token = lines[-1].split("X-Sandbox-Token: ", 1)[1].split()[0]
        assert requests.post(url + "/_sandbox/reset", timeout=5).status_code == 403
        assert requests.post(url + "/_sandbox/reset", headers={"X-Sandbox-Token": token}, timeout=5).ok
        exports = dict(line[len("export "):].split("=", 1) for line in lines if line.startswith("export "))
        # the connection ids the example DAGs use (parcels_demo_*), warehouse included
        assert set(exports) == {f"AIRFLOW_CONN_PARCELS_DEMO_{name.upper()}" for name in
                                ("whereparcel", "trackingmore", "trackflow", "parcellab", "shipengine", "warehouse")}
        shipengine = json.loads(exports["AIRFLOW_CONN_PARCELS_DEMO_SHIPENGINE"].strip("'"))
        assert shipengine == {"conn_type": "shipengine", "host": url + "/shipengine", "password": "sandbox-key",
                              "extra": {"requests_per_minute": 6000}}
        whereparcel = json.loads(exports["AIRFLOW_CONN_PARCELS_DEMO_WHEREPARCEL"].strip("'"))
        assert (whereparcel["login"], whereparcel["password"]) == ("sandbox-key", "sandbox-secret")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_cli_rejects_bad_faults():
    result = subprocess.run([sys.executable, "-m", "airflow_provider_parcels.sandbox", "--faults", "x=1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "error" in result.stderr


# --- invented data is marked ------------------------------------------------------------------
@pytest.mark.parametrize(("api", "carrier"), [("whereparcel", "kr.cj"), ("whereparcel", "us.ups"),
                                              ("trackingmore", "usps"), ("trackflow", "ups"),
                                              ("parcellab", "dhl"), ("shipengine", "ups")])
def test_a_real_looking_numbers_invented_history_is_marked_into_the_warehouse(sandbox, monkeypatch, api, carrier,
                                                                              sqlite_conn_id):
    """A number outside the prefix scheme gets a plausible history: every event's location and text
    say ``[sandbox]``, so rows loaded from the sandbox are never taken for a carrier's."""
    from airflow_provider_parcels.hooks import hook_class
    from airflow_provider_parcels.warehouse import ParcelWarehouse

    monkeypatch.setenv(*sandbox.conn_env(api, conn_id="marker", requests_per_minute=600_000))
    numbers = ["1Z204E380338943508", "449044304137821", "TRNMARK0001"]  # two real-looking, one scheme
    results = hook_class(api)("marker").track([{"carrier": carrier, "tracking_number": n} for n in numbers])
    warehouse = ParcelWarehouse(sqlite_conn_id)
    warehouse.load(results)
    names = warehouse._spec("parcel_tracking_events").names
    by_number: dict[str, list[dict]] = {}
    for values in warehouse.dump("parcel_tracking_events"):
        row = dict(zip(names, values, strict=True))
        by_number.setdefault(row["tracking_number"], []).append(row)
    korean = api == "whereparcel" and carrier == "kr.cj"  # WhereParcel writes Korean texts from the status alone
    for number in numbers[:2]:
        assert by_number.get(number), (number, results)
        for row in by_number[number]:
            assert "[sandbox]" in (row["location"] or "").lower(), row
            assert korean or "[sandbox]" in (row["description"] or ""), row
    assert all("[sandbox]" not in json.dumps(row, default=str).lower() for row in by_number["TRNMARK0001"])
