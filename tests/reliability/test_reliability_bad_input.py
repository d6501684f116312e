"""Bad input: each one gives a clear error naming the parcel or the field, and nothing else is lost.

Bad parcels (empty, None, white space, 200 characters, unicode, control characters, SQL,
duplicates, unknown carriers, non-dict rows, bad optional fields) go through every API next to
good ones and then into a warehouse; bad DataFrames, hostile table prefixes and schemas and bad
connection extras are refused before any request is sent; partial and truncated API answers
(which the sandbox cannot produce) come from ``requests-mock`` and a tiny loopback server.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pandas as pd
import pytest
import requests_mock
from reliability_support import APIS, CARRIER, FAST, FIGURES, connection_json, env_name

from airflow_provider_parcels.hooks import hook_class
from airflow_provider_parcels.hooks.exceptions import ParcelConnectionError
from airflow_provider_parcels.models import InvalidParcelError, ParcelStatus
from airflow_provider_parcels.operators.tracking import TrackParcelsOperator
from airflow_provider_parcels.warehouse import ParcelWarehouse

SQL = "1'; DROP TABLE parcel_tracking;--"
#: (input, the words its error message must hold). ``C`` is replaced by the API's carrier.
BAD_PARCELS = [
    ({"carrier": "C", "tracking_number": ""}, ["tracking_number", "empty"]),
    ({"carrier": "C", "tracking_number": None}, ["tracking_number"]),
    ({"carrier": "C", "tracking_number": "   \t "}, ["tracking_number", "white space"]),
    ({"carrier": "C", "tracking_number": "DLV" + "7" * 197}, ["tracking_number", "200 characters"]),
    ({"carrier": "C", "tracking_number": "DLVÜNICODE0001"}, ["tracking_number", "'Ü'"]),
    ({"carrier": "C", "tracking_number": "📦12345678"}, ["tracking_number", "'📦'"]),
    ({"carrier": "C", "tracking_number": "DLV\x00NUL0001"}, ["tracking_number", "'\\x00'"]),
    ({"carrier": "C", "tracking_number": "DLV\nLF0001"}, ["tracking_number", "'\\n'"]),
    ({"carrier": "C", "tracking_number": "DLV\x1bESC0001"}, ["tracking_number", "'\\x1b'"]),
    ({"carrier": "C", "tracking_number": SQL}, ["tracking_number", "';'"]),
    ({"carrier": "C", "tracking_number": 12345678}, ["tracking_number", "string"]),
    ({"carrier": "C"}, ["missing", "tracking_number"]),
    ({"tracking_number": "DLVNOCARRIER1"}, ["missing", "carrier"]),
    ({"carrier": "", "tracking_number": "DLVEMPTYCARR1"}, ["carrier"]),
    ({"carrier": "ups; DROP TABLE x", "tracking_number": "DLVSQLCARR01"}, ["carrier"]),
    ({"carrier": "C", "tracking_number": "DLVLONGCLIENT1", "client_id": "c" * 300}, ["client_id"]),
    ({"carrier": "C", "tracking_number": "DLVCTRLPOSTAL1", "postal_code": "12\x0045"}, ["postal_code"]),
    ({"carrier": "C", "tracking_number": "DLVBADPHONE001", "phone_number": ["+49"]}, ["phone_number"]),
    (None, ["expected a mapping"]),
    (42, ["expected a mapping", "int"]),
    ("DLVJUSTASTRING1", ["expected a mapping", "str"]),
    (["usps", "DLVALIST00001"], ["expected a mapping", "list"]),
    (("usps", "DLVATUPLE0001"), ["expected a mapping", "tuple"]),
]
GOOD = ["DLVGOOD00001", "TRNGOOD00002", "EXCGOOD00003", "NFDGOOD00004", "RLGOOD000005"]
UNKNOWN_CARRIER = "no-such-carrier"


def _with_carrier(item, carrier: str):
    if isinstance(item, dict):
        return {k: (carrier if k == "carrier" and v == "C" else v) for k, v in item.items()}
    return item


def mixed_input(api: str) -> list:
    """Good parcels, each bad parcel, duplicates and unknown carriers, interleaved."""
    carrier = CARRIER[api]
    good = [{"carrier": carrier, "tracking_number": n} for n in GOOD]
    items: list = []
    for index, (bad, _) in enumerate(BAD_PARCELS):
        items.append(good[index % len(good)] if index < len(good) else
                     {"carrier": carrier, "tracking_number": f"RLGOOD{index:06d}"})
        items.append(_with_carrier(bad, carrier))
    items += [
        {"carrier": carrier, "tracking_number": "DLVDUPLICATE1", "client_id": "first"},
        {"carrier": carrier, "tracking_number": "DLVDUPLICATE1", "client_id": "second"},
        {"carrier": UNKNOWN_CARRIER, "tracking_number": "DLVUNKNOWNCARR1"},
        {"carrier": UNKNOWN_CARRIER, "tracking_number": "NFDUNKNOWNCARR2"},
    ]
    return items


@pytest.mark.parametrize("api", APIS)
def test_bad_parcels_are_named_error_rows_and_every_good_parcel_is_tracked_and_loaded(
        api, connect, sandbox, sqlite_conn_id):
    hook = connect(api, **FAST)
    items = mixed_input(api)
    results = hook.track(items)

    assert len(results) == len(items), "one result per input"
    bad_positions = {2 * index + 1: words for index, (_, words) in enumerate(BAD_PARCELS)}
    for position, (item, result) in enumerate(zip(items, results, strict=True)):
        if position in bad_positions:
            assert result.error is not None and result.error.code == "invalid_input", (item, result)
            assert result.status is ParcelStatus.UNKNOWN
            assert f"parcel #{position}" in result.error.message, result.error.message
            for word in bad_positions[position]:
                assert word in result.error.message, (word, result.error.message)
        else:
            assert result.tracking_number == item["tracking_number"], "answers out of order"
            assert result.error is None or result.error.code == "not_found", (item, result.error)
    by_number = {r.tracking_number: r for r in results if r.error is None or r.error.code != "invalid_input"}
    assert by_number["DLVGOOD00001"].status is ParcelStatus.DELIVERED
    assert by_number["NFDGOOD00004"].status is ParcelStatus.NOT_FOUND

    # duplicates: asked once, answered for each (with each one's own client_id)
    dup = [r for r in results if r.tracking_number == "DLVDUPLICATE1"]
    assert len(dup) == 2 and dup[0].status is dup[1].status is ParcelStatus.DELIVERED
    assert [r.client_id for r in dup] == ["first", "second"]
    # one question per answer key (parcelLab: per order too, so its two client_ids are two orders)
    asked = {hook.answer_key(r) for r in results if r.error is None or r.error.code != "invalid_input"}
    assert sandbox.stats()[api]["items"] == len(asked), "a duplicate was asked twice, or a bad parcel was sent"

    # unknown carrier: whatever the API answers, the parcel ends as a result (and a row)
    unknown = [r for r in results if r.carrier == UNKNOWN_CARRIER]
    assert len(unknown) == 2 and all(r.error is None or r.error.code != "invalid_input" for r in unknown)
    FIGURES.setdefault("unknown carrier answered as", {})[api] = ", ".join(
        f"{r.tracking_number[:3]} {r.status.value}" for r in unknown)

    wh = ParcelWarehouse(sqlite_conn_id)
    wh.load(results)
    stored = {row[1:3]: row for row in wh.dump("parcel_tracking")}
    keys = {(r.carrier, r.tracking_number) for r in results}
    # every result key is a row (the NUL one as the database can hold it: compared by count)
    assert len(stored) == len(keys)
    assert {k for k in keys if "\x00" not in k[1]} <= stored.keys()
    for result in by_number.values():
        row = stored[(result.carrier, result.tracking_number)]
        assert row[4] == result.status.value and row[16] == (result.error.code if result.error else None)
    assert (CARRIER[api], SQL) in stored, "the SQL-like number is stored verbatim, as data"
    FIGURES["bad parcels per API"] = len(BAD_PARCELS) + 4  # + duplicates (2) and unknown carriers (2)


@pytest.mark.parametrize("api", APIS)
def test_numbers_differing_only_in_case_each_get_the_api_answer(api, connect, sandbox):
    """``DLV...`` and ``dlv...`` in one batch: the hook keeps them as two parcels (two rows), and
    the API answers both; neither may end as an error row."""
    carrier = CARRIER[api]
    results = connect(api, **FAST).track([{"carrier": carrier, "tracking_number": "DLVCASE00001"},
                                          {"carrier": carrier, "tracking_number": "dlvcase00001"},
                                          {"carrier": carrier, "tracking_number": "TRNCASE00002"}])
    assert [r.tracking_number for r in results] == ["DLVCASE00001", "dlvcase00001", "TRNCASE00002"]
    assert [(r.status, r.error) for r in results] == [(ParcelStatus.DELIVERED, None), (ParcelStatus.DELIVERED, None),
                                                      (ParcelStatus.IN_TRANSIT, None)]


@pytest.mark.postgres
def test_a_nul_byte_in_one_bad_parcel_does_not_lose_the_chunk_on_postgres(connect, postgres_conn_id):
    """A tracking number with a NUL byte is refused (invalid_input), and its error row must not
    break the load of the chunk it is in: PostgreSQL text cannot hold NUL bytes."""
    hook = connect("trackflow", **FAST)
    carrier = CARRIER["trackflow"]
    items = [{"carrier": carrier, "tracking_number": f"DLVPG{i:05d}"} for i in range(10)]
    items.insert(5, {"carrier": carrier, "tracking_number": "DLV\x00NUL0001"})
    results = hook.track(items)
    assert results[5].error.code == "invalid_input"
    wh = ParcelWarehouse(postgres_conn_id)
    wh.load(results)  # before e18fd17: psycopg.DataError, "PostgreSQL text fields cannot contain NUL (0x00) bytes"
    numbers = {row[2] for row in wh.dump("parcel_tracking")}
    assert {f"DLVPG{i:05d}" for i in range(10)} <= numbers


@pytest.mark.postgres
def test_a_nul_byte_in_an_api_answer_does_not_lose_the_chunk_on_postgres(monkeypatch, postgres_conn_id):
    """An API answer whose event text holds ``\\u0000`` (valid JSON) loads like any other answer."""
    hook = _mock_hook(monkeypatch, "shipengine")
    answer = _shipengine_answer()
    answer["events"][0]["description"] = "Delivered\u0000 to front door"
    with requests_mock.Mocker() as mock:
        mock.get("https://mock.test/v1/tracking", json=answer)
        results = hook.track([{"carrier": "usps", "tracking_number": f"DLVNUL{i:04d}"} for i in range(3)])
    assert all(r.status is ParcelStatus.DELIVERED for r in results)
    wh = ParcelWarehouse(postgres_conn_id)
    wh.load(results)
    assert len(wh.dump("parcel_tracking")) == 3


# ------------------------------------------------------------------ DataFrames


def test_dataframe_with_missing_columns_is_refused_by_name_before_any_request(connect, sandbox):
    hook = connect("shipengine", **FAST)
    frame = pd.DataFrame({"tracking_number": ["DLVDF000001", "DLVDF000002"], "client_id": ["a", "b"]})
    with pytest.raises(InvalidParcelError, match=r"no column\(s\) carrier"):
        hook.track(frame)
    with pytest.raises(InvalidParcelError, match=r"no column\(s\) carrier, tracking_number"):
        hook.track(pd.DataFrame({"number": ["DLVDF000003"]}))
    assert sandbox.stats()["total_requests"] == 0


def test_dataframe_with_gaps_gives_error_rows_for_the_gaps_only(connect):
    hook = connect("whereparcel", **FAST)
    frame = pd.DataFrame({
        "carrier": ["kr.cj", None, "kr.cj", "kr.cj"],
        "tracking_number": ["DLVDFGAP0001", "DLVDFGAP0002", float("nan"), "TRNDFGAP0004"],
        "client_id": [None, "x", "y", float("nan")],
        "unrelated": [1, 2, 3, 4],
    })
    results = hook.track(frame)
    assert [r.error.code if r.error else None for r in results] == [None, "invalid_input", "invalid_input", None]
    assert "parcel #1" in results[1].error.message and "carrier" in results[1].error.message
    assert "parcel #2" in results[2].error.message and "tracking_number" in results[2].error.message
    assert [r.status for r in (results[0], results[3])] == [ParcelStatus.DELIVERED, ParcelStatus.IN_TRANSIT]


def test_operator_with_a_dataframe_missing_columns_fails_with_the_column_names(connect, sandbox, sqlite_conn_id):
    connect("trackflow", conn_id="rel_df_api", **FAST)
    operator = TrackParcelsOperator(task_id="df", conn_id="rel_df_api", warehouse_conn_id=sqlite_conn_id,
                                    parcels=pd.DataFrame({"tracking_no": ["DLVDF000009"]}))
    with pytest.raises(InvalidParcelError, match=r"carrier, tracking_number"):
        operator.execute(context={})
    assert sandbox.stats()["total_requests"] == 0


# ------------------------------------------------------------------ table prefixes and schemas

HOSTILE_NAMES = [
    'x"; DROP TABLE parcel_tracking; --',
    "wh.parcel_tracking",
    "wh-",
    "1wh",
    "wh ",
    " wh",
    "wh\n",
    "wh\x00",
    "präfix_",
    "a" * 42,
    "wh;",
    "wh/*",
    42,
    None,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_hostile_table_prefix_and_schema_are_refused_naming_the_argument(name, sqlite_conn_id):
    if name is not None:
        with pytest.raises(ValueError, match="table_prefix must be an identifier"):
            ParcelWarehouse(sqlite_conn_id, table_prefix=name)
    with pytest.raises(ValueError, match="schema must be an identifier"):
        ParcelWarehouse(sqlite_conn_id, schema=name if name is not None else "")


def test_operator_with_a_hostile_prefix_fails_before_tracking_and_leaves_the_tables_alone(
        connect, sandbox, sqlite_conn_id):
    connect("shipengine", conn_id="rel_prefix_api", **FAST)
    ParcelWarehouse(sqlite_conn_id).load(connect("shipengine", **FAST).track(
        [{"carrier": "usps", "tracking_number": "DLVKEEP00001"}]))
    before = sandbox.stats()["total_requests"]
    operator = TrackParcelsOperator(task_id="prefix", conn_id="rel_prefix_api", warehouse_conn_id=sqlite_conn_id,
                                    table_prefix=HOSTILE_NAMES[0],
                                    parcels=[{"carrier": "usps", "tracking_number": "DLVPREFIX001"}])
    with pytest.raises(ValueError, match="table_prefix"):
        operator.execute(context={})
    assert sandbox.stats()["total_requests"] == before, "it tracked before checking the prefix"
    assert [row[2] for row in ParcelWarehouse(sqlite_conn_id).dump("parcel_tracking")] == ["DLVKEEP00001"]


def test_longest_allowed_prefix_works(connect, sqlite_conn_id):
    wh = ParcelWarehouse(sqlite_conn_id, table_prefix="p" * 41)
    wh.load(connect("trackflow", **FAST).track([{"carrier": "ups", "tracking_number": "DLVPREFIX041"}]))
    assert [row[2] for row in wh.dump("parcel_tracking")] == ["DLVPREFIX041"]


# ------------------------------------------------------------------ connection extras

BAD_EXTRAS = [
    ({"requests_per_minute": "fast"}, "requests_per_minute"),
    ({"requests_per_minute": -5}, "requests_per_minute"),
    ({"requests_per_minute": 0}, "requests_per_minute"),
    ({"requests_per_minute": "nan"}, "requests_per_minute"),
    ({"requests_per_minute": "inf"}, "requests_per_minute"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_concurrency": "many"}, "max_concurrency"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": "soon"}, "timeout"),
    ({"max_retries": -1}, "max_retries"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 10_000}, "batch_size"),
    ({"quota_share": 2}, "quota_share"),
    ({"quota_share": "half"}, "quota_share"),
    ({"plan": "platinum"}, "plan"),
    ({"scheme": "ftp"}, "host"),
]


@pytest.mark.parametrize("api", ["whereparcel", "trackflow", "shipengine"])
@pytest.mark.parametrize(("extra", "field"), BAD_EXTRAS, ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_bad_connection_extra_is_refused_naming_the_connection_and_field(api, extra, field, sandbox, monkeypatch):
    key = "sandbox-extra-secret-31"
    conn = json.loads(connection_json(sandbox, api, key=key, **extra))
    if field == "host":
        conn["host"] = conn["host"].split("://", 1)[1]  # no scheme in the host: the extra decides
    monkeypatch.setenv(env_name("rel_extra"), json.dumps(conn))
    hook = hook_class(api)("rel_extra")
    with pytest.raises(ParcelConnectionError) as err:
        hook.track([{"carrier": CARRIER[api], "tracking_number": "DLVEXTRA0001"}])
    message = str(err.value)
    assert "'rel_extra'" in message and field in message, message
    assert key not in message
    assert sandbox.stats()["total_requests"] == 0


@pytest.mark.parametrize("extra", ["[1, 2]", '"plan=pro"', "null", "17"])
def test_connection_extra_that_is_json_but_not_an_object_is_refused_clearly(extra, sandbox, monkeypatch):
    conn = json.loads(connection_json(sandbox, "shipengine"))
    conn["extra"] = extra
    monkeypatch.setenv(env_name("rel_extra"), json.dumps(conn))
    with pytest.raises(ParcelConnectionError, match=r"'rel_extra'.*extra"):
        hook_class("shipengine")("rel_extra").track([{"carrier": "usps", "tracking_number": "DLVEXTRA0002"}])


@pytest.mark.parametrize(("api", "field", "label"), [("whereparcel", "login", "API key"),
                                                      ("whereparcel", "password", "secret key"),
                                                      ("trackingmore", "password", "API key"),
                                                      ("parcellab", "password", "token")])
def test_missing_credential_is_named(api, field, label, sandbox, monkeypatch):
    conn = json.loads(connection_json(sandbox, api))
    conn.pop(field)
    monkeypatch.setenv(env_name("rel_nokey"), json.dumps(conn))
    with pytest.raises(ParcelConnectionError, match=f"'rel_nokey'.*no {label}.*{field}"):
        hook_class(api)("rel_nokey").track([{"carrier": CARRIER[api], "tracking_number": "DLVNOKEY0001"}])
    assert sandbox.stats()["total_requests"] == 0


# ------------------------------------------------------------------ partial and truncated answers


def _mock_hook(monkeypatch, api: str, host: str = "https://mock.test", **extra):
    conn = {"conn_type": api, "host": host, "login": "mock-key", "password": "mock-secret",
            "extra": {"max_retries": 1, **FAST, **extra}}
    monkeypatch.setenv(env_name("rel_mock"), json.dumps(conn))
    return hook_class(api)("rel_mock")


def _shipengine_answer() -> dict:
    return {"tracking_number": "X", "status_code": "DE", "status_description": "Delivered",
            "carrier_code": "usps", "events": [{"occurred_at": "2026-06-15T10:00:00Z",
                                                "carrier_occurred_at": "2026-06-15T06:00:00",
                                                "description": "Delivered", "city_locality": "Austin",
                                                "status_code": "DE"}]}


def _trackflow_item(number: str) -> dict:
    return {"tracking_number": number, "carrier": {"code": "ups", "name": "UPS"}, "status": "delivered",
            "events": [{"status": "Delivered", "type": "delivered", "timestamp": "2026-06-15T10:00:00Z"}]}


def test_batch_answer_missing_some_parcels_gives_them_error_rows(monkeypatch):
    hook = _mock_hook(monkeypatch, "trackflow")
    numbers = [f"DLVPART{i:04d}" for i in range(4)]
    with requests_mock.Mocker() as mock:
        mock.post("https://mock.test/v2/track/batch", json={"results": [_trackflow_item(n) for n in numbers[:2]]})
        results = hook.track([{"carrier": "ups", "tracking_number": n} for n in numbers])
    assert [r.status for r in results[:2]] == [ParcelStatus.DELIVERED] * 2
    assert [r.error.code for r in results[2:]] == ["missing_from_answer"] * 2


def test_whereparcel_answer_cut_to_its_first_item_gives_the_rest_error_rows(monkeypatch):
    hook = _mock_hook(monkeypatch, "whereparcel")
    numbers = [f"DLVCUT{i:05d}" for i in range(5)]
    first = {"success": True, "carrier": "kr.cj", "trackingNumber": numbers[0],
             "data": {"status": "delivered", "events": []}}
    with requests_mock.Mocker() as mock:
        mock.post("https://mock.test/v2/track", json={"success": True, "results": [first]})
        results = hook.track([{"carrier": "kr.cj", "tracking_number": n} for n in numbers])
    assert results[0].status is ParcelStatus.DELIVERED and results[0].error is None
    assert [r.error.code for r in results[1:]] == ["missing_from_answer"] * 4
    assert all("did not answer for this parcel" in r.error.message for r in results[1:])


@pytest.mark.parametrize("body", [b'{"tracking_number": "DLV', b"", b"<html>Bad gateway</html>", b"null", b"[]"],
                         ids=["truncated-json", "empty", "html", "null", "list"])
def test_unreadable_answer_gives_malformed_response_rows_after_retries(body, monkeypatch):
    hook = _mock_hook(monkeypatch, "shipengine")
    with requests_mock.Mocker() as mock:
        mock.get("https://mock.test/v1/tracking", content=body)
        results = hook.track([{"carrier": "usps", "tracking_number": "DLVBADBODY01"}])
    assert results[0].error.code == "malformed_response", results[0].error
    assert "after retries" in results[0].error.message
    assert mock.call_count == 2  # max_retries=1: two attempts


@pytest.mark.parametrize("body", [{}, {"events": []}, {"tracking_number": "DLVPARTIAL01"}],
                         ids=["empty-object", "events-only", "number-only"])
def test_shipengine_answer_without_a_status_is_an_error_not_a_silent_unknown(body, monkeypatch):
    """A 200 whose object lacks ``status_code`` (every ShipEngine tracking answer has it) is a
    partial answer: the parcel must get an error row, not a clean row with status ``unknown``."""
    hook = _mock_hook(monkeypatch, "shipengine")
    with requests_mock.Mocker() as mock:
        mock.get("https://mock.test/v1/tracking", json=body)
        result = hook.track([{"carrier": "usps", "tracking_number": "DLVPARTIAL01"}])[0]
    assert result.error is not None and result.error.code == "malformed_response", result


class TruncatingServer:
    """Loopback HTTP server that promises a body of N bytes and sends fewer, then hangs up
    (``good_after`` answers later it answers in full)."""

    def __init__(self, body: bytes, good_after: int | None = None) -> None:
        self.body = body
        self.good_after = good_after
        self.calls = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.calls += 1
                full = self.good_after is not None and self.calls > self.good_after
                payload = self.body if full else self.body[: len(self.body) // 2]
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
                        "Connection: close\r\n\r\n").encode()
                conn.sendall(head + payload)

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def truncating() -> Iterator:
    servers = []

    def make(body: bytes, good_after: int | None = None) -> TruncatingServer:
        servers.append(TruncatingServer(body, good_after))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_body_cut_short_by_the_server_is_retried_then_an_error_row(truncating, monkeypatch):
    server = truncating(json.dumps(_shipengine_answer()).encode())
    hook = _mock_hook(monkeypatch, "shipengine", host=f"http://127.0.0.1:{server.port}", timeout=5)
    result = hook.track([{"carrier": "usps", "tracking_number": "DLVTRUNC0001"}])[0]
    assert result.error is not None and result.error.code in ("connection_error", "malformed_response"), result
    assert "after retries" in result.error.message and server.calls == 2


def test_body_cut_short_once_then_whole_is_tracked(truncating, monkeypatch):
    server = truncating(json.dumps(_shipengine_answer()).encode(), good_after=1)
    hook = _mock_hook(monkeypatch, "shipengine", host=f"http://127.0.0.1:{server.port}", timeout=5)
    result = hook.track([{"carrier": "usps", "tracking_number": "DLVTRUNC0002"}])[0]
    assert result.error is None and result.status is ParcelStatus.DELIVERED
    assert server.calls == 2


def test_answer_for_parcels_nobody_asked_for_is_ignored(monkeypatch):
    hook = _mock_hook(monkeypatch, "trackflow")
    with requests_mock.Mocker() as mock:
        mock.post("https://mock.test/v2/track/batch",
                  json=[_trackflow_item(n) for n in ("DLVASKED0001", "DLVSTRANGER1", "DLVASKED0002")])
        results = hook.track([{"carrier": "ups", "tracking_number": n} for n in ("DLVASKED0001", "DLVASKED0002")])
    assert [r.tracking_number for r in results] == ["DLVASKED0001", "DLVASKED0002"]
    assert all(r.status is ParcelStatus.DELIVERED for r in results)


def test_warehouse_rows_for_bad_input_hold_no_live_sql(connect, sqlite_conn_id):
    """The SQL-looking number and carrier end as data in the table; the tables are still there."""
    results = connect("trackingmore", **FAST).track([
        {"carrier": "usps", "tracking_number": SQL},
        {"carrier": "usps'); DELETE FROM parcel_tracking; --", "tracking_number": "DLVSQL000001"},
        {"carrier": "usps", "tracking_number": "DLVSQL000002"},
    ])
    wh = ParcelWarehouse(sqlite_conn_id)
    wh.load(results)
    wh.load(results)
    rows = wh.dump("parcel_tracking")
    assert {row[2] for row in rows} == {SQL, "DLVSQL000001", "DLVSQL000002"}
    assert {row[16] for row in rows if row[2] != "DLVSQL000002"} == {"invalid_input"}
