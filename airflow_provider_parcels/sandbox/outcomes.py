"""The deterministic tracking-number scheme (documented in :mod:`airflow_provider_parcels.sandbox`).

:func:`classify` turns a tracking number into a :class:`Rule`; :class:`OutcomeBook` turns a
rule into a :class:`Tracking` (canonical outcome, event history newest first, estimated
delivery), keeping the per-API lookup counters and first-lookup times that the ``POLL`` and
``SEC`` prefixes need. The API modules only translate a :class:`Tracking` into their words.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from .places import CITIES, COUNTRY_CODES, EVENT_CODES, EVENT_TEXTS, Place

FIXED_PREFIXES: dict[str, str] = {
    "DLV": "delivered",
    "TRN": "in_transit",
    "OFD": "out_for_delivery",
    "EXC": "exception",
    "FAT": "failed_attempt",
    "PUP": "available_for_pickup",
    "EXP": "expired",
    "PEN": "pending",
    "INF": "info_received",
    "UNK": "unknown",
    "NFD": "not_found",
}
_TIMED = re.compile(r"^(POLL|SEC)([DX])(\d+)")
#: Added to the event texts and places of numbers outside the prefix scheme (real-looking ones,
#: such as ``1Z204E380338943508``): their invented history must never pass for a carrier's.
SANDBOX_MARKER = "[sandbox]"

#: Event kinds from oldest to newest for each outcome. Hash parcels keep a slice of them.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "delivered": ("info_received", "picked_up", "in_transit", "in_transit", "out_for_delivery", "delivered"),
    "in_transit": ("info_received", "picked_up", "in_transit", "in_transit"),
    "out_for_delivery": ("info_received", "picked_up", "in_transit", "in_transit", "out_for_delivery"),
    "exception": ("info_received", "picked_up", "in_transit", "exception"),
    "failed_attempt": ("info_received", "picked_up", "in_transit", "out_for_delivery", "failed_attempt"),
    "available_for_pickup": ("info_received", "picked_up", "in_transit", "available_for_pickup"),
    "expired": ("info_received", "picked_up", "in_transit", "expired"),
    "unknown": ("info_received", "picked_up", "unknown"),
    "info_received": ("info_received",),
    "pending": (),
    "not_found": (),
}
_HASH_OUTCOMES = (
    (40, "delivered"),
    (70, "in_transit"),
    (78, "out_for_delivery"),
    (85, "exception"),
    (92, "failed_attempt"),
    (100, "available_for_pickup"),
)
_AT_DESTINATION = {"out_for_delivery", "delivered", "failed_attempt", "available_for_pickup", "exception",
                   "expired", "unknown"}


@dataclass(frozen=True)
class Rule:
    """What a tracking number asks for.

    :param outcome: the final canonical outcome (after the transition for timed rules).
    :param mode: ``fixed`` (a prefix), ``hash`` (no prefix), ``polls`` or ``seconds``.
    :param threshold: k of ``POLL?<k>`` or t of ``SEC?<t>``.
    :param registered: False for ``NEW`` numbers (TrackingMore: absent until created).
    """

    outcome: str
    mode: str = "fixed"
    threshold: int = 0
    registered: bool = True


@dataclass(frozen=True)
class Event:
    """One carrier scan.

    :param kind: event kind (a canonical status, or ``picked_up``).
    :param at: when it happened (UTC, aware).
    :param place: where it happened.
    :param text: English description.
    :param code: the carrier's own status code.
    """

    kind: str
    at: datetime
    place: Place
    text: str
    code: str


@dataclass(frozen=True)
class Tracking:
    """Everything an API module needs to answer for one number.

    :param number: the tracking number as asked.
    :param outcome: canonical status (``not_found`` when the API has no record).
    :param events: carrier events, newest first.
    :param estimated_delivery: estimated delivery (UTC, 23:59 of a day) or None.
    :param origin: origin city.
    :param destination: destination city.
    :param registered: False for ``NEW`` numbers.
    :param seed: hash bytes of the number, for API modules that vary small details.
    """

    number: str
    outcome: str
    events: tuple[Event, ...]
    estimated_delivery: datetime | None
    origin: Place
    destination: Place
    registered: bool
    seed: bytes

    @property
    def found(self) -> bool:
        """False when the API has no record of the number."""
        return self.outcome != "not_found"

    @property
    def last(self) -> Event | None:
        """The newest event, if any."""
        return self.events[0] if self.events else None

    @property
    def delivered_at(self) -> datetime | None:
        """Time of the delivered event, if delivered."""
        last = self.last
        return last.at if last is not None and self.outcome == "delivered" else None


@lru_cache(maxsize=8192)
def digest(number: str) -> bytes:
    """The 32 hash bytes every derived detail of ``number`` comes from."""
    return hashlib.sha256(number.strip().upper().encode("utf-8")).digest()


@lru_cache(maxsize=8192)
def classify(number: str) -> Rule:
    """Read the prefix scheme of ``number`` (case-insensitive)."""
    upper = number.strip().upper()
    registered = not upper.startswith("NEW")
    rest = upper if registered else upper[3:]
    timed = _TIMED.match(rest)
    if timed:
        final = "delivered" if timed[2] == "D" else "exception"
        mode = "polls" if timed[1] == "POLL" else "seconds"
        return Rule(final, mode, int(timed[3]), registered)
    fixed = FIXED_PREFIXES.get(rest[:3])
    if fixed:
        return Rule(fixed, "fixed", 0, registered)
    pick = digest(upper)[0] % 100
    outcome = next(name for bound, name in _HASH_OUTCOMES if pick < bound)
    return Rule(outcome, "hash", 0, registered)


def day_start(now: float) -> datetime:
    """Midnight UTC of the day of ``now`` (epoch seconds)."""
    current = datetime.fromtimestamp(now, tz=timezone.utc)
    return current.replace(hour=0, minute=0, second=0, microsecond=0)


def _places(seed: bytes, country: str | None) -> tuple[Place, Place]:
    if country in CITIES:
        origin_country = country
        dest_country = country if seed[5] % 5 else COUNTRY_CODES[seed[6] % len(COUNTRY_CODES)]
    else:
        origin_country = COUNTRY_CODES[seed[6] % len(COUNTRY_CODES)]
        dest_country = COUNTRY_CODES[seed[7] % len(COUNTRY_CODES)]
    origins, dests = CITIES[origin_country], CITIES[dest_country]
    origin = origins[seed[8] % len(origins)]
    dest = dests[seed[9] % len(dests)]
    if dest == origin and len(dests) > 1:
        dest = dests[(seed[9] + 1) % len(dests)]
    return origin, dest


def _kinds(rule: Rule, seed: bytes) -> tuple[str, ...]:
    template = TEMPLATES[rule.outcome]
    if rule.mode != "hash":
        return template
    if rule.outcome == "in_transit":  # keep the first 2..4: some end at the pickup scan
        return template[: 2 + seed[1] % (len(template) - 1)]
    return template[-(1 + seed[1] % len(template)):]


def marked(place: Place) -> Place:
    """``place`` with :data:`SANDBOX_MARKER` after its city, the part every API shows as the location."""
    return replace(place, city=f"{place.city} {SANDBOX_MARKER}")


def _events(kinds: tuple[str, ...], seed: bytes, origin: Place, dest: Place, anchor: datetime,
            marker: str = "") -> list[Event]:
    """Events oldest first; the newest is 1 to 18 hours before ``anchor``; ``marker`` ends each text."""
    count = len(kinds)
    times: list[datetime] = []
    at = anchor - timedelta(minutes=60 + seed[10] * 4)
    for index in range(count):
        times.append(at)
        at -= timedelta(minutes=180 + seed[(11 + index) % 32] * 4)
    times.reverse()
    events = []
    for index, kind in enumerate(kinds):
        at_dest = kind in _AT_DESTINATION or (kind == "in_transit" and index >= count / 2)
        texts = EVENT_TEXTS[kind]
        text = texts[seed[(20 + index) % 32] % len(texts)] + (f" {marker}" if marker else "")
        events.append(Event(kind, times[index], dest if at_dest else origin, text, EVENT_CODES[kind]))
    return events


def _estimate(outcome: str, seed: bytes, anchor: datetime, events: list[Event]) -> datetime | None:
    end_of_day = timedelta(hours=23, minutes=59)
    if outcome == "not_found":
        return None
    if outcome == "delivered" and events:
        day = events[-1].at.replace(hour=0, minute=0, second=0, microsecond=0)
        return day + timedelta(days=seed[30] % 3 - 1) + end_of_day
    if outcome in ("exception", "expired"):
        return anchor - timedelta(days=1 + seed[31] % 3) + end_of_day
    return anchor + timedelta(days=seed[31] % 8 - 3) + end_of_day  # about 1 in 3 is late


@lru_cache(maxsize=4096)
def _fixed_tracking(number: str, country: str | None, anchor: datetime) -> Tracking:
    """The tracking of a prefix or hash number: a pure function of the number, country and day."""
    rule = classify(number)
    seed = digest(number)
    origin, dest = _places(seed, country)
    marker = ""
    if rule.mode == "hash":  # a real-looking number: mark what is invented, into the warehouse
        origin, dest, marker = marked(origin), marked(dest), SANDBOX_MARKER
    events = _events(_kinds(rule, seed), seed, origin, dest, anchor, marker)
    estimate = _estimate(rule.outcome, seed, anchor, events)
    events.reverse()
    return Tracking(number, rule.outcome, tuple(events), estimate, origin, dest, rule.registered, seed)


@dataclass
class _TimedState:
    first: float
    lookups: int = 0
    switched_at: float | None = None


class OutcomeBook:
    """Builds :class:`Tracking` answers and remembers per-API lookups of timed numbers.

    :param clock: epoch-seconds clock (replaceable in tests).
    """

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._timed: dict[tuple[str, str], _TimedState] = {}

    def reset(self) -> None:
        """Forget every lookup counter and first-lookup time."""
        with self._lock:
            self._timed.clear()

    def lookups(self, api: str, number: str) -> int:
        """How many counted lookups ``api`` has answered for a timed ``number``."""
        with self._lock:
            state = self._timed.get((api, number.strip().upper()))
            return state.lookups if state else 0

    def lookup(self, api: str, number: str, *, country: str | None = None, count: bool = True) -> Tracking:
        """The tracking of ``number`` as ``api`` sees it now.

        :param api: API name (poll counters are per API).
        :param number: tracking number.
        :param country: ISO2 country of the carrier, to pick cities there.
        :param count: False to peek without counting a lookup.
        """
        rule = classify(number)
        now = self._clock()
        anchor = day_start(now)
        if rule.mode not in ("polls", "seconds"):
            return _fixed_tracking(number, country, anchor)
        seed = digest(number)
        origin, dest = _places(seed, country)
        switched_at = self._advance(api, number, rule, now, count)
        events = _events(TEMPLATES["in_transit"], seed, origin, dest, anchor)
        outcome = "in_transit"
        estimate = anchor + timedelta(days=1, hours=23, minutes=59)
        if switched_at is not None:
            outcome = rule.outcome
            at = datetime.fromtimestamp(int(switched_at), tz=timezone.utc)
            texts = EVENT_TEXTS[outcome]
            events.append(Event(outcome, at, dest, texts[seed[29] % len(texts)], EVENT_CODES[outcome]))
        events.reverse()
        return Tracking(number, outcome, tuple(events), estimate, origin, dest, rule.registered, seed)

    def _advance(self, api: str, number: str, rule: Rule, now: float, count: bool) -> float | None:
        """Count a lookup of a timed number; return when it switched to its final outcome."""
        key = (api, number.strip().upper())
        with self._lock:
            state = self._timed.get(key)
            if state is None:
                if not count:
                    return None
                state = self._timed[key] = _TimedState(first=now)
            if count:
                state.lookups += 1
            if state.switched_at is None:
                if rule.mode == "polls" and state.lookups > rule.threshold:
                    state.switched_at = now
                elif rule.mode == "seconds" and now >= state.first + rule.threshold:
                    state.switched_at = state.first + rule.threshold
            return state.switched_at
