"""
The report of late or failed parcels, as data and as text: which parcels, why, and the words.

Pure (no Airflow, no HTTP): :class:`ParcelReportNotifier
<airflow_provider_parcels.notifications.parcel_report.ParcelReportNotifier>` gathers the entries,
this module decides which are late, merges duplicates and writes the text and the Slack JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

#: Reasons a parcel is in the report, as the warehouse's ``late_parcels`` names them, plus the sensor's.
REASON_EXCEPTION = "exception"
REASON_PAST_ETA = "past_estimated_delivery"
REASON_TOO_OLD = "older_than_max_age"
REASON_FAIL_ON = "fail_on_status"
REASON_OPEN_AT_TIMEOUT = "open_at_sensor_timeout"
_REASON_WORDS = {
    REASON_EXCEPTION: "exception",
    REASON_PAST_ETA: "past ETA",
    REASON_TOO_OLD: "too old",
    REASON_FAIL_ON: "failed the wait",
    REASON_OPEN_AT_TIMEOUT: "still open at timeout",
}
_TERMINAL = ("delivered", "exception", "expired")
#: Slack refuses a section text over 3000 characters and a header over 150.
_SECTION_LIMIT = 2900
_HEADER_LIMIT = 150
#: The three characters Slack's mrkdwn reads as control (``<!channel>``, ``<url|label>``), escaped as it asks.
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def slack_escape(text: str) -> str:
    """
    ``text`` safe to show in a Slack ``mrkdwn`` field: ``&``, ``<`` and ``>`` as entities, so
    a carrier's or an API's words can neither ping (``<!channel>``) nor disguise a link
    (``<https://evil|click here>``).

    :param text: plain text.
    """
    return text.translate(_SLACK_ESCAPES)


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, never inside an ``&...;`` entity."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head + "…"


def as_utc(value: Any) -> datetime | None:
    """An aware UTC datetime from a datetime or ISO text; ``None`` for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass
class ReportEntry:
    """
    One parcel in the report.

    :param tracking_number: the carrier's number.
    :param carrier: the carrier code.
    :param status: the canonical status last seen.
    :param provider: the API, when known.
    :param last_event: the last carrier event's text, when known.
    :param last_event_at: when it happened (ISO text as given).
    :param days_late: days past the estimated delivery (or past ``max_age``), when late.
    :param reasons: why the parcel is reported.
    """

    tracking_number: str
    carrier: str
    status: str
    provider: str | None = None
    last_event: str | None = None
    last_event_at: str | None = None
    days_late: float | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.carrier, self.tracking_number)

    def merge(self, other: ReportEntry) -> None:
        """Fill what this entry lacks from ``other`` and add its reasons."""
        for name in ("provider", "last_event", "last_event_at", "days_late"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))
        self.reasons += [r for r in other.reasons if r not in self.reasons]

    def line(self) -> str:
        """``• NUMBER (carrier): status, 2.5 d late - last: Damaged (2024-05-01T10:00) [why]``."""
        text = f"• {self.tracking_number} ({self.carrier}): {self.status}"
        if self.days_late:
            text += f", {self.days_late:.1f} d late"
        if self.last_event or self.last_event_at:
            text += f" - last: {self.last_event or '?'}"
            if self.last_event_at:
                text += f" ({self.last_event_at})"
        if self.reasons:
            text += f" [{', '.join(_REASON_WORDS.get(r, r) for r in self.reasons)}]"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking_number": self.tracking_number,
            "carrier": self.carrier,
            "status": self.status,
            "provider": self.provider,
            "last_event": self.last_event,
            "last_event_at": self.last_event_at,
            "days_late": self.days_late,
            "reasons": list(self.reasons),
        }


def entry_from(item: Mapping[str, Any], reasons: Iterable[str] = ()) -> ReportEntry:
    """A report entry from a compact sensor result, a warehouse row or a plain dict."""
    last_at = item.get("last_event_at")
    if isinstance(last_at, datetime):
        last_at = last_at.isoformat()
    days = item.get("days_late")
    return ReportEntry(
        tracking_number=str(item.get("tracking_number") or "?"),
        carrier=str(item.get("carrier") or "?"),
        status=str(item.get("status") or "unknown"),
        provider=item.get("provider"),
        last_event=item.get("last_event") or item.get("last_event_description"),
        last_event_at=last_at,
        days_late=None if days is None else float(days),
        reasons=[*list(item.get("reasons") or ()), *[r for r in reasons if r not in (item.get("reasons") or ())]],
    )


def lateness(
    item: Mapping[str, Any], now: datetime, max_age: timedelta | None
) -> tuple[list[str], float | None]:
    """
    Why a parcel counts as late or failed, by the warehouse's rules, and by how many days.

    Exception; not delivered and past ``estimated_delivery``; not terminal and first seen
    (``first_event_at``, ``shipped_at`` or ``created_at``, else ``last_event_at``) more than
    ``max_age`` ago.
    """
    status = str(item.get("status") or "unknown")
    reasons: list[str] = []
    overdue: list[timedelta] = []
    if status == "exception":
        reasons.append(REASON_EXCEPTION)
    eta = as_utc(item.get("estimated_delivery"))
    if eta is not None and status != "delivered" and eta < now:
        reasons.append(REASON_PAST_ETA)
        overdue.append(now - eta)
    started = next(
        (as_utc(item.get(k)) for k in ("first_event_at", "shipped_at", "created_at", "last_event_at") if item.get(k)),
        None,
    )
    if max_age is not None and status not in _TERMINAL and started is not None and started < now - max_age:
        reasons.append(REASON_TOO_OLD)
        overdue.append(now - started - max_age)
    days = round(max(overdue).total_seconds() / 86400, 2) if overdue else None
    return reasons, days


def late_entries(items: Iterable[Mapping[str, Any]], now: datetime, max_age: timedelta | None) -> list[ReportEntry]:
    """The late or failed ones among ``items``, as report entries."""
    out = []
    for item in items:
        reasons, days = lateness(item, now, max_age)
        if reasons:
            entry = entry_from(item, reasons)
            entry.days_late = entry.days_late if entry.days_late is not None else days
            out.append(entry)
    return out


def merge_entries(groups: Iterable[Iterable[ReportEntry]]) -> list[ReportEntry]:
    """One entry per parcel (the first seen, completed by later ones), the latest parcels first."""
    merged: dict[tuple[str, str], ReportEntry] = {}
    for group in groups:
        for entry in group:
            if entry.key in merged:
                merged[entry.key].merge(entry)
            else:
                merged[entry.key] = entry
    return sorted(merged.values(), key=lambda e: (-(e.days_late or 0.0), e.carrier, e.tracking_number))


@dataclass
class ParcelReport:
    """
    The finished report.

    :param title: first line, e.g. ``Parcel report``.
    :param entries: the parcels, latest first.
    :param where: the DAG run / task it concerns, when known.
    :param max_lines: how many parcels the text names before ``... and N more``.
    """

    title: str
    entries: list[ReportEntry]
    where: str | None = None
    max_lines: int = 25

    def headline(self) -> str:
        n = len(self.entries)
        what = f"{n} late or failed parcel{'s' if n != 1 else ''}" if n else "no late or failed parcels"
        return f"{self.title}: {what}" + (f" ({self.where})" if self.where else "")

    def lines(self) -> list[str]:
        shown = [e.line() for e in self.entries[: self.max_lines]]
        if len(self.entries) > self.max_lines:
            shown.append(f"… and {len(self.entries) - self.max_lines} more")
        return shown

    def text(self) -> str:
        """The plain text: headline, then one line per parcel."""
        return "\n".join([self.headline(), *self.lines()])

    def slack_payload(self) -> dict[str, Any]:
        """
        Slack-compatible JSON: ``text`` (the fallback every webhook shows) plus ``blocks``. Both
        ``text`` and the section are mrkdwn, so their words are escaped (:func:`slack_escape`);
        the header is ``plain_text``, shown as it is. The log keeps :meth:`text`, unescaped.
        """
        body = _cut(slack_escape("\n".join(self.lines())), _SECTION_LIMIT)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.headline()[:_HEADER_LIMIT]}},
        ]
        if body:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body}})
        return {"text": slack_escape(self.text()), "blocks": blocks}

    def summary(self) -> dict[str, Any]:
        """A small JSON-safe summary (what the Deadline Alert callback returns)."""
        return {"count": len(self.entries), "headline": self.headline(),
                "parcels": [e.to_dict() for e in self.entries[: self.max_lines]]}


def load_items(value: Any) -> list[Mapping[str, Any]]:
    """Parcels handed in as a list of dicts (or results with ``to_dict``), or as JSON text."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        value = json.loads(value) if value.strip() else []
    if isinstance(value, Mapping):
        value = [value]
    items: list[Mapping[str, Any]] = []
    for item in value:
        if hasattr(item, "to_dict") and not isinstance(item, Mapping):
            from airflow_provider_parcels.models import TrackingResult

            if isinstance(item, TrackingResult):
                from airflow_provider_parcels.sensors.condition import compact

                item = compact(item)
            else:
                item = item.to_dict()
        items.append(item)
    return items


def describe_context(context: Mapping[str, Any]) -> str | None:
    """``dag X, run Y, task Z`` from a task callback context or a Deadline Alert's simple context."""
    parts = []
    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or (dag_run.get("dag_id") if isinstance(dag_run, Mapping) else None)
    run_id = getattr(dag_run, "run_id", None) or (dag_run.get("run_id") if isinstance(dag_run, Mapping) else None)
    ti = context.get("ti") or context.get("task_instance")
    if dag_id:
        parts.append(f"dag {dag_id}")
    if run_id:
        parts.append(f"run {run_id}")
    if getattr(ti, "task_id", None):
        parts.append(f"task {ti.task_id}")
    deadline = context.get("deadline")
    if isinstance(deadline, Mapping) and deadline.get("deadline_time"):
        parts.append(f"deadline {deadline['deadline_time']}")
    return ", ".join(parts) or None


def coerce_max_age(value: timedelta | float | int | None) -> timedelta | None:
    """``max_age`` as a timedelta (numbers are seconds, as JSON kwargs give them)."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    raise ValueError(f"max_age must be a timedelta or a number of seconds >= 0, got {value!r}")


def as_entries(
    items: Sequence[Mapping[str, Any]], reason: str, now: datetime, max_age: timedelta | None
) -> list[ReportEntry]:
    """Entries for parcels reported whether late or not (the sensor's failed or open parcels)."""
    out = []
    for item in items:
        reasons, days = lateness(item, now, max_age)
        entry = entry_from(item, [reason, *reasons])
        entry.days_late = entry.days_late if entry.days_late is not None else days
        out.append(entry)
    return out
