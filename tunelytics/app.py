"""The Starlette application: /graphql over HTTP and WebSocket, health, readiness, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from cross_web import HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import ConnectionFailure
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from tunelytics import metrics
from tunelytics.config import Settings
from tunelytics.domain.models import Job
from tunelytics.domain.monitoring import kernels
from tunelytics.pubsub import Broadcaster, RedisBroadcaster, create_broadcaster
from tunelytics.resolvers.context import Context, Services
from tunelytics.resolvers.ratelimit import RequestLimiter
from tunelytics.schema import build_schema
from tunelytics.services.demo import prepare_demo
from tunelytics.services.pipeline import build_pipeline
from tunelytics.services.serving import ModelServer
from tunelytics.services.trainers import TRAINERS
from tunelytics.services.training import TrainingService
from tunelytics.storage import Storage, connect
from tunelytics.tokens import TokenVerifier

log = logging.getLogger(__name__)


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, services: Services) -> None:
        super().__init__(
            build_schema(services.settings.limits),
            graphql_ide="graphiql",
            multipart_uploads_enabled=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        )
        self.services = services

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None = None
    ) -> Context:
        return Context(
            services=self.services,
            request=request,
            response=response if isinstance(response, Response) else None,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as error:
            # Strawberry answers a request it cannot read (malformed JSON, variables that are
            # not an object, a batch) in plain text; clients of this API get a GraphQL-shaped
            # JSON error with a code, like every other error.
            code = "NOT_FOUND" if error.status_code == 404 else "BAD_USER_INPUT"
            response = Response(
                _graphql_error(code, error.reason),
                status_code=error.status_code,
                media_type="application/json",
            )
        await response(scope, receive, send)

    def parse_json(self, data: str | bytes) -> Any:
        # Strawberry turns only JSONDecodeError into a 400: invalid UTF-8 and nesting past the
        # recursion limit escaped as 500s with a traceback, and a body that is a JSON scalar
        # or null crashed it further on. A body, `variables` and `extensions` are objects; a
        # list is a batch, which Strawberry refuses itself.
        try:
            decoded = self.decode_json(data)
        except (ValueError, RecursionError) as error:
            raise HTTPException(400, "Unable to parse request body as JSON") from error
        if not isinstance(decoded, dict | list):
            raise HTTPException(400, "Expected a JSON object")
        return decoded


def _graphql_error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()


class BodyLimit:
    """Refuse request bodies over the limit before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Multipart requests carry files (analyzeAudio) and get the upload limit.
        self.max_upload_bytes = max_upload_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        limit = self.max_upload_bytes if multipart else self.max_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = _graphql_error("BAD_USER_INPUT", f"request body exceeds {limit} bytes")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class Indexes:
    """Creates the indexes at start-up. While MongoDB cannot be reached it keeps trying in
    the background, so the API stays up and /readyz says why it is not ready, instead of
    exiting at start-up whenever the database comes up after the API."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.created = False
        self.retrying: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self.storage.ensure_indexes()
            self.created = True
        except ConnectionFailure:
            log.exception("cannot create indexes yet; retrying in the background")
            self.retrying = asyncio.create_task(self._retry(), name="create-indexes")

    async def _retry(self) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self.storage.ensure_indexes()
            except ConnectionFailure as error:
                log.warning("cannot create indexes yet: %s", type(error).__name__)
                delay = min(delay * 2, 30.0)
            else:
                self.created = True
                log.info("indexes created")
                return

    async def stop(self) -> None:
        if self.retrying:
            self.retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.retrying


class RequestMetrics:
    KNOWN_PATHS = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.KNOWN_PATHS else "other"
        method = scope["method"]
        status = 500
        started = time.perf_counter()

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            metrics.HTTP_LATENCY.labels(method, path).observe(time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(method, path, str(status)).inc()


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _readyz(storage: Storage, indexes: Indexes, broadcaster: Broadcaster) -> Any:
    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(storage.ping(), 2.0)
            checks["mongodb"] = "ok" if indexes.created else "unavailable: creating indexes"
        except Exception as error:  # any failure means not ready
            checks["mongodb"] = f"unavailable: {type(error).__name__}"
        if isinstance(broadcaster, RedisBroadcaster):
            try:
                await asyncio.wait_for(broadcaster.ping(), 2.0)
                checks["redis"] = "ok"
            except Exception as error:
                checks["redis"] = f"unavailable: {type(error).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    return readyz


def create_app(
    settings: Settings, storage: Storage | None = None, train_demo: bool = False
) -> Starlette:
    """Compose the app. `storage` may be given (tests); otherwise MONGODB_URL is used.
    With `train_demo`, the demo tenant gets its models (and a few stored forecasts) in the
    background if it has none."""
    if storage is None:
        if not settings.mongodb_url:
            raise ValueError("create_app needs settings.mongodb_url or a storage")
        storage = connect(
            settings.mongodb_url, settings.mongodb_database, timeout_ms=settings.mongodb_timeout_ms
        )
    broadcaster = create_broadcaster(settings.redis_url)
    monitoring = build_pipeline(storage.db, broadcaster)
    models = ModelServer(storage, broadcaster, TRAINERS)
    services = Services(
        settings=settings,
        storage=storage,
        broadcaster=broadcaster,
        verifier=TokenVerifier(settings),
        limiter=RequestLimiter(settings.limits.rate_per_minute, settings.redis_url),
        training=TrainingService(storage, broadcaster, TRAINERS, switch=models.switch),
        models=models,
        monitoring=monitoring.monitoring,
        alerting=monitoring.alerts,
    )
    graphql = GraphQLApp(services)
    indexes = Indexes(storage)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The detector's compiled loops: a first compile takes seconds, so it runs in a
        # thread (loaded from numba's cache on later starts) while the rest starts up.
        kernels_ready = asyncio.create_task(asyncio.to_thread(kernels.warm_up))
        await indexes.start()
        await broadcaster.start()
        assert services.models and services.training
        await services.models.start()
        training = services.training

        async def retrain_demo(expired: list[Job]) -> None:
            # A demo model whose training a restart cut off is trained again.
            if any(job.tenant_id == settings.demo_tenant for job in expired):
                await prepare_demo(training, settings.demo_tenant)

        if train_demo:
            await prepare_demo(training, settings.demo_tenant)
        # Its first pass runs now: jobs a previous run of the server left behind.
        sweep = asyncio.create_task(
            training.sweep(retrain_demo if train_demo else None), name="training-sweep"
        )
        log.info("detector kernels ready", extra={"seconds": round(await kernels_ready, 3)})
        await monitoring.start()
        log.info(
            "tunelytics ready",
            extra={"database": settings.mongodb_database, "pubsub": type(broadcaster).__name__},
        )
        try:
            yield
        finally:
            sweep.cancel()
            await indexes.stop()
            if services.training and services.models:
                await services.training.stop()
                await services.models.stop()
            await monitoring.stop()
            await broadcaster.stop()
            await storage.close()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", _readyz(storage, indexes, broadcaster)),
            Route("/metrics", metrics_endpoint),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.limits.max_body_bytes,
        max_upload_bytes=settings.limits.max_upload_bytes,
    )
    app.add_middleware(RequestMetrics)
    app.state.services = services
    return app
