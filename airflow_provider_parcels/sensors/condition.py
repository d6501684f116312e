"""
The waiting condition shared by :class:`~airflow_provider_parcels.sensors.parcel_status.ParcelStatusSensor`
(on the worker) and :class:`~airflow_provider_parcels.triggers.parcel_status.ParcelStatusTrigger`
(on the triggerer): which parcels are still open, which are done, which hit a ``fail_on``
status, and the compact form results take in XCom, in trigger kwargs and in events.

Pure: no HTTP, no Airflow, so the sync sensor and the async trigger decide alike.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_parcels.models import InvalidParcelError, Parcel, ParcelStatus, TrackingResult

DEFAULT_TARGET_STATUSES: tuple[str, ...] = ("delivered", "exception", "expired")
DEFAULT_FAIL_ON: tuple[str, ...] = ("exception",)
REQUIRE_CHOICES: tuple[str, ...] = ("all", "any")
#: How many parcels a log line or an error message names before "... and N more".
MESSAGE_LIMIT = 20

_Key = tuple[str, str]


def parse_statuses(values: str | Iterable[str | ParcelStatus] | None, name: str) -> tuple[ParcelStatus, ...]:
    """
    Canonical statuses from names, de-duplicated, in the order given.

    :param values: status names (``"delivered"``), members, one name, or ``None`` (none).
    :param name: the argument's name, for the error message.
    :raises ValueError: naming the argument and the accepted values.
    """
    if values is None:
        return ()
    if isinstance(values, (str, ParcelStatus)):
        values = [values]
    out: list[ParcelStatus] = []
    for value in values:
        try:
            status = ParcelStatus.parse(value)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        if status not in out:
            out.append(status)
    return tuple(out)


def coerce_parcels(value: Any) -> list[Parcel]:
    """
    The parcels to wait for, validated and de-duplicated by ``(carrier, tracking_number)``.

    :param value: ``Parcel`` objects or dicts (a rendered XComArg), or a JSON text of such a list.
    :raises InvalidParcelError: listing every invalid entry, or when nothing is left to wait for.
    """
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidParcelError("parcels: a text value must be a JSON list of parcels") from None
    if isinstance(value, (Mapping, Parcel)):
        value = [value]
    if value is None:
        raise InvalidParcelError("parcels: nothing to wait for (got None)")
    parcels: dict[_Key, Parcel] = {}
    problems: list[str] = []
    for index, item in enumerate(value):
        try:
            parcel = Parcel.coerce(item, index=index)
        except InvalidParcelError as err:
            problems.append(str(err))
            continue
        parcels.setdefault(parcel.key, parcel)
    if problems:
        shown = "; ".join(problems[:MESSAGE_LIMIT])
        more = f"; and {len(problems) - MESSAGE_LIMIT} more" if len(problems) > MESSAGE_LIMIT else ""
        raise InvalidParcelError(f"{len(problems)} invalid parcel(s): {shown}{more}")
    if not parcels:
        raise InvalidParcelError("parcels: the list is empty, nothing to wait for")
    return list(parcels.values())


def compact(result: TrackingResult) -> dict[str, Any]:
    """
    The compact, JSON-safe form of a result: what XCom, trigger kwargs and events carry.

    Keys: ``tracking_number``, ``carrier``, ``provider``, ``status``, ``error`` (``{code,
    message}`` or ``None``), and when known ``client_id``, ``estimated_delivery``,
    ``last_event_at``, ``last_event``. Never the API's raw payload.
    """
    data: dict[str, Any] = {
        "tracking_number": result.tracking_number,
        "carrier": result.carrier,
        "provider": result.provider,
        "status": result.status.value,
        "error": result.error.to_dict() if result.error else None,
    }
    if result.client_id:
        data["client_id"] = result.client_id
    if result.estimated_delivery is not None:
        data["estimated_delivery"] = result.estimated_delivery.isoformat()
    event = result.last_event
    if event is not None:
        data["last_event_at"] = event.occurred_at.isoformat() if event.occurred_at else event.occurred_at_local
        data["last_event"] = _short(event.description or event.provider_status or event.status.value)
    return data


def _short(text: str | None, limit: int = 120) -> str | None:
    if text is None:
        return None
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(entry: Mapping[str, Any]) -> str:
    """One parcel for a message: ``NUMBER (carrier): status[, error][, last event]``."""
    line = f"{entry.get('tracking_number')} ({entry.get('carrier')}): {entry.get('status')}"
    error = entry.get("error")
    if error:
        line += f" [{error.get('code')}: {error.get('message')}]"
    if entry.get("last_event"):
        line += f" - {entry['last_event']}"
    return line


def describe_many(entries: Sequence[Mapping[str, Any]], limit: int = MESSAGE_LIMIT) -> str:
    """Up to ``limit`` parcels joined by ``; `` and ``and N more``."""
    shown = "; ".join(describe(e) for e in entries[:limit])
    if len(entries) > limit:
        shown += f"; and {len(entries) - limit} more"
    return shown


def fingerprint(parcels: Iterable[Parcel]) -> str:
    """A short hash of the set of parcels, to tell whether stored progress belongs to this list."""
    keys = sorted(f"{carrier}\x1f{number}" for carrier, number in (p.key for p in parcels))
    return hashlib.sha256("\x1e".join(keys).encode()).hexdigest()[:16]


class ParcelWait:
    """
    The progress of one wait: the parcels, the latest compact result of each, and the verdict.

    :param parcels: the parcels waited for (unique).
    :param target_statuses: statuses that count as arrived.
    :param fail_on: statuses that fail the wait as soon as one parcel is seen in them.
    :param require: ``"all"``: every parcel must arrive; ``"any"``: one is enough.
    :param done: compact results of parcels already in a target status (from an earlier poke,
        the trigger's kwargs or the task state store); entries for other parcels are ignored.
    """

    def __init__(
        self,
        parcels: Sequence[Parcel],
        target_statuses: Iterable[str | ParcelStatus] = DEFAULT_TARGET_STATUSES,
        fail_on: Iterable[str | ParcelStatus] = DEFAULT_FAIL_ON,
        require: str = "all",
        done: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.parcels = list(parcels)
        self.target_statuses = frozenset(parse_statuses(target_statuses, "target_statuses"))
        if not self.target_statuses:
            raise ValueError("target_statuses: give at least one status to wait for")
        self.fail_on = frozenset(parse_statuses(fail_on, "fail_on"))
        self.require = validate_require(require)
        self._order = {p.key: i for i, p in enumerate(self.parcels)}
        self.latest: dict[_Key, dict[str, Any]] = {}
        for entry in done:
            key = (str(entry.get("carrier")), str(entry.get("tracking_number")))
            if key in self._order and entry.get("status") in {s.value for s in self.target_statuses}:
                self.latest[key] = dict(entry)

    # ------------------------------------------------------------------ progress

    def record(self, results: Iterable[TrackingResult | Mapping[str, Any]]) -> None:
        """Take in the answers of one poll (results of parcels not waited for are ignored)."""
        for result in results:
            entry = compact(result) if isinstance(result, TrackingResult) else dict(result)
            key = (entry["carrier"], entry["tracking_number"])
            if key in self._order:
                self.latest[key] = entry

    def _status(self, key: _Key) -> str | None:
        entry = self.latest.get(key)
        return None if entry is None else entry.get("status")

    def is_done(self, parcel: Parcel) -> bool:
        return self._status(parcel.key) in {s.value for s in self.target_statuses}

    def open_parcels(self) -> list[Parcel]:
        """Parcels not yet in a target status: the only ones the next poll asks about."""
        return [p for p in self.parcels if not self.is_done(p)]

    def done_entries(self) -> list[dict[str, Any]]:
        """Compact results of the parcels in a target status."""
        return [self.latest[p.key] for p in self.parcels if self.is_done(p)]

    def open_entries(self) -> list[dict[str, Any]]:
        """The still-open parcels, with their latest result where there is one."""
        return [self.entry(p) for p in self.open_parcels()]

    def entry(self, parcel: Parcel) -> dict[str, Any]:
        """The latest compact result of ``parcel``, or a placeholder before its first answer."""
        return self.latest.get(parcel.key) or {
            "tracking_number": parcel.tracking_number,
            "carrier": parcel.carrier,
            "provider": None,
            "status": ParcelStatus.UNKNOWN.value,
            "error": None,
        }

    def failed(self) -> list[dict[str, Any]]:
        """Parcels whose latest status is a ``fail_on`` status."""
        names = {s.value for s in self.fail_on}
        return [self.latest[p.key] for p in self.parcels if self._status(p.key) in names]

    def errors(self) -> list[dict[str, Any]]:
        """Open parcels whose latest answer was an error (not found, quota, server error...)."""
        return [e for e in self.open_entries() if e.get("error")]

    def met(self) -> bool:
        """Whether the condition holds: all (or any) parcels are in a target status."""
        done = sum(1 for p in self.parcels if self.is_done(p))
        return done == len(self.parcels) if self.require == "all" else done > 0

    # ------------------------------------------------------------------ output

    def results(self) -> list[dict[str, Any]]:
        """One compact entry per parcel, in input order: the sensor's XCom."""
        return [self.entry(p) for p in self.parcels]

    def counts(self) -> dict[str, int]:
        """Parcels per latest status (``unknown`` for parcels not answered yet)."""
        return dict(Counter(self.entry(p)["status"] for p in self.parcels))

    def summary(self) -> str:
        """``12 of 15 parcels done (require all); statuses: delivered 10, in_transit 3, ...``."""
        done = len(self.parcels) - len(self.open_parcels())
        counts = ", ".join(f"{status} {n}" for status, n in sorted(self.counts().items()))
        return f"{done} of {len(self.parcels)} parcels done (require {self.require}); statuses: {counts}"

    def failure_message(self) -> str:
        failed = self.failed()
        statuses = ", ".join(sorted(s.value for s in self.fail_on))
        return f"{len(failed)} parcel(s) reached a fail_on status ({statuses}): {describe_many(failed)}"

    def timeout_message(self, waited: float | None = None) -> str:
        still = self.open_entries()
        after = f" after {waited:.0f} s" if waited is not None else ""
        return (
            f"{len(still)} of {len(self.parcels)} parcel(s) still open{after} "
            f"(require {self.require}): {describe_many(still)}"
        )

    # ------------------------------------------------------------------ storage between pokes

    def state(self) -> dict[str, Any]:
        """The done parcels in a small JSON form (status -> [[carrier, number], ...]) to store.

        Small on purpose (about 40 bytes a parcel; the task state store warns over 64 KB): parcels
        restored from it carry number, carrier, provider and status, not their last event.
        """
        by_status: dict[str, list[list[str]]] = {}
        provider = None
        for entry in self.done_entries():
            by_status.setdefault(entry["status"], []).append([entry["carrier"], entry["tracking_number"]])
            provider = provider or entry.get("provider")
        return {"fingerprint": fingerprint(self.parcels), "provider": provider, "done": by_status}

    def restore(self, state: Mapping[str, Any] | None) -> int:
        """Mark parcels done from :meth:`state` of the same parcel list; return how many."""
        if not isinstance(state, Mapping) or state.get("fingerprint") != fingerprint(self.parcels):
            return 0
        restored = 0
        for status, keys in (state.get("done") or {}).items():
            for carrier, number in keys:
                if (carrier, number) in self._order and (carrier, number) not in self.latest:
                    self.latest[(carrier, number)] = {
                        "tracking_number": number,
                        "carrier": carrier,
                        "provider": state.get("provider"),
                        "status": status,
                        "error": None,
                    }
                    restored += 1
        return restored


def validate_require(require: str) -> str:
    """``"all"`` or ``"any"``; a clear error otherwise (``mode`` is the sensor's poke/reschedule)."""
    value = str(require).strip().lower()
    if value not in REQUIRE_CHOICES:
        raise ValueError(
            f"require must be 'all' or 'any', got {require!r} (mode is the sensor's poke/reschedule switch)"
        )
    return value
