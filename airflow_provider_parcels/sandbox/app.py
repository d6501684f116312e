"""The request pipeline, independent of the HTTP server: faults, auth, quota, latency, stats,
and the ``/_sandbox/*`` control endpoints.

The control endpoints that change state (``POST /_sandbox/reset``, ``POST /_sandbox/config``)
need the server's control token in the ``X-Sandbox-Token`` header: anyone on the machine can
reach a loopback port, and a stranger must not switch faults on under someone's test run.
Reading (``GET`` stats, config, health) stays open.
"""

from __future__ import annotations

import hmac
import math
import os
import secrets
import threading
import time
from collections.abc import Mapping
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

from .apis import API_CLASSES, SandboxApi
from .apis.base import Match
from .outcomes import OutcomeBook
from .push import PushingBook, WebhookPusher
from .ratelimit import RateDecision, SlidingWindowLimiter
from .settings import FaultInjector, SandboxSettings
from .stats import Stats
from .wire import Request, Response

#: The request header that carries the control token.
CONTROL_TOKEN_HEADER = "X-Sandbox-Token"
#: An environment variable that sets the control token (the CLI, the demo, benchmarks); else a random one.
CONTROL_TOKEN_ENV = "PARCELS_SANDBOX_TOKEN"


def new_control_token() -> str:
    """The token of a new server: ``$PARCELS_SANDBOX_TOKEN`` when set, else random."""
    return os.environ.get(CONTROL_TOKEN_ENV, "").strip() or secrets.token_urlsafe(24)


class SandboxApp:
    """Answers requests for all five APIs.

    :param settings: the initial settings.
    :param control_token: the token state-changing control calls must carry (default:
        :func:`new_control_token`).
    """

    def __init__(self, settings: SandboxSettings, control_token: str | None = None) -> None:
        self.control_token = control_token or new_control_token()
        self.settings = settings
        self.book: OutcomeBook = PushingBook()
        self.apis: dict[str, SandboxApi] = {cls.name: cls(self.book) for cls in API_CLASSES}
        self.limiter = SlidingWindowLimiter()
        self.faults = FaultInjector(settings.faults, settings.seed)
        self.stats = Stats(list(self.apis))
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.pusher = WebhookPusher(self)

    # --- control ------------------------------------------------------------------------
    def configure(self, **changes: object) -> SandboxSettings:
        """Change settings (any subset); raises ``ValueError`` on a bad name or value."""
        with self._lock:
            updated = self.settings.replace(**changes)
            if "faults" in changes or "seed" in changes:
                self.faults.configure(updated.faults, updated.seed)
            self.settings = updated
            return updated

    def reset(self) -> None:
        """Zero stats, lookup counters, quota windows and created data; restart the fault sequence."""
        with self._lock:
            self.stats.reset()
            self.book.reset()
            self.limiter.reset()
            for api in self.apis.values():
                api.reset()
            self.pusher.reset()
            self.faults.configure(self.settings.faults, self.settings.seed)

    def _control(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        request = Request(method, path, {}, headers, body)
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if method not in ("GET", "HEAD") and not self._authorized(headers):
            return Response(403, {"error": f"{method} {path} changes the sandbox: send the server's control token in "
                                           f"the {CONTROL_TOKEN_HEADER} header (printed at start; "
                                           f"${CONTROL_TOKEN_ENV} sets it)"})
        if name == "stats" and method == "GET":
            return Response(200, self.stats.snapshot())
        if name == "reset" and method == "POST":
            self.reset()
            return Response(200, {"ok": True})
        if name == "config" and method == "GET":
            return Response(200, self.settings.as_dict())
        if name == "config" and method == "POST":
            changes = request.json_or_none()
            if not isinstance(changes, dict):
                return Response(400, {"error": "send a JSON object of settings"})
            try:
                return Response(200, self.configure(**changes).as_dict())
            except (TypeError, ValueError) as exc:
                return Response(400, {"error": str(exc)})
        if name in ("scan", "webhooks"):
            return self.pusher.control(method, name, request)
        if name == "health" and method == "GET":
            return Response(200, {"ok": True, "apis": list(self.apis)})
        return Response(404, {"error": f"no control endpoint {method} {path}"})

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        given = headers.get(CONTROL_TOKEN_HEADER) or ""
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.control_token.encode())

    # --- API requests -------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes, host: str) -> Response | None:
        """Answer one request; None means: reset the connection without an answer.

        :param method: HTTP method.
        :param target: request target (path and query).
        :param headers: request headers.
        :param body: request body.
        :param host: the ``Host`` the client used, for absolute links.
        """
        parts = urlsplit(target)
        path = parts.path
        if path.startswith("/_sandbox/"):
            return self._control(method, path, headers, body)
        api = next((api for api in self.apis.values()
                    if path == api.prefix or path.startswith(api.prefix + "/")), None)
        if api is None:
            prefixes = ", ".join(api.prefix for api in self.apis.values())
            return Response(404, {"error": f"no sandbox API at {path}; the APIs live under {prefixes}"})
        query = {name: values[0] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request(method, path[len(api.prefix):] or "/", query, headers, body, f"http://{host}{api.prefix}")
        match = api.resolve(request)
        endpoint = match.route.name if match else f"{method} (no such endpoint)"
        self.stats.begin(api.name, endpoint, match.items if match else 0)
        status = None
        try:
            response = self._serve(api, request, match)
            status = response.status if response is not None else None
            if match is not None and "/webhooks" in match.route.name and status is not None and status < 300:
                self.pusher.register_hook()  # watch the subscribed timed numbers from now on
            return response
        finally:
            self.stats.end(api.name, status)

    def _serve(self, api: SandboxApi, request: Request, match: Match | None) -> Response | None:
        settings = self.settings
        fault = self.faults.draw()
        if fault is not None:
            self.stats.fault(api.name, fault)
            if fault == "reset":
                return None
            if fault == "503":
                return api.unavailable(request)
            if fault == "badjson":
                return Response(200, api.bad_json())
            if fault == "429":
                self.stats.rate_limited(api.name)
                response = api.rate_limited(request, 1.0)
                response.headers.update(refusal_headers(settings.ratelimit_style, 1.0))
                return response
            self.stopping.wait(settings.timeout_delay)  # "timeout": answer, but late
        key = api.key(request)
        if key is None:
            return api.unauthorized(request)
        if match is None:
            return api.not_found(request)
        quota = api.quota(key, settings.rpm)
        decision = None
        if quota is not None:
            weight = match.items if api.count_items else 1
            decision = self.limiter.acquire((api.name, key), quota, weight, settings.window_seconds)
            if not decision.allowed:
                self.stats.rate_limited(api.name)
                response = api.rate_limited(request, decision.wait)
                response.headers.update(usage_headers(api, decision, settings.ratelimit_style, refused=True))
                return response
        if match.route.tracking and settings.latency_per_item > 0 and match.items > 0:
            self.stopping.wait(settings.latency_per_item * match.items)
        response = getattr(api, match.route.handler)(request, key, match.params)
        if decision is not None:
            response.headers.update(usage_headers(api, decision, settings.ratelimit_style, refused=False))
        return response


def refusal_headers(style: str, wait: float) -> dict[str, str]:
    """When-to-come-back headers of a refusal in ``style``."""
    now = time.time()
    retry = max(1, math.ceil(wait))
    reset_at = math.ceil(now + wait)
    if style == "http-date":
        return {"Retry-After": formatdate(math.ceil(now) + retry, usegmt=True)}
    if style == "reset-epoch":
        return {"X-RateLimit-Reset": str(reset_at)}
    if style == "reset-epoch-ms":
        return {"X-RateLimit-Reset": str(math.ceil((now + wait) * 1000))}
    if style == "reset-seconds":
        return {"X-RateLimit-Reset": str(retry)}
    return {"Retry-After": str(retry), "X-RateLimit-Reset": str(reset_at)}


def usage_headers(api: SandboxApi, decision: RateDecision, style: str, refused: bool) -> dict[str, str]:
    """Quota headers of an answer to a rate-limited key."""
    headers: dict[str, str] = {}
    if "limit" in api.usage_headers:
        headers["X-RateLimit-Limit"] = str(decision.limit)
    if "remaining" in api.usage_headers:
        headers["X-RateLimit-Remaining"] = str(decision.remaining)
    if refused:
        headers.update(refusal_headers(style, decision.wait))
    elif "reset" in api.usage_headers:
        if style == "reset-epoch-ms":
            headers["X-RateLimit-Reset"] = str(math.ceil((time.time() + decision.wait) * 1000))
        elif style == "reset-seconds":
            headers["X-RateLimit-Reset"] = str(max(0, math.ceil(decision.wait)))
        else:
            headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + decision.wait))
    return headers
