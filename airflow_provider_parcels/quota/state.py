"""
The ledger's arithmetic: one record per API key, and the steps that change it.

Every store runs :func:`step` atomically on the key's record with the store's own clock (the
SQL stores in Python inside a locking transaction, Redis as the same rules in a Lua script,
:data:`airflow_provider_parcels.quota.stores.LUA_STEP`). Times are epoch seconds on the store's clock.

* Minute pacing: a generic cell rate algorithm with a burst of one, kept as ``tat`` (the
  theoretical arrival time of the next request). A reservation starts at
  ``max(now, tat, paused_until)`` and moves ``tat`` on by ``cost * interval``. It is
  work-conserving (whoever asks takes the slot nobody else booked) and a killed process holds
  nothing but the slots it already booked.
* Day and month budgets: units used in the current UTC calendar day and month; a reservation
  that would go over one is refused (``exhausted``), never queued. ``*_cap`` is a lower limit
  learned from the API (what it says is left) for the current period only; ``*_end`` is when
  the period resets (midnight UTC, the first of the month at midnight UTC, or what the API said).
"""

from __future__ import annotations

import calendar
import math
import time
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone

PERIODS = ("day", "month")
DAY = 86_400.0


@dataclass
class LedgerState:
    """
    The record of one API key.

    :param tat: theoretical arrival time: the earliest start of the next reservation.
    :param paused_until: no reservation starts before this (a refusal's ``Retry-After``).
    :param day_end: when the current day period ends (0: no period yet).
    :param day_used: units reserved in the current day.
    :param day_cap: the day's limit as lowered by the API's own counters, or ``None``.
    :param month_end: when the current month period ends.
    :param month_used: units reserved in the current month.
    :param month_cap: the month's limit as lowered by the API, or ``None``.
    :param rpm: the per-minute quota of the last reservation (for ``status``).
    :param day_limit: the configured day budget of the last reservation (for ``status``).
    :param month_limit: the configured month budget of the last reservation (for ``status``).
    :param updated_at: when the record was last written.
    """

    tat: float = 0.0
    paused_until: float = 0.0
    day_end: float = 0.0
    day_used: float = 0.0
    day_cap: float | None = None
    month_end: float = 0.0
    month_used: float = 0.0
    month_cap: float | None = None
    rpm: float | None = None
    day_limit: float | None = None
    month_limit: float | None = None
    updated_at: float = 0.0

    def copy(self) -> LedgerState:
        """A copy to change."""
        return replace(self)

    def limit(self, period: str) -> float | None:
        """
        The limit in force for ``period``: the lower of the configured one and the learned cap.

        :param period: ``day`` or ``month``.
        """
        values = [v for v in (getattr(self, f"{period}_limit"), getattr(self, f"{period}_cap")) if v is not None]
        return min(values) if values else None


#: The record's columns, in the order the stores keep them.
STATE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LedgerState))
NULLABLE_FIELDS = frozenset({"day_cap", "month_cap", "rpm", "day_limit", "month_limit"})


@dataclass(frozen=True)
class Reserve:
    """
    Book a slot for a request of ``cost`` units.

    :param cost: units (a TrackFlow batch costs one per parcel).
    :param interval: seconds per unit of the minute pacing (0: no pacing).
    :param rpm: the minute quota it stands for (kept for ``status``).
    :param day_limit: the configured day budget, or ``None``.
    :param month_limit: the configured month budget, or ``None``.
    """

    cost: float
    interval: float
    rpm: float | None = None
    day_limit: float | None = None
    month_limit: float | None = None


@dataclass(frozen=True)
class Pause:
    """
    Hold every reservation of the key back for ``seconds`` (a 429's ``Retry-After``).

    :param seconds: how long, from the store's now.
    """

    seconds: float


@dataclass(frozen=True)
class Lower:
    """
    The API says only ``remaining`` units are left of ``period``.

    :param period: ``minute``, ``day`` or ``month``. For ``minute`` only ``remaining <= 0``
        matters: every reservation waits for the reset.
    :param remaining: units left, as the API counts them.
    :param reset_in: seconds until the period resets, as the API says, or ``None``.
    """

    period: str
    remaining: float
    reset_in: float | None = None

    def __post_init__(self) -> None:
        if self.period not in ("minute", *PERIODS):
            raise ValueError(f"unknown quota period {self.period!r}: minute, day or month")


@dataclass(frozen=True)
class Peek:
    """Read the record (for ``status``); the store does not write it."""


Op = Reserve | Pause | Lower | Peek


@dataclass(frozen=True)
class StepResult:
    """
    What a step did.

    :param now: the store's clock when it ran.
    :param wait: seconds from ``now`` until the booked slot (0 when refused or not a reservation).
    :param exhausted: ``day`` or ``month`` when the reservation was refused for that budget.
    :param state: the record after the step.
    """

    now: float
    wait: float
    exhausted: str | None
    state: LedgerState


def day_end(now: float) -> float:
    """
    The next midnight UTC after ``now``.

    :param now: epoch seconds.
    """
    return (math.floor(now / DAY) + 1) * DAY


def month_end(now: float) -> float:
    """
    The first of the next month, midnight UTC, after ``now``.

    :param now: epoch seconds.
    """
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


def roll(state: LedgerState, now: float) -> None:
    """
    Start a new day or month when the current one has ended.

    :param state: the record, changed in place.
    :param now: the store's clock.
    """
    if now >= state.day_end:
        state.day_used, state.day_cap, state.day_end = 0.0, None, day_end(now)
    if now >= state.month_end:
        state.month_used, state.month_cap, state.month_end = 0.0, None, month_end(now)


def step(state: LedgerState, op: Op, now: float) -> StepResult:
    """
    Apply ``op`` to a copy of ``state`` at the store's clock ``now``.

    :param state: the record as stored.
    :param op: what to do.
    :param now: the store's clock, epoch seconds.
    :return: the result, with the record to store.
    """
    state = state.copy()
    roll(state, now)
    wait, exhausted = 0.0, None
    if isinstance(op, Reserve):
        state.rpm, state.day_limit, state.month_limit = op.rpm, op.day_limit, op.month_limit
        for period in ("month", "day"):  # the month first: when both are spent, the day's reset helps nothing
            limit = state.limit(period)
            if limit is not None and getattr(state, f"{period}_used") + op.cost > limit:
                exhausted = period
                break
        if exhausted is None:
            start = max(now, state.tat, state.paused_until)
            state.tat = start + op.cost * op.interval
            state.day_used += op.cost
            state.month_used += op.cost
            wait = start - now
    elif isinstance(op, Pause):
        state.paused_until = max(state.paused_until, now + max(0.0, op.seconds))
    elif isinstance(op, Lower):
        if op.period == "minute":
            if op.remaining <= 0 and op.reset_in is not None:
                state.paused_until = max(state.paused_until, now + max(0.0, op.reset_in))
        else:
            if op.reset_in is not None and op.reset_in > 0:
                setattr(state, f"{op.period}_end", now + op.reset_in)
            cap = getattr(state, f"{op.period}_used") + max(0.0, op.remaining)
            old = getattr(state, f"{op.period}_cap")
            if old is None or cap < old:
                setattr(state, f"{op.period}_cap", cap)
    if not isinstance(op, Peek):
        state.updated_at = now
    return StepResult(now=now, wait=wait, exhausted=exhausted, state=state)


def wall_clock() -> float:
    """This machine's clock (the embedded store's: one machine, one clock)."""
    return time.time()
