"""Secrets: every flow at DEBUG, and the keys appear nowhere a user or a log reader can see.

For each API: tracking (sync, requests/urllib3) and ``atrack`` (async, httpx/httpcore) through
faults (so retries log their reasons), the Test button, a refused key, the API's own extra calls
(orders, registrations, webhooks), the trigger's ``serialize()`` and its events; then the whole
package in one ``dag.test()`` run (tasks, XComs, a deferrable sensor). The key, the WhereParcel
secret key and the TrackFlow webhook secret must appear in no log line (caught at DEBUG, in the
log records and on stdout/stderr), no exception message, no ``repr()`` of a hook, no XCom value
and no trigger ``serialize()`` or event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import airflow_env
from helpers.dags import run_dag, task_states, xcom_pull
from reliability_support import APIS, CARRIER, FAST, FIGURES, connection_json, env_name, sqlite_conn

from airflow_provider_parcels.hooks import hook_class
from airflow_provider_parcels.hooks.exceptions import ParcelApiAuthError
from airflow_provider_parcels.models import Parcel
from airflow_provider_parcels.triggers.parcel_status import ParcelStatusTrigger

LOGGERS = ("", "urllib3", "requests", "httpx", "httpcore", "airflow_provider_parcels")
#: Airflow's structlog loggers of the package's hooks, operators, sensors and triggers.
STRUCTLOG_PREFIXES = (*(f"airflow.task.{kind}.airflow_provider_parcels" for kind in ("hooks", "operators")),
                      "airflow_provider_parcels")
FAULTS = "429=0.05,503=0.15,timeout=0.05,badjson=0.1,reset=0.05"
#: Its first draw (0.134) is a 503: the first call, which the hook always sends alone, is retried.
FAULT_SEED = 1


def secrets_for(api: str) -> dict[str, str]:
    """Distinctive credentials for ``api`` (the sandbox accepts keys that start with ``sandbox``)."""
    tag = api[:4].upper()
    out = {"key": f"sandbox-K3y{tag}q8Zr7w"}
    if api == "whereparcel":
        out["secret"] = f"S3cr3t{tag}x1Vb9Lp"
    if api == "trackflow":
        out["webhook_secret"] = f"whsec{tag}m4Ny6Tq"
    return out


WRONG_KEY = "wrong-K3yNOPEz5Ux2c"
ALL_SECRETS = [WRONG_KEY] + [value for api in APIS for value in secrets_for(api).values()]


@pytest.fixture
def debug_logs(caplog):
    """Everything at DEBUG: the stdlib loggers (the HTTP clients', the package's) and the structlog
    loggers Airflow gives hooks and operators (their level is read when a logger is first used, so
    the hooks of the test, made afterwards, log at DEBUG)."""
    # Airflow's per-logger levels (core and task SDK each carry a copy of the structlog setup)
    from airflow._shared.logging.structlog import PER_LOGGER_LEVELS as core_levels
    from airflow.sdk._shared.logging.structlog import PER_LOGGER_LEVELS as sdk_levels

    caplog.set_level(logging.DEBUG)
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    for levels in (core_levels, sdk_levels):
        for prefix in STRUCTLOG_PREFIXES:
            levels[prefix] = logging.DEBUG
    yield caplog
    for levels in (core_levels, sdk_levels):
        for prefix in STRUCTLOG_PREFIXES:
            del levels[prefix]
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def assert_no_secret(texts: dict[str, str], secrets: list[str]) -> None:
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} appears in {where}"


def secret_conn(sandbox, api: str, conn_id: str, monkeypatch, key: str | None = None, **extra) -> None:
    values = secrets_for(api)
    if "webhook_secret" in values:
        extra.setdefault("webhook_secret", values["webhook_secret"])
    monkeypatch.setenv(env_name(conn_id), connection_json(sandbox, api, key=key or values["key"],
                                                          secret=values.get("secret"), **extra))


def run_trigger(trigger: ParcelStatusTrigger) -> list[dict]:
    async def collect() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def _extra_calls(api: str, hook) -> list[str]:
    """Each API's calls beyond tracking; what they gave back (or raised), as text. Faults may make
    any of them fail after its retries: an error's message is checked like any other text."""
    calls = {
        "parcellab": [
            lambda: hook.upsert_orders([{"order_number": "REL-SEC-1", "recipient_email": "_unset"},
                                        {"order_number": "REL-SEC-2", "recipient_email": "not-an-email"}]),
            lambda: hook.get_order("REL-SEC-1"),
            lambda: list(hook.list_orders(page_size=1000))[:3],
        ],
        "trackingmore": [
            lambda: hook.create_trackings([{"carrier": "usps", "tracking_number": "NEWDLVSEC001"},
                                           {"carrier": "usps", "tracking_number": "bad number"}]),
        ],
        "whereparcel": [lambda: hook.register_webhook("https://example.com/hook", parcel=Parcel("kr.cj", "DLVSEC01"))],
        "trackflow": [
            lambda sig=signature: hook.verify_webhook(b'{"tracking_number": "DLVSEC0001"}', sig,
                                                      timestamp=str(time.time()))
            for signature in (None, "sha256=00", "deadbeef")
        ],
        "shipengine": [],  # tracking is all it offers
    }[api]
    out = []
    for call in calls:
        try:
            out.append(repr(call()))
        except Exception as err:
            out.append(f"{type(err).__name__}: {err} {err!r}")
    if api == "trackflow":
        assert all(text.startswith("WebhookSignatureError") for text in out), out
    return out


@pytest.mark.parametrize("api", APIS)
def test_no_secret_in_logs_errors_reprs_or_trigger_at_debug(api, sandbox, monkeypatch, debug_logs, capfd):
    sandbox.configure(faults=FAULTS, seed=FAULT_SEED, timeout_delay=0.5)
    secret_conn(sandbox, api, "rel_secret", monkeypatch, timeout=0.3, max_retries=3, **FAST)
    secret_conn(sandbox, api, "rel_wrong", monkeypatch, key=WRONG_KEY, max_retries=0, **FAST)
    cls = hook_class(api)
    hook = cls("rel_secret")
    parcels = [{"carrier": CARRIER[api], "tracking_number": f"{p}SEC{i:05d}"}
               for i, p in enumerate(["DLV", "TRN", "NFD", "EXC", "RL", "RL"])]
    texts: dict[str, str] = {}

    results = hook.track(parcels)
    results += asyncio.run(cls("rel_secret").atrack(parcels))
    texts["results"] = json.dumps([r.to_dict() for r in results], default=str)
    texts["test_connection"] = repr(hook.test_connection())
    texts["extra calls"] = "\n".join(_extra_calls(api, hook))
    texts["repr(hook)"] = repr(hook) + str(hook) + repr(hook.settings)

    sandbox.configure(faults="")
    wrong = cls("rel_wrong")
    with pytest.raises(ParcelApiAuthError) as sync_err:
        wrong.track(parcels)
    with pytest.raises(ParcelApiAuthError) as async_err:
        asyncio.run(cls("rel_wrong").atrack(parcels))
    texts["auth errors"] = "\n".join(f"{e!s} {e!r} {e.args!r}" for e in (sync_err.value, async_err.value))
    texts["wrong test_connection"] = repr(wrong.test_connection())
    texts["repr(wrong hook)"] = repr(wrong)
    assert "'rel_wrong'" in str(sync_err.value)

    trigger_kwargs = {"conn_type": api, "parcels": parcels[:2], "poll_interval": 0.01, "end_time": time.time() + 60,
                      "hook_params": {"max_retries": 0}}
    good_trigger = ParcelStatusTrigger(conn_id="rel_secret", target_statuses=("delivered", "in_transit"),
                                       **trigger_kwargs)
    bad_trigger = ParcelStatusTrigger(conn_id="rel_wrong", **trigger_kwargs)
    texts["trigger serialize"] = json.dumps([good_trigger.serialize(), bad_trigger.serialize()])
    good_events, bad_events = run_trigger(good_trigger), run_trigger(bad_trigger)
    assert good_events[0]["status"] == "success" and bad_events[0]["status"] == "error", (good_events, bad_events)
    texts["trigger events"] = json.dumps(good_events + bad_events, default=str)
    texts["trigger serialize after run"] = json.dumps([good_trigger.serialize(), bad_trigger.serialize()])

    captured = capfd.readouterr()
    texts["log records"] = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in debug_logs.records)
    texts["stdout/stderr"] = captured.out + captured.err
    names = {r.name for r in debug_logs.records}
    assert {"urllib3.connectionpool", "httpx"} <= names, f"DEBUG logging captured too little: {sorted(names)}"
    assert "retry 1 after" in texts["stdout/stderr"], "the hook's DEBUG retry lines were not captured"
    assert_no_secret(texts, ALL_SECRETS)
    FIGURES.setdefault("secrets: places checked per API", {})[api] = len(texts)


def test_no_secret_in_a_whole_dag_run_xcoms_task_logs_and_sensor(sandbox, monkeypatch, debug_logs, capfd,
                                                                 tmp_path, airflow_db):
    sandbox.configure(faults="503=0.1,badjson=0.05,reset=0.05", seed=3)
    for api in APIS:
        secret_conn(sandbox, api, f"rel_secret_{api}", monkeypatch, **FAST)
    secret_conn(sandbox, "shipengine", "rel_secret_wrong", monkeypatch, key=WRONG_KEY, **FAST)
    monkeypatch.setenv(env_name("rel_secret_wh"), sqlite_conn(tmp_path / "wh.db"))
    started = time.time()
    conf = {
        "parcels": {api: [{"carrier": CARRIER[api], "tracking_number": f"{p}DAG{i:04d}"}
                          for i, p in enumerate(["DLV", "NFD", "RL", "EXC"])] for api in APIS},
        "orders": [{"order_number": f"REL-DAG-{i}", "recipient_email": "_unset"} for i in range(3)],
        "register": [{"carrier": "usps", "tracking_number": f"NEWDAG{i:04d}"} for i in range(3)],
        "wait": [{"carrier": "ups", "tracking_number": f"POLLD1DAG{i:03d}"} for i in range(2)],
    }
    run = run_dag("reliability_secrets", conf=conf)
    states = task_states(run)
    expected = {f"track_{api}": "success" for api in APIS}
    expected.update(orders="success", register="success", wait="success", wrong_key="failed")
    assert states == expected
    for api in APIS:
        assert sandbox.stats()[api]["requests"] > 0
    assert sandbox.stats()["trackflow"]["by_endpoint"], "the sensor never asked"

    texts = {f"xcom {task}": json.dumps(xcom_pull(run, task), default=str) for task in states}
    assert all(texts[f"xcom track_{api}"] != "null" for api in APIS)
    captured = capfd.readouterr()
    texts["log records"] = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in debug_logs.records)
    texts["stdout/stderr"] = captured.out + captured.err
    # the refused key's task failed with a message naming the connection (and only that)
    assert "refused the credentials of connection 'rel_secret_wrong'" in texts["stdout/stderr"] + texts["log records"]
    for path in Path(airflow_env.home(), "logs").rglob("*"):
        if path.is_file() and path.stat().st_mtime >= started - 1:
            texts[f"log file {path.name}"] = path.read_text(errors="replace")
    assert_no_secret(texts, ALL_SECRETS)


# ------------------------------------------------------------------ an API that echoes the key back

ECHO_KEY = "echo-K3yLowerUpper7q"
ECHO_SECRET = "echo-S3cretMixed9Vb"
ECHO_WEBHOOK_SECRET = "echo-Wh00kSecret4Ny"


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers the calls the hooks make with errors that quote the credentials it was sent, in upper
    case (an API that normalises what it quotes), and whatever the server's ``also`` adds."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:
        return

    def _credentials(self) -> str:
        values = [self.headers.get("X-API-Key"), self.headers.get("Trackingmore-Api-Key"),
                  self.headers.get("API-Key")]
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            values += auth[7:].split(":")
        return " ".join(v.upper() for v in values if v) + " " + self.server.also  # type: ignore[attr-defined]

    def _answer(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        echo = self._credentials()
        path = self.path.split("?", 1)[0]
        if path.endswith("/trackings/batch"):
            errors = [{"tracking_number": row["tracking_number"], "code": 4130, "message": f"key {echo} invalid"}
                      for row in body]
            self._answer(200, {"meta": {"code": 200, "message": "ok"}, "data": {"trackings": [], "errors": errors}})
        elif path.endswith("/trackings/get"):
            self._answer(200, {"meta": {"code": 4101, "message": f"request with key {echo} refused"}})
        elif path.endswith("/v4/track/orders/"):
            self._answer(400, {"detail": f"token {echo} may not write orders"})
        elif path.endswith("/v2/webhooks/register"):
            self._answer(400, {"success": False, "error": {"code": "INVALID", "message": f"key {echo} cannot"}})
        else:
            self._answer(404, {"success": False, "error": {"code": "not_found", "message": f"no parcel for {echo}"}})

    do_GET = do_POST = do_PUT = _route


@pytest.fixture
def echo_api():
    """A real HTTP server on loopback that echoes the credentials (see ``_EchoHandler``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.also = ""  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def echo_conn(server, api: str, conn_id: str, monkeypatch, **extra) -> None:
    conn = {"conn_type": api, "host": f"http://127.0.0.1:{server.server_address[1]}",
            "extra": {"max_retries": 0, **FAST, **extra}}
    if api == "whereparcel":
        conn.update(login=ECHO_KEY, password=ECHO_SECRET)
    else:
        conn["password"] = ECHO_KEY
    monkeypatch.setenv(env_name(conn_id), json.dumps(conn))


ECHOED = [ECHO_KEY, ECHO_SECRET, ECHO_WEBHOOK_SECRET]


def assert_echo_hidden(text: str) -> None:
    for secret in ECHOED:
        assert secret.lower() not in text.lower(), f"{secret!r} (in some case) appears in {text!r}"


@pytest.mark.parametrize("api", APIS)
def test_a_key_echoed_in_upper_case_is_redacted_in_error_rows(api, echo_api, monkeypatch):
    echo_api.also = ECHO_WEBHOOK_SECRET if api == "trackflow" else ""
    echo_conn(echo_api, api, "rel_echo", monkeypatch, **({"webhook_secret": ECHO_WEBHOOK_SECRET}
                                                         if api == "trackflow" else {}))
    hook = hook_class(api)("rel_echo")
    results = hook.track([{"carrier": CARRIER[api], "tracking_number": "ECHO00001"}])
    assert results[0].error is not None and "***" in results[0].error.message, results[0].error
    assert_echo_hidden(json.dumps([r.to_dict() for r in results], default=str))


def test_trackingmore_create_results_and_operator_xcom_hide_an_echoed_key(echo_api, monkeypatch):
    from airflow_provider_parcels.operators.orders import CreateTrackingMoreTrackingsOperator

    echo_conn(echo_api, "trackingmore", "rel_echo", monkeypatch)
    results = hook_class("trackingmore")("rel_echo").create_trackings([{"carrier": "usps",
                                                                         "tracking_number": "ECHO00001"}])
    assert results[0].outcome == "error" and "***" in results[0].message
    assert_echo_hidden(repr(results))
    parcels = [{"carrier": "usps", "tracking_number": "ECHO00002"}]
    xcom = CreateTrackingMoreTrackingsOperator(task_id="t", parcels=parcels, conn_id="rel_echo").execute({})
    assert xcom["failed"] == 1
    assert_echo_hidden(json.dumps(xcom))
    with pytest.raises(Exception) as err:
        CreateTrackingMoreTrackingsOperator(task_id="t", parcels=parcels, conn_id="rel_echo",
                                            fail_on_errors=True).execute({})
    assert "ECHO00002" in str(err.value)
    assert_echo_hidden(f"{err.value} {err.value!r}")


def test_parcellab_upsert_results_operator_xcom_and_failure_hide_an_echoed_token(echo_api, monkeypatch):
    from airflow_provider_parcels.operators.orders import CreateParcelLabOrdersOperator

    echo_conn(echo_api, "parcellab", "rel_echo", monkeypatch, account=1)
    orders = [{"order_number": "ECHO-1", "recipient_email": "_unset"},
              {"order_number": "ECHO-2", "recipient_email": "_unset", "account": ECHO_KEY}]  # a key pasted by mistake
    results = hook_class("parcellab")("rel_echo").upsert_orders(orders[:1])
    assert results[0].outcome == "error" and "***" in results[0].message
    assert_echo_hidden(repr(results))
    xcom = CreateParcelLabOrdersOperator(task_id="o", orders=orders, conn_id="rel_echo").execute({})
    assert xcom["failed"] == 2
    assert_echo_hidden(json.dumps(xcom))
    with pytest.raises(Exception) as err:
        CreateParcelLabOrdersOperator(task_id="o", orders=orders, conn_id="rel_echo", fail_on_errors=True).execute({})
    assert "ECHO-1" in str(err.value)
    assert_echo_hidden(f"{err.value} {err.value!r}")


def test_whereparcel_register_webhook_error_hides_key_and_secret(echo_api, monkeypatch):
    echo_conn(echo_api, "whereparcel", "rel_echo", monkeypatch)
    with pytest.raises(ValueError, match="refused the webhook") as err:
        hook_class("whereparcel")("rel_echo").register_webhook("https://example.com/hook")
    assert "*** ***" in str(err.value)
    assert_echo_hidden(f"{err.value} {err.value!r}")


@pytest.mark.parametrize("api", APIS)
def test_userinfo_of_the_host_url_is_hidden_in_error_rows_and_the_test_button(api, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on: every call is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = {"conn_type": api, "host": f"http://alice:Us3rinfoPw9x@127.0.0.1:{port}/api", "password": "sandbox-key",
            "login": "sandbox-key", "extra": {"max_retries": 0, "account": 1, **FAST}}
    monkeypatch.setenv(env_name("rel_userinfo"), json.dumps(conn))
    hook = hook_class(api)("rel_userinfo")
    (result,) = hook.track([{"carrier": CARRIER[api], "tracking_number": "DLV00001"}])
    ok, message = hook.test_connection()
    assert result.error is not None and not ok
    for text in (json.dumps(result.to_dict(), default=str), message):
        assert "Us3rinfoPw9x" not in text and "alice" not in text, text


def test_userinfo_in_a_bad_host_is_hidden_in_the_connection_error(monkeypatch):
    from airflow_provider_parcels.hooks.exceptions import ParcelConnectionError

    conn = {"conn_type": "shipengine", "host": "ftp://bob:Ftp5ecretPw@files.example.com", "password": "sandbox-key"}
    monkeypatch.setenv(env_name("rel_badhost"), json.dumps(conn))
    with pytest.raises(ParcelConnectionError, match="not an http") as err:
        _ = hook_class("shipengine")("rel_badhost").settings
    assert "Ftp5ecretPw" not in f"{err.value} {err.value!r}"


def test_the_redactor_masks_any_case_url_encoded_forms_marked_extras_and_userinfo():
    from airflow_provider_parcels.hooks.redaction import Redactor

    redactor = Redactor.for_connection("trackflow", "user-Login1", "p@ss word/Key9",
                                       {"webhook_secret": "whsecXYZ123", "plan": "growth"}, "https://u1:pw%40x9@h/")
    text = ("USER-LOGIN1 p%40ss%20word%2FKey9 p%40ss+word%2Fkey9 WHSECxyz123 plan growth "
            "http://someone:Other9@example.com/x and pw@x9")
    out = redactor(text)
    assert out == "*** *** *** *** plan growth http://***@example.com/x and ***", out
    assert redactor.value({"k": ["USER-LOGIN1", ("x", "whsecxyz123")], "n": 3}) == {"k": ["***", ("x", "***")], "n": 3}
    assert Redactor(["ab", None, "  "])("ab cd") == "ab cd"  # too short to mask without wrecking messages
