"""The HTTP side of the serving server: the Databricks serving REST routes, auth and limits.

Routes (a client written for Databricks serving works by changing host and token):
  POST   /api/2.0/serving-endpoints                  create
  GET    /api/2.0/serving-endpoints                  list
  GET    /api/2.0/serving-endpoints/{name}           get
  DELETE /api/2.0/serving-endpoints/{name}           delete
  PUT    /api/2.0/serving-endpoints/{name}/config    update the config
  GET    /api/2.0/serving-endpoints/{name}/metrics   Prometheus text, per served entity
  POST   /serving-endpoints/{name}/invocations       score
  GET    /health, /ready                             liveness, readiness (no token needed)
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import time
import uuid

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lib.core import payload
from lib.core.errors import ApiError
from lib.serving import capture
from lib.serving.endpoints import Manager
from lib.serving.entity import ModelFailed

log = logging.getLogger("lib.serving")
_OPEN_PATHS = ("/health", "/ready")


def _error(exc: ApiError, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


class Guard:
    """ASGI middleware: bearer token on every route but health/ready, and the body size limit."""

    def __init__(self, app: Starlette, token: str, max_bytes: int):
        self.app, self._token, self.max_bytes = app, token.encode(), max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"")
        if not auth.startswith(b"Bearer ") or not auth[7:].strip():
            return await _error(
                ApiError(401, "UNAUTHENTICATED", "send the environment's token as Authorization: Bearer <token>")
            )(scope, receive, send)
        if not hmac.compare_digest(auth[7:].strip(), self._token):
            return await _error(ApiError(403, "PERMISSION_DENIED", "this token is not valid for this environment's server"))(
                scope, receive, send
            )
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _error(
                ApiError(
                    413, "REQUEST_LIMIT_EXCEEDED", f"request body of {int(length)} bytes is over the limit of {self.max_bytes}"
                )
            )(scope, receive, send)
        return await self.app(scope, receive, send)


async def _body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "REQUEST_LIMIT_EXCEEDED", f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_body(raw: bytes) -> dict:
    body = payload.loads(raw or b"{}", "MALFORMED_REQUEST")
    if not isinstance(body, dict):
        raise ApiError(400, "MALFORMED_REQUEST", "request body must be a JSON object")
    return body


def build(manager: Manager, token: str, max_bytes: int, requester: str = "bearer") -> Guard:
    state = {"draining": False}

    def api(handler):
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return _error(exc)

        return wrapped

    @api
    async def create(request: Request) -> Response:
        body = _json_body(await _body(request, max_bytes))
        return JSONResponse(await run_in_threadpool(manager.create, body, requester))

    @api
    async def list_endpoints(request: Request) -> Response:
        return JSONResponse({"endpoints": manager.list()})

    @api
    async def get(request: Request) -> Response:
        return JSONResponse(manager.get(request.path_params["name"]).to_dict())

    @api
    async def delete(request: Request) -> Response:
        manager.delete(request.path_params["name"])
        return JSONResponse({})

    @api
    async def update(request: Request) -> Response:
        body = _json_body(await _body(request, max_bytes))
        return JSONResponse(await run_in_threadpool(manager.update, request.path_params["name"], body))

    @api
    async def metrics(request: Request) -> Response:
        endpoint = manager.get(request.path_params["name"])
        for key, value in endpoint.capture.counters.items() if endpoint.capture else ():
            endpoint.metrics.counters[key] = value
        if endpoint.active:
            endpoint.metrics.counters["batches"] = sum(s.batches for s in endpoint.active.served.values())
        return PlainTextResponse(endpoint.metrics.render(endpoint.name), media_type="text/plain; version=0.0.4")

    async def invocations(request: Request) -> Response:
        started, at = time.perf_counter(), dt.datetime.now(dt.UTC).replace(tzinfo=None)
        request_id = uuid.uuid4().hex
        served_name, raw, client_id = None, None, None
        headers = {"x-request-id": request_id}
        try:
            endpoint = manager.get(request.path_params["name"])
        except ApiError as exc:
            return _error(exc, headers)
        try:
            raw = await _body(request, max_bytes)
            content_type = request.headers.get("content-type", "application/json")
            if not content_type.startswith("application/json"):
                raise ApiError(415, "BAD_REQUEST", f"content type {content_type!r} is not supported: send application/json")
            active = endpoint.active
            if active is None:
                raise ApiError(
                    503,
                    "TEMPORARILY_UNAVAILABLE",
                    f"endpoint {endpoint.name!r} is not ready yet (config_update {endpoint.config_update})",
                )
            parsed = payload.parse(raw)
            client_id = parsed.client_request_id
            served_name = active.router.pick()
            served = active.served[served_name]
            headers["served-model-name"] = served_name
            item = served.check(parsed)
            try:
                scored = await served.score(item)
            except ModelFailed as exc:
                log.warning("endpoint %s: %s", endpoint.name, exc)
                raise ApiError(500, "INTERNAL_ERROR", str(exc)) from None
            body, status = payload.encode_predictions(scored.predictions), 200
            rows, misses = parsed.rows, scored.lookup_misses
        except ApiError as exc:
            body, status, rows, misses = json.dumps(exc.body()).encode(), exc.status, 0, 0
        except ClientDisconnect:
            return Response(status_code=499)
        elapsed = time.perf_counter() - started
        endpoint.metrics.entities[served_name or ""].observe(status, elapsed, rows, misses)
        if endpoint.capture is not None:
            endpoint.capture.offer(
                capture.row(
                    request_id,
                    client_id,
                    at,
                    status,
                    int(elapsed * 1000),
                    raw.decode("utf-8", "replace") if raw is not None else None,
                    body.decode(),
                    served_name,
                    requester,
                    misses,
                )
            )
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        if state["draining"] or not manager.settled():
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse({"ready": True})

    prefix = "/api/2.0/serving-endpoints"
    app = Starlette(
        routes=[
            Route(prefix, create, methods=["POST"]),
            Route(prefix, list_endpoints, methods=["GET"]),
            Route(prefix + "/{name}", get, methods=["GET"]),
            Route(prefix + "/{name}", delete, methods=["DELETE"]),
            Route(prefix + "/{name}/config", update, methods=["PUT"]),
            Route(prefix + "/{name}/metrics", metrics, methods=["GET"]),
            Route("/serving-endpoints/{name}/invocations", invocations, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
        ]
    )
    app.state.serving = state
    return Guard(app, token, max_bytes)
