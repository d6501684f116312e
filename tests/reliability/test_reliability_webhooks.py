"""TrackFlow webhooks: signatures good, bad, missing and replayed, and what ``parse_webhook`` reads.

``X-TrackFlow-Signature`` is the hex HMAC-SHA256 of the raw body with the connection's extra
``webhook_secret``; with a delivery timestamp it signs ``"{timestamp}.{body}"`` and a timestamp
outside the tolerance is refused as a replay. Without one (TrackFlow sends none) the signed body's
``last_updated`` is the age checked, so the documented handler refuses replays too. The sandbox
sends no webhooks, so the tests sign payloads themselves, among them the sandbox's own answer for
a parcel, which must parse to the same ``TrackingResult`` as tracking that parcel.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timezone

import pytest
import requests
from reliability_support import FAST, connection_json, env_name

from airflow_provider_parcels.hooks.trackflow import TrackFlowHook, WebhookSignatureError
from airflow_provider_parcels.models import ParcelStatus
from airflow_provider_parcels.warehouse import ParcelWarehouse

SECRET = "whsec-Rel-8c1f2d"
BODY = json.dumps({
    "event": "shipment.updated",
    "data": {
        "success": True,
        "tracking_number": "1Z204E380338943508",
        "carrier": {"code": "ups", "name": "UPS", "service": "UPS Ground"},
        "status": "delivered",
        "status_description": "Delivered to front door",
        "estimated_delivery": "2026-06-17T23:59:00Z",
        "origin": {"city": "Los Angeles", "country": "US"},
        "destination": {"city": "New York", "country": "US"},
        "events": [
            {"status": "Delivered to front door", "location": "New York, NY", "timestamp": "2026-06-17T15:02:00Z",
             "type": "delivered"},
            {"status": "Package transferred to destination facility", "location": "Louisville, KY",
             "timestamp": "2026-06-15T03:42:00Z", "type": "transit"},
        ],
        "last_updated": "2026-06-17T15:05:00Z",
    },
}).encode()


def fresh(body: bytes = BODY, age: float = 0.0) -> bytes:
    """``body`` as delivered ``age`` seconds ago: its ``last_updated`` (signed with it) set to then."""
    payload = json.loads(body)
    item = payload.get("data", payload)
    item["last_updated"] = datetime.fromtimestamp(time.time() - age, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(payload).encode()


def sign(body: bytes, secret: str = SECRET, timestamp: str | None = None) -> str:
    message = body if timestamp is None else f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@pytest.fixture
def hook(sandbox, monkeypatch) -> TrackFlowHook:
    monkeypatch.setenv(env_name("rel_webhooks"), connection_json(sandbox, "trackflow", webhook_secret=SECRET, **FAST))
    return TrackFlowHook("rel_webhooks")


# ------------------------------------------------------------------ good signatures


@pytest.mark.parametrize("form", [lambda s: s, lambda s: f"sha256={s}", lambda s: s.upper(), lambda s: f"  {s} \n"],
                         ids=["hex", "sha256-prefix", "upper-case", "padded"])
def test_good_signature_is_accepted(hook, form):
    body = fresh()
    hook.verify_webhook(body, form(sign(body)))


def test_good_signature_with_a_fresh_timestamp_is_accepted(hook):
    now = str(int(time.time()))
    hook.verify_webhook(BODY, sign(BODY, timestamp=now), timestamp=now)
    inside = str(int(time.time()) - 200)  # well inside the 300 s tolerance
    hook.verify_webhook(BODY, sign(BODY, timestamp=inside), timestamp=inside)


# ------------------------------------------------------------------ bad and missing signatures

BAD_SIGNATURES = {
    "other secret": sign(BODY, secret="whsec-someone-else"),
    "other body": sign(BODY + b" "),
    "truncated": sign(BODY)[:-2],
    "one digit changed": sign(BODY)[:-1] + ("0" if sign(BODY)[-1] != "0" else "1"),
    "not hex": "zz" * 32,
    "sha1 of the body": hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest(),
    "the body itself": BODY.decode()[:64],
    "prefix only": "sha256=",
}


@pytest.mark.parametrize("signature", BAD_SIGNATURES.values(), ids=BAD_SIGNATURES.keys())
def test_bad_signature_is_refused(hook, signature):
    with pytest.raises(WebhookSignatureError, match="does not match"):
        hook.verify_webhook(BODY, signature)
    with pytest.raises(WebhookSignatureError):
        hook.parse_webhook(BODY, signature)


def test_tampered_body_is_refused(hook):
    signature = sign(BODY)
    tampered = BODY.replace(b'"delivered"', b'"exception"', 1)
    assert tampered != BODY
    with pytest.raises(WebhookSignatureError, match="does not match"):
        hook.parse_webhook(tampered, signature)


@pytest.mark.parametrize("signature", [None, ""], ids=["none", "empty"])
def test_missing_signature_is_refused(hook, signature):
    with pytest.raises(WebhookSignatureError, match="missing X-TrackFlow-Signature"):
        hook.verify_webhook(BODY, signature)
    with pytest.raises(WebhookSignatureError, match="missing"):
        hook.parse_webhook(BODY, signature)


def test_connection_without_webhook_secret_refuses_every_delivery(sandbox, monkeypatch):
    monkeypatch.setenv(env_name("rel_nosecret"), connection_json(sandbox, "trackflow"))
    with pytest.raises(WebhookSignatureError, match="'rel_nosecret' has no extra 'webhook_secret'"):
        TrackFlowHook("rel_nosecret").verify_webhook(BODY, sign(BODY))


@pytest.mark.parametrize("blank", [" ", "   ", "\t\n"], ids=["space", "spaces", "tab-newline"])
def test_blank_webhook_secret_is_refused_naming_connection_and_field(sandbox, monkeypatch, blank):
    """A secret of whitespace would sign with a key anyone can guess: refused, not used."""
    monkeypatch.setenv(env_name("rel_blank"), connection_json(sandbox, "trackflow", webhook_secret=blank))
    body = fresh()
    with pytest.raises(WebhookSignatureError, match=r"'rel_blank'.*'webhook_secret' is blank"):
        TrackFlowHook("rel_blank").verify_webhook(body, sign(body, secret=blank))


NON_ASCII = {"accents": "é" * 64, "prefixed": "sha256=" + "ü" * 64, "arabic digits": "١٢٣٤" * 16,
             "mixed": sign(BODY)[:-1] + "ß", "emoji": "📦"}


@pytest.mark.parametrize("signature", NON_ASCII.values(), ids=NON_ASCII.keys())
def test_non_ascii_signature_is_a_clean_refusal(hook, signature):
    """Header values are text from the network: anything in them is a mismatch, never a TypeError."""
    body = fresh()
    with pytest.raises(WebhookSignatureError, match="does not match"):
        hook.verify_webhook(body, signature)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        hook.parse_webhook(body, signature, timestamp=str(int(time.time())))


def test_messages_never_show_the_secret(hook):
    for signature in (None, "00", sign(BODY, secret="x")):
        with pytest.raises(WebhookSignatureError) as err:
            hook.verify_webhook(BODY, signature, timestamp=str(int(time.time())))
        assert SECRET not in str(err.value) and SECRET not in repr(err.value)


# ------------------------------------------------------------------ replays and timestamps


def test_the_documented_handler_refuses_a_replay_of_an_old_delivery(hook):
    """The docs' handler passes no timestamp (TrackFlow sends none): a delivery captured earlier and
    sent again is refused by the age of its signed ``last_updated``."""
    captured = fresh(age=2 * 24 * 3600)
    with pytest.raises(WebhookSignatureError, match="outside the tolerance"):
        hook.parse_webhook(captured, sign(captured))
    with pytest.raises(WebhookSignatureError, match="outside the tolerance"):
        hook.parse_webhook(fresh(age=400), sign(fresh(age=400)), max_age=300)
    with pytest.raises(WebhookSignatureError, match="outside the tolerance"):
        hook.verify_webhook(BODY, sign(BODY))  # June's delivery, replayed today
    future = fresh(age=-3600)
    with pytest.raises(WebhookSignatureError, match="outside the tolerance"):
        hook.parse_webhook(future, sign(future))
    recent = fresh(age=200)
    assert hook.parse_webhook(recent, sign(recent)).tracking_number == "1Z204E380338943508"
    # a redelivery hours later (vendors retry for hours) is still accepted by default
    late = fresh(age=6 * 3600)
    assert hook.parse_webhook(late, sign(late)).tracking_number == "1Z204E380338943508"
    # the age is read from the signed body: rewriting last_updated breaks the signature
    replayed = BODY.replace(b"2026-06-17T15:05:00Z", json.loads(fresh())["data"]["last_updated"].encode())
    with pytest.raises(WebhookSignatureError, match="does not match"):
        hook.parse_webhook(replayed, sign(BODY))


def test_a_delivery_of_no_known_age_is_refused_unless_asked_for(hook):
    body = json.dumps({"data": {"tracking_number": "1Z204E380338943508", "status": "delivered"}}).encode()
    with pytest.raises(WebhookSignatureError, match="no last_updated"):
        hook.parse_webhook(body, sign(body))
    assert hook.parse_webhook(body, sign(body), require_fresh=False).status is ParcelStatus.DELIVERED
    assert hook.parse_webhook(BODY, sign(BODY), require_fresh=False).tracking_number == "1Z204E380338943508"


def test_replay_outside_the_tolerance_is_refused(hook):
    old = str(int(time.time()) - 400)  # a delivery captured 400 s ago, replayed as it was
    with pytest.raises(WebhookSignatureError, match="outside the tolerance"):
        hook.verify_webhook(BODY, sign(BODY, timestamp=old), timestamp=old)
    with pytest.raises(WebhookSignatureError, match="outside the tolerance"):
        hook.verify_webhook(BODY, sign(BODY, timestamp=old), timestamp=old, tolerance=60.0 * 5)
    recent = str(int(time.time()) - 120)
    with pytest.raises(WebhookSignatureError, match="outside the tolerance"):
        hook.verify_webhook(BODY, sign(BODY, timestamp=recent), timestamp=recent, tolerance=60)


def test_timestamp_far_in_the_future_is_refused(hook):
    future = str(int(time.time()) + 3600)
    with pytest.raises(WebhookSignatureError, match="outside the tolerance"):
        hook.verify_webhook(BODY, sign(BODY, timestamp=future), timestamp=future)


def test_replay_with_a_fresh_timestamp_but_the_old_signature_is_refused(hook):
    old = str(int(time.time()) - 400)
    captured = sign(BODY, timestamp=old)
    fresh = str(int(time.time()))
    with pytest.raises(WebhookSignatureError, match="does not match"):
        hook.verify_webhook(BODY, captured, timestamp=fresh)
    # nor does a signature made without a timestamp pass once a timestamp is presented
    with pytest.raises(WebhookSignatureError, match="does not match"):
        hook.verify_webhook(BODY, sign(BODY), timestamp=fresh)


@pytest.mark.parametrize("timestamp", ["yesterday", "", "12:00", "1e400x"])
def test_malformed_timestamp_is_refused(hook, timestamp):
    with pytest.raises(WebhookSignatureError, match="malformed webhook timestamp"):
        hook.verify_webhook(BODY, sign(BODY, timestamp=timestamp), timestamp=timestamp)


@pytest.mark.parametrize("timestamp", ["nan", "NaN", "inf", "-inf"])
def test_non_finite_timestamp_is_refused(hook, timestamp):
    """A timestamp that is no moment cannot be checked against the tolerance: a delivery signed
    with ``nan`` would otherwise never expire and could be replayed forever."""
    with pytest.raises(WebhookSignatureError, match="timestamp"):
        hook.verify_webhook(BODY, sign(BODY, timestamp=timestamp), timestamp=timestamp)


def test_replay_within_the_tolerance_is_accepted_and_loads_the_same_row(hook, sqlite_conn_id):
    """Inside the tolerance a replay cannot be told from the delivery; it is harmless: it parses to
    the same result, and loading it again leaves the same rows (idempotent upsert)."""
    now = str(int(time.time()))
    signature = sign(BODY, timestamp=now)
    first = hook.parse_webhook(BODY, signature, timestamp=now)
    again = hook.parse_webhook(BODY, signature, timestamp=now)
    wh = ParcelWarehouse(sqlite_conn_id)
    wh.load([first])
    before = wh.dump("parcel_tracking_events")
    counts = wh.load([again])
    assert counts.inserted == 0 and counts.events_inserted == 0
    assert wh.dump("parcel_tracking_events") == before
    assert len(wh.dump("parcel_tracking")) == 1


# ------------------------------------------------------------------ parse_webhook


def test_parse_webhook_gives_the_shipment_as_a_tracking_result(hook):
    body = fresh()
    result = hook.parse_webhook(body, f"sha256={sign(body)}")
    assert (result.provider, result.carrier, result.tracking_number) == ("trackflow", "ups", "1Z204E380338943508")
    assert result.status is ParcelStatus.DELIVERED and result.provider_status == "delivered"
    assert result.error is None
    assert result.status_text == "Delivered to front door"
    assert result.carrier_name == "UPS"
    assert result.origin_country == "US" and result.destination_country == "US"
    assert result.estimated_delivery.isoformat() == "2026-06-17T23:59:00+00:00"
    assert [e.status for e in result.events] == [ParcelStatus.DELIVERED, ParcelStatus.IN_TRANSIT]
    assert [e.occurred_at.isoformat() for e in result.events] == ["2026-06-17T15:02:00+00:00",
                                                                   "2026-06-15T03:42:00+00:00"]
    assert result.events[1].description == "Package transferred to destination facility"
    assert result.events[1].location == "Louisville, KY"
    assert result.delivered_at.isoformat() == "2026-06-17T15:02:00+00:00"


def test_parse_webhook_reads_an_unwrapped_payload_and_a_carrier_override(hook):
    body = json.dumps(json.loads(fresh())["data"]).encode()
    result = hook.parse_webhook(body, sign(body), carrier="ups-mi")
    assert (result.carrier, result.tracking_number, result.status) == ("ups-mi", "1Z204E380338943508",
                                                                       ParcelStatus.DELIVERED)


@pytest.mark.parametrize("number", ["DLVWEBHOOK01", "EXCWEBHOOK02", "TRNWEBHOOK03", "RLWEBHOOK004"])
def test_sandbox_answer_as_webhook_parses_like_tracking_it(hook, sandbox, number):
    """The sandbox's single-tracking answer, delivered as a signed webhook body, gives the same
    result as tracking the parcel (all but the fetch time)."""
    raw = requests.get(f"{sandbox.base_url('trackflow')}/v2/track/{number}", params={"carrier": "ups"},
                       headers={"X-API-Key": "sandbox-key"}, timeout=10).content
    now = str(int(time.time()))
    from_webhook = hook.parse_webhook(raw, sign(raw, timestamp=now), timestamp=now)
    (tracked,) = hook.track([{"carrier": "ups", "tracking_number": number}])
    webhook_view = from_webhook.to_dict()
    tracked_view = tracked.to_dict()
    for view in (webhook_view, tracked_view):
        view.pop("fetched_at")
        view["raw"].pop("last_updated", None)
    assert webhook_view == tracked_view


def test_signed_payload_without_a_tracking_number_is_refused(hook):
    """A delivery that names no parcel must not become a result for a parcel called ``None``."""
    payload = {"event": "shipment.updated", "data": {"carrier": {"code": "ups"}, "status": "delivered"}}
    body = fresh(json.dumps(payload).encode())
    with pytest.raises(ValueError, match="tracking_number"):
        hook.parse_webhook(body, sign(body))


def test_signed_body_that_is_not_json_is_refused(hook):
    body = b"status=delivered&tracking_number=1Z204E380338943508"
    with pytest.raises(ValueError):
        hook.parse_webhook(body, sign(body))
