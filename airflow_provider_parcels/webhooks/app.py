"""
The receiver as a FastAPI app: ``POST /parcels/webhooks/{conn_id}``.

The Airflow plugin (:mod:`airflow_provider_parcels.webhooks.plugin`) mounts :func:`create_app`'s
app in the API server at ``/parcels/webhooks``; :data:`app` is the same receiver as a plain ASGI
app with the same paths (``uvicorn airflow_provider_parcels.webhooks.app:app``) for a deployment
that wants it apart from the API server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from airflow_provider_parcels.webhooks.receiver import DEFAULT_MAX_BODY_BYTES, WebhookReceiver

#: Where the plugin mounts the receiver in the API server.
URL_PREFIX = "/parcels/webhooks"


def create_app(receiver: WebhookReceiver | None = None, emit_assets: bool = False,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, after_commit: Callable[[], None] | None = None
               ) -> FastAPI:
    """
    The receiver's routes, relative to where they are mounted: ``POST /{conn_id}``.

    :param receiver: a ready receiver (default: a new one with the arguments below).
    :param emit_assets: record Airflow asset events for accepted deliveries (needs the metadata
        database: true inside the API server).
    :param max_body_bytes: larger bodies get 413 without being read whole.
    :param after_commit: called after each commit, before the answer (tests).
    """
    if receiver is None:
        on_accepted = None
        if emit_assets:
            from airflow_provider_parcels.webhooks.assets import AssetEventEmitter

            on_accepted = AssetEventEmitter()
        receiver = WebhookReceiver(max_body_bytes=max_body_bytes, after_commit=after_commit, on_accepted=on_accepted)
    sub = FastAPI(title="Parcels webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    sub.state.receiver = receiver

    @sub.post("/{conn_id}")
    async def deliver(conn_id: str, request: Request) -> JSONResponse:
        """One delivery: verified, committed, then answered."""
        limit = receiver.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return JSONResponse({"error": "body too large"}, status_code=413)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return JSONResponse({"error": "body too large"}, status_code=413)
            chunks.append(chunk)
        body = b"".join(chunks)
        answer = await receiver.receive_async(conn_id, body, request.headers, dict(request.query_params))
        return JSONResponse(answer.body, status_code=answer.status)

    return sub


def create_standalone_app(**kwargs: Any) -> FastAPI:
    """
    The receiver under :data:`URL_PREFIX`, as a complete ASGI app.

    :param kwargs: passed to :func:`create_app`.
    """
    root = FastAPI(title="Parcels webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    root.mount(URL_PREFIX, create_app(**kwargs))
    return root


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access, so importing this module has no side effect.
    if name == "app":
        global app
        app = create_standalone_app()
        return app
    raise AttributeError(name)
