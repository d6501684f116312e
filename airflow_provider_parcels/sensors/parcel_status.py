"""Wait until parcels reach delivered, exception or another status, through any of the five APIs."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_provider_parcels.hooks import hook_for_connection
from airflow_provider_parcels.models import Parcel, ParcelStatus
from airflow_provider_parcels.sensors.condition import (
    DEFAULT_FAIL_ON,
    DEFAULT_TARGET_STATUSES,
    ParcelWait,
    coerce_parcels,
    describe_many,
    parse_statuses,
    validate_require,
)
from airflow_provider_parcels.sensors.exceptions import FAILED_XCOM_KEY, ParcelStatusFailure, ParcelWaitTimeout
from airflow_provider_parcels.triggers.parcel_status import (
    EVENT_FAILED,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    ParcelStatusTrigger,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_parcels.hooks.base import ParcelTrackingHook

#: Task state store key (Airflow 3.3+) holding the parcels done in earlier reschedule pokes.
STATE_KEY = "parcel_status_sensor"
#: Extra seconds Airflow's own deferral timeout allows past the trigger's, so the trigger's
#: timeout event (which lists the open parcels) normally ends the wait.
DEFERRAL_GRACE_SECONDS = 60.0


class ParcelStatusSensor(BaseSensorOperator):
    """
    Wait until parcels reach a target status (delivered, exception, expired by default).

    Each poke tracks only the parcels not yet in a target status, in full batches, through
    the hook of the connection's API (``track()``, the same code as ``TrackParcelsOperator``),
    and logs how many are done. When all (``require="all"``) or any (``require="any"``) have
    arrived the task succeeds and returns one compact entry per parcel (``tracking_number``,
    ``carrier``, ``provider``, ``status``, ``error``, ``last_event``...; never raw payloads),
    which is also a valid ``parcels`` input for the operators. A parcel seen in a ``fail_on``
    status fails the task at once, without retry, with a message listing those parcels
    (``ParcelStatusFailure``, whose ``parcels`` attribute and XCom ``failed_parcels`` hold them);
    a ``fail_on`` parcel fails the task even when the condition also holds. A timeout
    (``ParcelWaitTimeout``) lists the parcels still open.

    In ``reschedule`` mode the done parcels are kept between pokes in the task state store
    (Airflow 3.3+; XCom is cleared at every reschedule); without it every poke asks about all
    parcels not answered in this poke. With ``deferrable=True`` the first check runs on the
    worker, then :class:`~airflow_provider_parcels.triggers.parcel_status.ParcelStatusTrigger`
    polls the open parcels from the triggerer every ``poke_interval`` seconds.

    :param parcels: dicts with ``carrier`` and ``tracking_number`` (optional ``client_id``,
        ``postal_code``, ``phone_number``) or ``Parcel`` objects, or an XComArg; templated.
    :param conn_id: a connection of type whereparcel, trackingmore, trackflow, parcellab or
        shipengine; templated.
    :param target_statuses: status names that count as arrived.
    :param require: ``"all"`` (every parcel) or ``"any"`` (one parcel) must arrive.
    :param fail_on: status names that fail the task; ``()`` never fails on a status.
    :param hook_params: keyword arguments for the hook (``requests_per_minute``,
        ``quota_share``, ``max_concurrency``, ``timeout``, ``max_retries``); JSON values.
    :param deferrable: hand the wait to the triggerer after the first check (default from
        ``[operators] default_deferrable``).
    :param kwargs: ``BaseSensorOperator`` arguments: ``poke_interval`` (also the trigger's
        poll interval), ``timeout``, ``mode``, ``soft_fail``...
    """

    template_fields: Sequence[str] = ("parcels", "conn_id")
    ui_color = "#f6e7c8"

    def __init__(
        self,
        *,
        parcels: Any,
        conn_id: str,
        target_statuses: Iterable[str | ParcelStatus] = DEFAULT_TARGET_STATUSES,
        require: str = "all",
        fail_on: Iterable[str | ParcelStatus] = DEFAULT_FAIL_ON,
        hook_params: Mapping[str, Any] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.parcels = parcels
        self.conn_id = conn_id
        self.target_statuses = [s.value for s in parse_statuses(target_statuses, "target_statuses")]
        if not self.target_statuses:
            raise ValueError("target_statuses: give at least one status to wait for")
        self.fail_on = [s.value for s in parse_statuses(fail_on, "fail_on")]
        self.require = validate_require(require)
        self.hook_params = dict(hook_params or {})
        self.deferrable = deferrable
        self._wait: ParcelWait | None = None

    @cached_property
    def hook(self) -> ParcelTrackingHook:
        """The tracking hook of the connection's API."""
        return hook_for_connection(self.conn_id, **self.hook_params)

    # ------------------------------------------------------------------ execution

    def execute(self, context: Context) -> Any:
        """Poke (or reschedule) until done; with ``deferrable``, check once here and defer the rest."""
        started = time.time()
        try:
            if self.deferrable:
                return self._check_then_defer(context, started)
            try:
                return super().execute(context)
            except AirflowSensorTimeout as err:
                if isinstance(err, ParcelWaitTimeout) or self._wait is None:
                    raise
                raise ParcelWaitTimeout(f"{err} {self._wait.timeout_message()}", self._wait.open_entries()) from None
        finally:
            if "hook" in self.__dict__:
                self.hook.close()

    def poke(self, context: Context) -> PokeReturnValue:
        """Track the open parcels once; succeed, fail on a ``fail_on`` status, or wait on."""
        wait = self._wait_state(context)
        still_open = wait.open_parcels()
        if still_open:
            wait.record(self.hook.track(still_open))
        self.log.info("Asked about %d open parcel(s); %s", len(still_open), wait.summary())
        errors = wait.errors()
        if errors:
            self.log.warning("%d open parcel(s) answered with an error: %s", len(errors), describe_many(errors))
        if wait.failed():
            self._forget(context)
            self._fail(context, wait.failure_message(), wait.failed())
        if wait.met():
            self._forget(context)
            return PokeReturnValue(is_done=True, xcom_value=wait.results())
        self._remember(context, wait)
        return PokeReturnValue(is_done=False)

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        """Turn the trigger's event into success (compact XCom), a failure or a timeout."""
        if not event:
            raise AirflowException("the parcel status trigger ended without an event")
        status = event.get("status")
        message = str(event.get("message") or "")
        if status == EVENT_SUCCESS:
            self.log.info("Condition met after %s poll(s) on the triggerer: %s", event.get("polls"), message)
            return event.get("results")
        if status == EVENT_FAILED:
            self._fail(context, message, event.get("failed") or [])
        if status == EVENT_TIMEOUT:
            raise ParcelWaitTimeout(f"Sensor has timed out: {message}", event.get("open") or [])
        raise AirflowException(f"Waiting for parcels failed on the triggerer: {message}")

    # ------------------------------------------------------------------ helpers

    def _check_then_defer(self, context: Context, started: float) -> Any:
        try:
            first = self.poke(context)
        except (AirflowFailException, AirflowSensorTimeout) as err:
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"Skipping: {err}") from err
            raise
        if first:
            return first.xcom_value
        wait = self._wait
        assert wait is not None
        end_time = started + self.timeout if math.isfinite(self.timeout) else None
        trigger = ParcelStatusTrigger(
            conn_id=self.conn_id,
            conn_type=self.hook.conn_type,
            parcels=[p.to_dict() for p in wait.open_parcels()],
            done=wait.done_entries(),
            target_statuses=self.target_statuses,
            fail_on=self.fail_on,
            require=self.require,
            poll_interval=self.poke_interval,
            end_time=end_time,
            started_at=started,
            hook_params=self.hook_params,
        )
        self.log.info("Deferring: %d parcel(s) still open", len(wait.open_parcels()))
        timeout = timedelta(seconds=self.timeout + DEFERRAL_GRACE_SECONDS) if end_time is not None else None
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)

    def _wait_state(self, context: Context) -> ParcelWait:
        if self._wait is None:
            parcels: list[Parcel] = coerce_parcels(self.parcels)
            self._wait = ParcelWait(parcels, self.target_statuses, self.fail_on, self.require)
            if self.reschedule:
                self._restore(context, self._wait)
        return self._wait

    def _store(self, context: Context) -> Any:
        return context.get("task_state_store") if self.reschedule else None

    def _restore(self, context: Context, wait: ParcelWait) -> None:
        store = self._store(context)
        if store is None:
            self.log.info("No task state store (Airflow < 3.3): every poke asks about every open parcel")
            return
        saved = store.get(STATE_KEY)
        if isinstance(saved, Mapping) and saved.get("try_number") == _try_number(context):
            restored = wait.restore(saved)
            if restored:
                self.log.info("%d parcel(s) were done in earlier pokes of this try", restored)

    def _remember(self, context: Context, wait: ParcelWait) -> None:
        store = self._store(context)
        if store is not None:
            store.set(STATE_KEY, {**wait.state(), "try_number": _try_number(context)})

    def _forget(self, context: Context) -> None:
        store = self._store(context)
        if store is not None:
            store.delete(STATE_KEY)

    def _fail(self, context: Context, message: str, failed: Sequence[Mapping[str, Any]]) -> None:
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=FAILED_XCOM_KEY, value=list(failed))
        raise ParcelStatusFailure(message, failed)


def _try_number(context: Context) -> int | None:
    ti = context.get("ti")
    return getattr(ti, "try_number", None)
