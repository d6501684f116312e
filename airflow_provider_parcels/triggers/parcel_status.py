"""The async poller behind the deferrable ``ParcelStatusSensor``: one event when the wait ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_parcels.hooks import hook_class
from airflow_provider_parcels.hooks.base import ParcelTrackingHook
from airflow_provider_parcels.hooks.transport import async_deadline
from airflow_provider_parcels.models import Parcel
from airflow_provider_parcels.sensors.condition import (
    DEFAULT_FAIL_ON,
    DEFAULT_TARGET_STATUSES,
    ParcelWait,
    parse_statuses,
    validate_require,
)

#: ``status`` values of the one event the trigger fires.
EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"


class ParcelStatusTrigger(BaseTrigger):
    """
    Poll a tracking API from the triggerer until parcels reach a target status; fire one event.

    Each poll asks only about the parcels still open, through ``atrack()`` of the same hook
    class the worker uses (same batching, parsing, status map and per-connection quota). It
    fires exactly one event: ``success`` when the condition holds, ``failed`` when a parcel is
    in a ``fail_on`` status, ``timeout`` at ``end_time``, ``error`` when polling breaks (wrong
    key, bad connection). Every event carries ``results`` (compact, one per parcel), ``failed``,
    ``open`` and a ``message``. It only reads: it never sends a call that creates something.

    :param conn_id: the tracking connection (any of the five APIs).
    :param conn_type: that connection's type, which picks the hook class without a lookup.
    :param parcels: the parcels still open, as dicts (``carrier``, ``tracking_number``, ...).
    :param done: compact results of the parcels already done when the task deferred.
    :param target_statuses: status names that count as arrived.
    :param fail_on: status names that end the wait with a ``failed`` event.
    :param require: ``"all"`` or ``"any"``.
    :param poll_interval: seconds between polls.
    :param end_time: when to give up, as epoch seconds (``None``: never).
    :param started_at: when the wait began, as epoch seconds (for the timeout message).
    :param hook_params: JSON keyword arguments for the hook (``requests_per_minute``,
        ``quota_share``, ``max_concurrency``, ``timeout``, ``max_retries``).
    """

    def __init__(
        self,
        *,
        conn_id: str,
        conn_type: str,
        parcels: Sequence[Mapping[str, Any]],
        done: Sequence[Mapping[str, Any]] = (),
        target_statuses: Sequence[str] = DEFAULT_TARGET_STATUSES,
        fail_on: Sequence[str] = DEFAULT_FAIL_ON,
        require: str = "all",
        poll_interval: float = 60.0,
        end_time: float | None = None,
        started_at: float | None = None,
        hook_params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.conn_type = conn_type
        self.parcels = [Parcel.coerce(p).to_dict() for p in parcels]
        self.done = [dict(d) for d in done]
        self.target_statuses = [s.value for s in parse_statuses(target_statuses, "target_statuses")]
        self.fail_on = [s.value for s in parse_statuses(fail_on, "fail_on")]
        self.require = validate_require(require)
        self.poll_interval = float(poll_interval)
        self.end_time = None if end_time is None else float(end_time)
        self.started_at = float(started_at) if started_at is not None else time.time()
        self.hook_params = dict(hook_params or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and JSON-only kwargs: ids, open parcels, compact done results; never a secret."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "conn_type": self.conn_type,
                "parcels": self.parcels,
                "done": self.done,
                "target_statuses": self.target_statuses,
                "fail_on": self.fail_on,
                "require": self.require,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "started_at": self.started_at,
                "hook_params": self.hook_params,
            },
        )

    def wait_state(self) -> ParcelWait:
        """The condition over every parcel (done ones from ``done``, open ones from ``parcels``)."""
        done_parcels = [Parcel.coerce(d) for d in self.done]
        open_parcels = [Parcel.coerce(p) for p in self.parcels]
        return ParcelWait(
            done_parcels + open_parcels,
            target_statuses=self.target_statuses,
            fail_on=self.fail_on,
            require=self.require,
            done=self.done,
        )

    async def make_hook(self) -> ParcelTrackingHook:
        """The API's hook, configured on the event loop without blocking it."""
        return await hook_class(self.conn_type, self.conn_id).for_trigger(self.conn_id, **self.hook_params)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the condition holds, a parcel fails, time runs out or polling breaks."""
        wait = self.wait_state()
        hook: ParcelTrackingHook | None = None
        polls = 0
        try:
            hook = await self.make_hook()
            while True:
                delay = self.poll_interval
                if self.end_time is not None:
                    delay = max(0.0, min(delay, self.end_time - time.time()))
                await asyncio.sleep(delay)
                still_open = wait.open_parcels()
                answered = await self._poll(hook, still_open)
                if answered is None:  # end_time passed while the poll was still waiting on the API
                    waited = time.time() - self.started_at
                    yield self._event(EVENT_TIMEOUT, wait, wait.timeout_message(waited), polls)
                    return
                wait.record(answered)
                polls += 1
                self.log.info("Poll %d: asked about %d parcel(s); %s", polls, len(still_open), wait.summary())
                if wait.failed():
                    yield self._event(EVENT_FAILED, wait, wait.failure_message(), polls)
                    return
                if wait.met():
                    yield self._event(EVENT_SUCCESS, wait, wait.summary(), polls)
                    return
                if self.end_time is not None and time.time() >= self.end_time:
                    waited = time.time() - self.started_at
                    yield self._event(EVENT_TIMEOUT, wait, wait.timeout_message(waited), polls)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            if hook is not None:
                message = hook.redact(message)
            self.log.error("Polling connection %r stopped: %s", self.conn_id, message)
            yield self._event(EVENT_ERROR, wait, f"polling connection {self.conn_id!r} failed: {message}", polls)

    async def _poll(self, hook: ParcelTrackingHook, parcels: list[Parcel]) -> list[Any] | None:
        """
        One poll, cut short when it would outlive ``end_time`` by more than one call's deadline
        (the hook's ``timeout``): a poll started at ``end_time`` still gets its call, but a slow
        server, retries or quota waits never hold the trigger past that.

        :param hook: the API's hook.
        :param parcels: the parcels still open.
        :return: the results, or ``None`` when the poll was cut short.
        """
        if self.end_time is None:
            return await hook.atrack(parcels)
        budget = max(0.0, self.end_time - time.time()) + hook.settings.timeout
        limit = async_deadline(budget)
        try:
            async with limit:
                return await hook.atrack(parcels)
        except TimeoutError:
            if limit.expired():
                self.log.warning("Poll cut short: end_time passed %.1f s ago", time.time() - self.end_time)
                return None
            raise

    def _event(self, status: str, wait: ParcelWait, message: str, polls: int) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "polls": polls,
                "results": wait.results(),
                "failed": wait.failed(),
                "open": wait.open_entries(),
            }
        )
