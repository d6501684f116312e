"""The Slack alert escapes what carriers and APIs wrote; the log keeps it as written.

Event descriptions come from the APIs: in a Slack ``mrkdwn`` field ``<!channel>`` pings a whole
channel and ``<https://evil|click here>`` shows a link under a harmless label. The notifier
posts them to a real loopback receiver (fixture ``webhook``) and the tests read what arrived.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from airflow_provider_parcels.notifications.parcel_report import ParcelReportNotifier
from airflow_provider_parcels.notifications.report import ParcelReport, ReportEntry, slack_escape

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=timezone.utc)
HOSTILE = "<!channel> parcel lost, <https://evil.example/login|click here> & re-enter your card"
PARCELS = [{"tracking_number": "EXC<!here>1", "carrier": "ups", "status": "exception", "last_event": HOSTILE}]


def test_slack_payload_escapes_api_text_and_the_log_stays_plain(webhook, capfd):
    notifier = ParcelReportNotifier(parcels=PARCELS, http_conn_id="parcels_test_webhook", now=NOW)
    notifier({"dag_run": None})

    (post,) = webhook
    payload = post["json"]
    section = payload["blocks"][1]["text"]
    assert section["type"] == "mrkdwn"
    for text in (section["text"], payload["text"]):
        assert "<" not in text and ">" not in text, text
        assert "&lt;!channel&gt;" in text and "&lt;https://evil.example/login|click here&gt;" in text
        assert " &amp; re-enter" in text and "EXC&lt;!here&gt;1" in text
    # the log is not Slack: it shows the words as the API wrote them
    assert HOSTILE in notifier.last_report.text()
    captured = capfd.readouterr()
    assert HOSTILE in captured.out + captured.err


def test_escaping_then_cutting_never_leaves_half_an_entity():
    # ampersands only: 5 characters each once escaped, so the 2900-character cut lands inside one
    entries = [ReportEntry(f"N{i:04d}", "ups", "exception", last_event="&" * 700) for i in range(10)]
    report = ParcelReport("Parcel report", entries)
    body = report.slack_payload()["blocks"][1]["text"]["text"]
    assert len(body) <= 2900 and body.endswith("…")
    assert "&" not in re.sub(r"&(amp|lt|gt);", "", body), body[-20:]
    assert "<" not in body and ">" not in body


def test_slack_escape_is_the_three_entities_slack_asks_for():
    assert slack_escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert slack_escape("*bold* _it_ ~s~ `c`") == "*bold* _it_ ~s~ `c`"
