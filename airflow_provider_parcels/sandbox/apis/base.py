"""What every fake API module provides: auth, plans, routes and its own error bodies."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from ..outcomes import OutcomeBook, Tracking
from ..wire import Request, Response


@dataclass(frozen=True)
class Plan:
    """A vendor plan.

    :param rpm: requests (TrackFlow: items) per minute; None for unlimited.
    :param batch: most parcels in one request.
    """

    rpm: int | None
    batch: int


@dataclass(frozen=True)
class Route:
    """One endpoint.

    :param method: HTTP method.
    :param pattern: compiled path pattern (below the API prefix) with named groups.
    :param name: ``"GET /v2/track/{n}"``, the key in the stats' ``by_endpoint``.
    :param handler: name of the API method ``(request, key, params) -> Response``.
    :param items: function counting the parcels in a request (None: 1).
    :param tracking: whether the per-item latency applies.
    """

    method: str
    pattern: re.Pattern[str]
    name: str
    handler: str
    items: Callable[[Request], int] | None = None
    tracking: bool = False


@dataclass
class Match:
    """A request matched to a route.

    :param route: the route.
    :param params: path parameters.
    :param items: parcels in the request.
    """

    route: Route
    params: dict[str, str] = field(default_factory=dict)
    items: int = 1


def route(method: str, template: str, handler: str, items: Callable[[Request], int] | None = None,
          tracking: bool = False) -> Route:
    """Build a :class:`Route` from a template such as ``/v2/track/{number}`` (a trailing ``/?``
    in the template makes the slash optional)."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    name = f"{method} {template.replace('/?', '/')}"
    return Route(method, re.compile(f"^{regex}$"), name, handler, items, tracking)


def count_list(body_key: str | None) -> Callable[[Request], int]:
    """Items = length of the JSON list at ``body_key`` (or of the body itself when None)."""

    def count(request: Request) -> int:
        body = request.json_or_none()
        value = body if body_key is None else (body.get(body_key) if isinstance(body, dict) else None)
        return len(value) if isinstance(value, (list, dict)) else 0

    return count


class SandboxApi:
    """Base of the five fakes.

    :param book: the shared :class:`OutcomeBook`.
    """

    name: ClassVar[str] = ""
    prefix: ClassVar[str] = ""
    plans: ClassVar[dict[str, Plan]] = {}
    max_batch: ClassVar[int] = 1
    count_items: ClassVar[bool] = False
    #: Quota headers on every answer to a rate-limited key: any of limit, remaining, reset.
    usage_headers: ClassVar[tuple[str, ...]] = ("limit", "remaining")
    routes: ClassVar[tuple[Route, ...]] = ()

    def __init__(self, book: OutcomeBook) -> None:
        self.book = book
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget what clients created (orders, trackings, webhooks)."""

    # --- keys and plans -------------------------------------------------------------------
    def key(self, request: Request) -> str | None:
        """The API key of a request, or None when it is missing or invalid."""
        raise NotImplementedError

    @staticmethod
    def valid_key(key: str) -> bool:
        """Sandbox keys start with ``sandbox``."""
        return key.startswith("sandbox")

    def plan(self, key: str) -> Plan | None:
        """The plan named by the key's ``-<plan>`` suffix, if any."""
        suffix = key.rsplit("-", 1)[-1].lower() if "-" in key else ""
        return self.plans.get(suffix)

    def quota(self, key: str, rpm: int | None) -> int | None:
        """Per-minute quota of ``key``: its plan's, else ``rpm``, else None."""
        plan = self.plan(key)
        return plan.rpm if plan is not None else rpm

    def batch_limit(self, key: str) -> int:
        """Most parcels per request for ``key``."""
        plan = self.plan(key)
        return plan.batch if plan is not None else self.max_batch

    # --- routing ------------------------------------------------------------------------
    def resolve(self, request: Request) -> Match | None:
        """The route for a request, or None."""
        for candidate in self.routes:
            if candidate.method != request.method:
                continue
            found = candidate.pattern.match(request.path)
            if found:
                items = candidate.items(request) if candidate.items else 1
                return Match(candidate, found.groupdict(), items)
        return None

    def lookup(self, number: str, country: str | None = None, count: bool = True) -> Tracking:
        """The sandbox outcome of ``number`` for this API."""
        return self.book.lookup(self.name, number, country=country, count=count)

    # --- answers every API has ----------------------------------------------------------
    def unauthorized(self, request: Request) -> Response:
        """Answer to a missing or invalid key."""
        raise NotImplementedError

    def not_found(self, request: Request) -> Response:
        """Answer to an unknown path."""
        raise NotImplementedError

    def rate_limited(self, request: Request, wait: float) -> Response:
        """Answer to a request over the quota (headers are added by the server)."""
        raise NotImplementedError

    def unavailable(self, request: Request) -> Response:
        """Answer of the ``503`` fault."""
        raise NotImplementedError

    def bad_json(self) -> bytes:
        """Body of the ``badjson`` fault: the start of a plausible answer, cut off."""
        return b'{"success": true, "results": [{"trackingNumber": "'
