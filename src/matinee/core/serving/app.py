"""The serving ASGI app: recommendations, artwork choice and feedback over HTTP.

:func:`build_app` turns a :class:`~matinee.core.serving.config.Deployment` into a
Starlette app. Models are known only through their methods: a recommender has
``recommend(users, k, exclude_seen=, candidates=, unknown=)`` returning
``items``, ``scores`` and ``fallback`` arrays; an artwork policy has
``choose(context, action_features, candidates)`` returning ``actions`` and
``propensities``. On startup the app loads every model its endpoints may call,
then polls the registry every ``poll_interval`` seconds and swaps in the new
version when an alias moves (see :mod:`matinee.core.serving.slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from matinee import __version__
from matinee.core.events import EventLog
from matinee.core.serving.config import Deployment, Endpoint
from matinee.core.serving.openapi import openapi_document
from matinee.core.serving.requests import ArtworkRequest, FeedbackRequest, RecsRequest, parse_body
from matinee.core.serving.slots import Loaded, Slot
from matinee.errors import MatineeError, NotFoundError

__all__ = ["ModelUnavailable", "Server", "build_app"]

#: Decision ids remembered for feedback validation.
MAX_REMEMBERED = 1_000_000

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ModelUnavailable(MatineeError):
    """The endpoint's model is not loaded (yet), or the endpoint is not served."""

    status = 503


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, default=_default, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json")


class Metrics:
    """The app's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("matinee_requests", "HTTP requests by endpoint, model version and status.",
                                ["endpoint", "model", "version", "status"], registry=self.registry)
        self.latency = Histogram("matinee_request_seconds", "Request latency by endpoint and model version.",
                                 ["endpoint", "model", "version"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.decisions = Counter("matinee_decisions", "Artwork decisions by model version and arm.",
                                 ["model", "version", "arm"], registry=self.registry)
        self.feedback = Counter("matinee_feedback", "Feedback events by event name.", ["event"],
                                registry=self.registry)
        self.model_version = Gauge("matinee_model_version", "The version each served alias answers with.",
                                   ["model", "alias"], registry=self.registry)
        self.swaps = Counter("matinee_model_swaps", "Model versions swapped in after an alias moved.",
                             ["model", "alias"], registry=self.registry)


Handler = Callable[[Request], Awaitable[tuple[Any, Loaded | None]]]


class Server:
    """The state behind one app: the deployment, loaded models, the event log and metrics.

    Parameters
    ----------
    deployment
        What to serve.
    """

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.metrics = Metrics()
        self.slots: dict[tuple[str, str], Slot] = {}
        for endpoint in deployment.endpoints().values():
            for alias in endpoint.aliases:
                self.slots.setdefault((endpoint.name, alias), Slot(endpoint.name, alias))
        self.events: EventLog | None = None
        self._decisions: OrderedDict[str, None] = OrderedDict()
        self._poller: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Load the models and open the event log; poll the registry until shutdown."""
        self.events = EventLog(self.deployment.event_log, durability=self.deployment.durability)
        await self.refresh()
        self._poller = asyncio.create_task(self._poll())
        try:
            yield
        finally:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            events, self.events = self.events, None
            await asyncio.to_thread(events.close)

    async def refresh(self) -> None:
        """Check every alias once, swapping in moved ones."""
        for slot in self.slots.values():
            if await asyncio.to_thread(slot.refresh):
                self.metrics.swaps.labels(slot.name, slot.alias).inc()
            if slot.current is not None:
                self.metrics.model_version.labels(slot.name, slot.alias).set(slot.current.version)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.deployment.poll_interval)
            await self.refresh()

    @property
    def ready(self) -> bool:
        return all(slot.current is not None for slot in self.slots.values())

    def _model(self, endpoint_name: str, member: Any) -> tuple[Loaded, str]:
        endpoint: Endpoint | None = getattr(self.deployment, endpoint_name)
        if endpoint is None:
            raise NotFoundError(f"this server has no {endpoint_name} model", field=None)
        arm = endpoint.arm(member)
        loaded = self.slots[(endpoint.name, arm)].current
        if loaded is None:
            raise ModelUnavailable(f"model {endpoint.name}@{arm} is not loaded yet", model=endpoint.name, alias=arm)
        return loaded, arm

    # -- endpoints ---------------------------------------------------------------------
    async def recommendations(self, request: Request) -> tuple[Any, Loaded | None]:
        req = RecsRequest.parse(parse_body(await request.body()))
        loaded, arm = self._model("recs", req.user_id)
        exclude = set(req.exclude)
        recs = loaded.model.recommend(
            [req.user_id], req.k + len(exclude), exclude_seen=True,
            candidates=None if req.candidates is None else list(req.candidates), unknown="popular",
        )
        items, scores = [], []
        for item, score in zip(np.asarray(recs.items)[0].tolist(), np.asarray(recs.scores, dtype=float)[0].tolist(),
                               strict=True):
            if item is None or not np.isfinite(score) or item in exclude:
                continue
            items.append(item)
            scores.append(score)
            if len(items) == req.k:
                break
        body = {"user_id": req.user_id, "items": items, "scores": scores, "fallback": bool(recs.fallback[0]),
                "model": loaded.name, "version": loaded.version, "arm": arm}
        return body, loaded

    async def artwork(self, request: Request) -> tuple[Any, Loaded | None]:
        req = ArtworkRequest.parse(parse_body(await request.body()))
        loaded, arm = self._model("artwork", req.user_id)
        n = len(req.titles)
        width = max(len(t.variant_ids) for t in req.titles)
        dims = len(req.titles[0].features[0])
        mask = np.zeros((n, width), dtype=bool)
        features = np.zeros((n, width, dims))
        for i, title in enumerate(req.titles):
            mask[i, :len(title.variant_ids)] = True
            if dims:
                features[i, :len(title.variant_ids)] = title.features
        context = np.tile(np.asarray(req.context, dtype=np.float64), (n, 1))
        choice = loaded.model.choose(context, features if dims else None, mask)
        actions = np.asarray(choice.actions).tolist()
        propensities = np.asarray(choice.propensities, dtype=float).tolist()
        now = time.time()
        choices, records = [], []
        for title, action, propensity in zip(req.titles, actions, propensities, strict=True):
            decision_id = uuid.uuid4().hex
            variant = title.variant_ids[action]
            choices.append({"title_id": title.title_id, "variant_id": variant, "propensity": propensity,
                            "decision_id": decision_id})
            records.append({"decision_id": decision_id, "ts": now, "unit_id": req.user_id, "context": req.context,
                            "candidates": list(title.variant_ids), "action": variant, "propensity": propensity,
                            "endpoint": "artwork", "model": loaded.name, "model_version": loaded.version,
                            "arm": arm})
        await self._log(records, [])
        for record in records:
            self._remember(record["decision_id"])
        self.metrics.decisions.labels(loaded.name, str(loaded.version), arm).inc(len(records))
        body = {"user_id": req.user_id, "choices": choices, "model": loaded.name, "version": loaded.version,
                "arm": arm}
        return body, loaded

    async def feedback(self, request: Request) -> tuple[Any, Loaded | None]:
        req = FeedbackRequest.parse(parse_body(await request.body()))
        if req.decision_id not in self._decisions:
            raise NotFoundError(f"unknown decision id {req.decision_id!r}", field="decision_id")
        await self._log([], [{"decision_id": req.decision_id, "event": req.event, "reward": req.reward}])
        self.metrics.feedback.labels(req.event).inc()
        return {"decision_id": req.decision_id, "accepted": True}, None

    async def _log(self, decisions: list[dict[str, Any]], feedback: list[dict[str, Any]]) -> None:
        events = self.events
        if events is None:
            raise ModelUnavailable("the event log is not open")
        if events.durability == "strict":
            await asyncio.to_thread(events.append_many, decisions, feedback)
        else:
            events.append_many(decisions, feedback)

    def _remember(self, decision_id: str) -> None:
        self._decisions[decision_id] = None
        while len(self._decisions) > MAX_REMEMBERED:
            self._decisions.popitem(last=False)

    # -- plumbing ----------------------------------------------------------------------
    def instrument(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` with request counting and timing; errors go on to the app's handler."""

        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            loaded: Loaded | None = None
            status = 500
            try:
                body, loaded = await handler(request)
                status = 200
                return json_response(body)
            except MatineeError as exc:
                status = exc.status
                raise
            finally:
                model, version = (loaded.name, str(loaded.version)) if loaded else ("", "")
                self.metrics.requests.labels(name, model, version, str(status)).inc()
                self.metrics.latency.labels(name, model, version).observe(time.perf_counter() - start)

        return endpoint


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MatineeError)
    body = exc.to_dict()
    body.setdefault("field", body.get("parameter"))
    return json_response(body, status=exc.status)


def build_app(deployment: Deployment) -> Starlette:
    """The ASGI app serving ``deployment``.

    Parameters
    ----------
    deployment
        The models and traffic splits to serve.

    Returns
    -------
    starlette.applications.Starlette
        The app; its :class:`Server` is ``app.state.server``. Models load in the
        app's lifespan startup.

    Examples
    --------
    >>> from matinee.core.serving import Deployment, Endpoint, build_app
    >>> app = build_app(Deployment(recs=Endpoint("ranker@champion")))
    >>> sorted(route.path for route in app.routes)[:3]
    ['/artwork', '/feedback', '/healthz']
    """
    server = Server(deployment)
    document = openapi_document(__version__)

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        models = {f"{s.name}@{s.alias}": {"version": s.current.version if s.current else None, "error": s.error}
                  for s in server.slots.values()}
        ready = server.ready
        return json_response({"ready": ready, "models": models}, status=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return json_response(document)

    routes = [
        Route("/recommendations", server.instrument("recommendations", server.recommendations), methods=["POST"]),
        Route("/artwork", server.instrument("artwork", server.artwork), methods=["POST"]),
        Route("/feedback", server.instrument("feedback", server.feedback), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={MatineeError: _error}, lifespan=server.lifespan)
    app.state.server = server
    return app
