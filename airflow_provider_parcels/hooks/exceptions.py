"""
Errors raised by the hooks; none of their messages ever holds a key or a secret: the hooks
build them from redacted text or pass them through
:meth:`~airflow_provider_parcels.hooks.base.ParcelTrackingHook.redacting` (one
:class:`~airflow_provider_parcels.hooks.redaction.Redactor` per connection).
"""

from __future__ import annotations

from airflow.exceptions import AirflowException


class ParcelApiError(AirflowException):
    """Base class of the errors the tracking hooks raise."""


class ParcelConnectionError(ParcelApiError):
    """The Airflow connection lacks a field the API needs, or a field has a bad value."""


class ParcelApiAuthError(ParcelApiError):
    """The API refused the connection's credentials (HTTP 401/403): never retried."""


class RetryableApiError(Exception):
    """
    One attempt failed in a way that may pass on a later attempt.

    :param code: the error code the affected parcels get if every attempt fails
        (``rate_limited``, ``server_error``, ``timeout``, ``connection_error``,
        ``malformed_response``).
    :param message: a short human sentence, free of secrets.
    :param wait: seconds the API asked us to wait (``Retry-After`` / ``X-RateLimit-Reset``),
        or ``None`` for exponential backoff.
    """

    def __init__(self, code: str, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.wait = wait


class RequestRejected(Exception):
    """
    The API rejected a request for reasons of its own (HTTP 400/404/422): per-parcel errors.

    :param status_code: the HTTP status.
    :param code: the error code the parcels get (``not_found``, ``bad_request``).
    :param message: the API's message.
    """

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
