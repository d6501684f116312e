"""Why a parcel wait ended badly; both errors carry the parcels concerned for callbacks and notifiers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

#: XCom key under which a failing sensor pushes the compact results of the parcels that failed it.
FAILED_XCOM_KEY = "failed_parcels"


class ParcelStatusFailure(AirflowFailException):
    """
    A parcel reached a ``fail_on`` status: the task fails without retry.

    :param message: the parcels listed in words.
    :param parcels: their compact results (``tracking_number``, ``carrier``, ``status``, ``error``,
        ``last_event``...), read by ``on_failure_callback`` and ``ParcelReportNotifier``.
    """

    def __init__(self, message: str, parcels: Sequence[Mapping[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.parcels = [dict(p) for p in parcels or ()]


class ParcelWaitTimeout(AirflowSensorTimeout):
    """
    The sensor timed out with parcels still open: the task fails without retry.

    :param message: the open parcels listed in words.
    :param parcels: the compact latest results of the parcels still open.
    """

    def __init__(self, message: str, parcels: Sequence[Mapping[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.parcels = [dict(p) for p in parcels or ()]
