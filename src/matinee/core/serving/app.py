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
import math
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
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
from matinee.core.events import EventLog, decision_rows
from matinee.core.serving.config import Deployment, Endpoint
from matinee.core.serving.learning import OnlineLearner, Round
from matinee.core.serving.openapi import openapi_document
from matinee.core.serving.requests import (
    ArtworkRequest,
    FeedbackRequest,
    InvalidRequest,
    RecsRequest,
    parse_body,
)
from matinee.core.serving.slots import Loaded, Slot
from matinee.errors import MatineeError, NotFoundError, ParameterError

__all__ = ["ModelUnavailable", "Overloaded", "Server", "build_app"]

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


_ENCODER = json.JSONEncoder(default=_default, allow_nan=False, separators=(",", ":"))


def json_response(data: Any, status: int = 200) -> Response:
    body = _ENCODER.encode(data)
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
        self.online_rounds = Counter("matinee_online_rounds", "Rounds the served policy learned from online.",
                                     ["model", "alias"], registry=self.registry)
        self.snapshots = Counter("matinee_snapshots", "Online snapshots registered and served.",
                                 ["model", "alias"], registry=self.registry)


Handler = Callable[[Request], Awaitable[tuple[Any, Loaded | None]]]


class Overloaded(MatineeError):
    """More requests are being handled than the deployment's ``max_in_flight``; retry shortly."""

    status = 503
    retry_after = 1


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
        self.learner: OnlineLearner | None = None
        if deployment.learn and deployment.artwork is not None:
            self.learner = OnlineLearner(deployment.learn_batch, on_learn=self._learned)
        self.in_flight = 0
        self._rng = np.random.default_rng()  # team draft's coin flips
        self._decisions: OrderedDict[str, None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Load the models and open the event log; poll the registry (and snapshot) until shutdown.

        At shutdown -- after the ASGI server has finished the requests in flight --
        policies that learned are snapshotted and the event log is flushed and closed.
        """
        self.events = EventLog(self.deployment.event_log, durability=self.deployment.durability)
        await self.refresh()
        self._tasks = [asyncio.create_task(self._poll())]
        if self.learner is not None and self.deployment.snapshot_interval > 0:
            self._tasks.append(asyncio.create_task(self._snapshots()))
        try:
            yield
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.snapshot()
            events, self.events = self.events, None
            await asyncio.to_thread(events.close)

    async def refresh(self) -> None:
        """Check every alias once, swapping in moved ones."""
        for slot in self.slots.values():
            if await asyncio.to_thread(slot.refresh):
                self.metrics.swaps.labels(slot.name, slot.alias).inc()
                if self.learner is not None:
                    self.learner.reset(slot)
            if slot.current is not None:
                self.metrics.model_version.labels(slot.name, slot.alias).set(slot.current.version)

    async def snapshot(self) -> None:
        """Snapshot every policy that learned since its last snapshot (see :mod:`.learning`)."""
        if self.learner is None:
            return
        for slot in self.slots.values():
            version = await self.learner.snapshot(slot)
            if version is not None:
                self.metrics.snapshots.labels(slot.name, slot.alias).inc()
                self.metrics.model_version.labels(slot.name, slot.alias).set(version)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.deployment.poll_interval)
            await self.refresh()

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.deployment.snapshot_interval)
            await self.snapshot()

    def _learned(self, slot: Slot, rounds: int) -> None:
        self.metrics.online_rounds.labels(slot.name, slot.alias).inc(rounds)

    @property
    def ready(self) -> bool:
        return all(slot.current is not None for slot in self.slots.values())

    def _endpoint(self, endpoint_name: str) -> Endpoint:
        endpoint: Endpoint | None = getattr(self.deployment, endpoint_name)
        if endpoint is None:
            raise NotFoundError(f"this server has no {endpoint_name} model", field=None)
        return endpoint

    def _model(self, endpoint: Endpoint, member: Any) -> tuple[Loaded, str]:
        arm = endpoint.arm(member)
        loaded = self.slots[(endpoint.name, arm)].current
        if loaded is None:
            raise ModelUnavailable(f"model {endpoint.name}@{arm} is not loaded yet", model=endpoint.name, alias=arm)
        return loaded, arm

    # -- recommendations ---------------------------------------------------------------
    async def recommendations(self, request: Request) -> tuple[Any, Loaded | None]:
        req = RecsRequest.parse(parse_body(await request.body()))
        answers = self._recommend([req])
        await self._log_lists(answers)
        (body, loaded), = answers
        return body, loaded

    async def recommendations_batch(self, request: Request) -> tuple[Any, Loaded | None]:
        reqs = _parse_batch(parse_body(await request.body()), RecsRequest.parse)
        answers = self._recommend(reqs)
        await self._log_lists(answers)
        return {"results": [body for body, _ in answers]}, answers[0][1]

    async def _log_lists(self, answers: list[tuple[dict[str, Any], Loaded]]) -> None:
        """Log each non-empty list as a decision (its exposure), and give its id to the answer for feedback.

        The decision's candidates are the items shown in order, its action the first
        of them, its propensity 1 (a ranker is deterministic); feedback on an item of
        the list uses the list's ``decision_id`` (e.g. ``event = "play:<item>"``).
        """
        now = time.time()
        records = []
        ids = iter(_decision_ids(sum(1 for body, _ in answers if body["items"])))
        for body, loaded in answers:
            if not body["items"]:
                body["decision_id"] = None
                continue
            decision_id = next(ids)
            body["decision_id"] = decision_id
            teams = body.get("teams")  # interleaved: which ranker picked each slot (1 = the second)
            records.append({"decision_id": decision_id, "ts": now, "unit_id": body["user_id"],
                            "context": [] if teams is None else [float(t == "b") for t in teams],
                            "candidates": body["items"], "action": body["items"][0], "propensity": 1.0,
                            "endpoint": "recs", "model": loaded.name,
                            "model_version": loaded.version if teams is None else
                            "+".join(str(v) for v in body["versions"]), "arm": body["arm"]})
        if records:
            await self._log(records, [])
            for record in records:
                self._remember(record["decision_id"])

    def _interleave(self, endpoint: Endpoint, reqs: list[RecsRequest]) -> list[tuple[dict[str, Any], Loaded]]:
        """Each member's lists from the two interleaved aliases, merged by team draft into one."""
        from matinee.core.experiments.interleaving import team_draft

        first, second = (self.slots[(endpoint.name, alias)].current for alias in endpoint.aliases)
        if first is None or second is None:
            raise ModelUnavailable(f"model {endpoint.name}@{'+'.join(endpoint.aliases)} is not loaded yet",
                                   model=endpoint.name)
        a = self._recommend(reqs, fixed=(first, endpoint.aliases[0]))
        b = self._recommend(reqs, fixed=(second, endpoint.aliases[1]))
        arm = "+".join(endpoint.aliases)
        answers = []
        for req, (body_a, _), (body_b, _) in zip(reqs, a, b, strict=True):
            merged = team_draft(body_a["items"], body_b["items"], req.k, self._rng)
            score_of = {"a": dict(zip(body_a["items"], body_a["scores"], strict=True)),
                        "b": dict(zip(body_b["items"], body_b["scores"], strict=True))}
            answers.append(({"user_id": req.user_id, "items": merged.items,
                             "scores": [score_of[t][i] for t, i in zip(merged.teams, merged.items, strict=True)],
                             "teams": merged.teams, "fallback": body_a["fallback"] or body_b["fallback"],
                             "model": first.name, "version": first.version, "versions": [first.version,
                                                                                         second.version],
                             "arm": arm}, first))
        return answers

    def _recommend(self, reqs: list[RecsRequest], fixed: tuple[Loaded, str] | None = None,
                   ) -> list[tuple[dict[str, Any], Loaded]]:
        """Answer recommendation requests; those of one model without candidates share one call.

        ``fixed`` answers every request with one model and arm (one side of an interleaving).
        """
        endpoint = self._endpoint("recs")
        if endpoint.interleave and fixed is None:
            return self._interleave(endpoint, reqs)
        routed = [fixed if fixed is not None else self._model(endpoint, req.user_id) for req in reqs]
        answers: list[tuple[dict[str, Any], Loaded] | None] = [None] * len(reqs)
        groups: dict[int, list[int]] = {}
        for i, (req, (loaded, _)) in enumerate(zip(reqs, routed, strict=True)):
            if req.candidates is None:
                groups.setdefault(id(loaded), []).append(i)
            else:
                groups[-1 - i] = [i]  # a candidate set of its own: one call
        for members in groups.values():
            loaded = routed[members[0]][0]
            first = reqs[members[0]]
            depth = max(reqs[i].k + len(reqs[i].exclude) for i in members)
            recs = loaded.model.recommend(
                [reqs[i].user_id for i in members], depth, exclude_seen=True,
                candidates=None if first.candidates is None else list(first.candidates), unknown="popular",
            )
            items_rows = np.asarray(recs.items).tolist()
            score_rows = np.asarray(recs.scores, dtype=float).tolist()
            fallback = np.asarray(recs.fallback).tolist()
            for row, i in enumerate(members):
                req, arm = reqs[i], routed[i][1]
                exclude = set(req.exclude)
                items, scores = [], []
                for item, score in zip(items_rows[row], score_rows[row], strict=True):
                    if item is None or not math.isfinite(score) or item in exclude:
                        continue
                    items.append(item)
                    scores.append(score)
                    if len(items) == req.k:
                        break
                answers[i] = ({"user_id": req.user_id, "items": items, "scores": scores,
                               "fallback": bool(fallback[row]), "model": loaded.name, "version": loaded.version,
                               "arm": arm}, loaded)
        return [a for a in answers if a is not None]

    # -- artwork -----------------------------------------------------------------------
    async def artwork(self, request: Request) -> tuple[Any, Loaded | None]:
        req = ArtworkRequest.parse(parse_body(await request.body()))
        (body, loaded), = await self._choose([req], batch=False)
        return body, loaded

    async def artwork_batch(self, request: Request) -> tuple[Any, Loaded | None]:
        reqs = _parse_batch(parse_body(await request.body()), ArtworkRequest.parse)
        answers = await self._choose(reqs, batch=True)
        return {"results": [body for body, _ in answers]}, answers[0][1]

    @staticmethod
    def _check_sizes(reqs: list[ArtworkRequest], members: list[int], loaded: Loaded, batch: bool) -> None:
        """Refuse, naming the field, what the policy (or the rest of the batch) cannot take in one call."""

        def where(i: int) -> str:
            return f"requests.{i}." if batch else ""

        model, label = loaded.model, f"the policy {loaded.name} version {loaded.version}"
        first = reqs[members[0]]
        dims = getattr(model, "n_context_features_", None)
        dims = dims if isinstance(dims, int) else len(first.context)
        width = getattr(model, "n_actions_", None)
        k = getattr(model, "n_action_features_", None)  # None: the policy ignores variant features
        k = k if isinstance(k, int) else len(first.titles[0].features[0])
        for i in members:
            req = reqs[i]
            if len(req.context) != dims:
                raise InvalidRequest(f"{where(i)}context has {len(req.context)} numbers; {label} takes {dims}",
                                     f"{where(i)}context")
            for j, title in enumerate(req.titles):
                if isinstance(width, int) and len(title.variant_ids) > width:
                    raise InvalidRequest(f"{where(i)}titles.{j}.variants has {len(title.variant_ids)} variants; "
                                         f"{label} knows {width}", f"{where(i)}titles.{j}.variants")
                if len(title.features[0]) != k:
                    raise InvalidRequest(f"{where(i)}titles.{j}.variants.0.features has {len(title.features[0])} "
                                         f"numbers; {label} takes {k}", f"{where(i)}titles.{j}.variants.0.features")

    async def _choose(self, reqs: list[ArtworkRequest], batch: bool) -> list[tuple[dict[str, Any], Loaded]]:
        """Choose artwork for requests; those answered by one policy share one ``choose`` call."""
        endpoint = self._endpoint("artwork")
        routed = [self._model(endpoint, req.user_id) for req in reqs]
        groups: dict[int, list[int]] = {}
        for i, (loaded, _) in enumerate(routed):
            groups.setdefault(id(loaded), []).append(i)
        answers: list[tuple[dict[str, Any], Loaded] | None] = [None] * len(reqs)
        logged: list[tuple[dict[str, Any], list[tuple[str, tuple[str | int, ...], Any, float]]]] = []
        now = time.time()
        for members in groups.values():
            loaded = routed[members[0]][0]
            self._check_sizes(reqs, members, loaded, batch)
            titles = [(i, title) for i in members for title in reqs[i].titles]
            known = getattr(loaded.model, "n_actions_", None)
            sizes = [len(t.variant_ids) for _, t in titles]
            width = known if isinstance(known, int) else max(sizes)
            k = titles[0][1].features.shape[1]
            n = len(titles)
            context = np.repeat(np.array([reqs[i].context for i in members], dtype=np.float64),
                                [len(reqs[i].titles) for i in members], axis=0)
            if min(sizes) == width:  # every title has every variant: the requests' rows as they are
                mask = np.ones((n, width), dtype=bool)
                features = (np.concatenate([reqs[i].features for i in members]) if len(members) > 1 else
                            reqs[members[0]].features).reshape(n, width, k) if k else None
            else:
                mask = np.zeros((n, width), dtype=bool)
                features = np.zeros((n, width, k)) if k else None
                for row, (_, title) in enumerate(titles):
                    mask[row, : sizes[row]] = True
                    if features is not None:
                        features[row, : sizes[row]] = title.features
            try:
                choice = loaded.model.choose(context, features, mask)
            except ParameterError as exc:  # what the policy refuses, named as the request's field
                prefix = f"requests.{members[0]}." if batch else ""
                inner = {"context": "context", "action_features": "titles.0.variants.0.features"}.get(
                    str(exc.fields.get("parameter")))
                raise InvalidRequest(f"the policy refused the request: {exc.message}",
                                     None if inner is None else prefix + inner) from None
            raw = np.asarray(choice.propensities, dtype=float)
            if not (np.isfinite(raw) & (raw > 0)).all():
                prefix = f"requests.{members[0]}." if batch else ""
                raise InvalidRequest("the policy cannot score these numbers (its scores overflowed); scale the "
                                     "context and the variant features", f"{prefix}context")
            actions = np.asarray(choice.actions).tolist()
            propensities = raw.tolist()
            ids = _decision_ids(n)
            slot = self.slots[(loaded.name, loaded.alias)]
            row = 0
            for i in members:
                req, arm = reqs[i], routed[i][1]
                choices, varying = [], []
                for title in req.titles:
                    decision_id, action, propensity = ids[row], actions[row], propensities[row]
                    variant = title.variant_ids[action]
                    choices.append({"title_id": title.title_id, "variant_id": variant, "propensity": propensity,
                                    "decision_id": decision_id})
                    varying.append((decision_id, title.variant_ids, variant, propensity))
                    if self.learner is not None:
                        self.learner.remember(decision_id, Round(
                            slot, loaded.model, context[row], None if features is None else features[row],
                            mask[row], int(action), float(propensity)))
                    row += 1
                logged.append(({"ts": now, "unit_id": req.user_id, "context": req.context, "endpoint": "artwork",
                                "model": loaded.name, "model_version": loaded.version, "arm": arm}, varying))
                answers[i] = ({"user_id": req.user_id, "choices": choices, "model": loaded.name,
                               "version": loaded.version, "arm": arm}, loaded)
                self.metrics.decisions.labels(loaded.name, str(loaded.version), arm).inc(len(choices))
        rows = [r for shared, varying in logged for r in decision_rows(shared, varying)]
        await self._log_rows(rows)
        self._remember_all(r[0] for r in rows)
        return [a for a in answers if a is not None]

    # -- feedback ----------------------------------------------------------------------
    async def feedback(self, request: Request) -> tuple[Any, Loaded | None]:
        req = FeedbackRequest.parse(parse_body(await request.body()))
        if req.decision_id not in self._decisions and not await self._logged(req.decision_id):
            raise NotFoundError(f"unknown decision id {req.decision_id!r}", field="decision_id")
        await self._log([], [{"decision_id": req.decision_id, "event": req.event, "reward": req.reward}])
        self.metrics.feedback.labels(req.event).inc()
        if self.learner is not None:
            self.learner.feedback(req.decision_id, req.reward)
        return {"decision_id": req.decision_id, "accepted": True}, None

    async def _logged(self, decision_id: str) -> bool:
        """Whether the event log holds the decision: one made before a restart, or by another worker.

        Another process commits its decisions within its flush interval, so a
        miss is checked once more after a short wait.
        """
        events = self.events
        if events is None:
            return False
        for wait in (0.0, 0.05):
            await asyncio.sleep(wait)
            if await asyncio.to_thread(events.has_decision, decision_id):
                return True
        return False

    async def _log(self, decisions: list[dict[str, Any]], feedback: list[dict[str, Any]]) -> None:
        events = self.events
        if events is None:
            raise ModelUnavailable("the event log is not open")
        if events.durability == "strict":
            await asyncio.to_thread(events.append_many, decisions, feedback)
        else:
            events.append_many(decisions, feedback)

    async def _log_rows(self, decisions: list[tuple[Any, ...]]) -> None:
        """Log decision rows already checked (see :func:`~matinee.core.events.decision_rows`)."""
        events = self.events
        if events is None:
            raise ModelUnavailable("the event log is not open")
        if events.durability == "strict":
            await asyncio.to_thread(events.append_rows, decisions)
        else:
            events.append_rows(decisions)

    def _remember(self, decision_id: str) -> None:
        self._decisions[decision_id] = None
        while len(self._decisions) > MAX_REMEMBERED:
            self._decisions.popitem(last=False)

    def _remember_all(self, decision_ids: Iterable[str]) -> None:
        self._decisions.update(dict.fromkeys(decision_ids))
        while len(self._decisions) > MAX_REMEMBERED:
            self._decisions.popitem(last=False)

    # -- plumbing ----------------------------------------------------------------------
    def instrument(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` with the in-flight limit, request counting and timing.

        Errors go on to the app's handler, which answers them as JSON.
        """
        limit = self.deployment.max_in_flight

        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            loaded: Loaded | None = None
            status = 500
            if self.in_flight >= limit:
                status = Overloaded.status
                self.metrics.requests.labels(name, "", "", str(status)).inc()
                raise Overloaded(f"more than {limit} requests in flight; retry in {Overloaded.retry_after} s")
            self.in_flight += 1
            try:
                body, loaded = await handler(request)
                status = 200
                return json_response(body)
            except MatineeError as exc:
                status = exc.status
                raise
            finally:
                self.in_flight -= 1
                model, version = (loaded.name, str(loaded.version)) if loaded else ("", "")
                self.metrics.requests.labels(name, model, version, str(status)).inc()
                self.metrics.latency.labels(name, model, version).observe(time.perf_counter() - start)

        return endpoint


def _decision_ids(n: int) -> list[str]:
    """``n`` decision ids: the time in milliseconds (12 hex digits), then a random ``uuid.uuid4().hex``.

    The random part is as unguessable as a uuid4; the time first makes the ids of one
    moment neighbours in the event log's index, so appending them stays cheap as the
    log grows (random keys scatter every insert over the whole index). The random
    parts come from one read of the system's random source.
    """
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.tobytes().hex()
    prefix = f"{time.time_ns() // 1_000_000:012x}"
    return [prefix + text[i : i + 32] for i in range(0, 32 * n, 32)]


#: Requests in one batch call at most.
MAX_BATCH = 1_000


def _parse_batch(data: dict[str, Any], parse: Callable[[dict[str, Any]], Any]) -> list[Any]:
    """The ``requests`` of a batch body, each parsed; errors name ``requests.<i>.<field>``."""
    if set(data) - {"requests"}:
        extra = sorted(set(data) - {"requests"})[0]
        raise InvalidRequest(f"unknown field {extra}", extra)
    items = data.get("requests")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise InvalidRequest(f"requests must be a list of 1 to {MAX_BATCH} request objects", "requests")
    parsed = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest(f"requests.{i} must be an object", f"requests.{i}")
        try:
            parsed.append(parse(item))
        except InvalidRequest as exc:
            inner = exc.fields.get("field")
            field = f"requests.{i}" if inner is None else f"requests.{i}.{inner}"
            raise InvalidRequest(f"requests.{i}: {exc.message}", field, status=exc.status) from None
    return parsed


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MatineeError)
    body = exc.to_dict()
    body.setdefault("field", body.get("parameter"))
    response = json_response(body, status=exc.status)
    if isinstance(exc, Overloaded):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


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
    >>> sorted(route.path for route in app.routes)[:4]
    ['/artwork', '/artwork/batch', '/feedback', '/healthz']
    """
    server = Server(deployment)
    document = openapi_document(__version__)

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok", "pid": os.getpid()})  # the pid tells workers apart

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
        Route("/recommendations/batch", server.instrument("recommendations_batch", server.recommendations_batch),
              methods=["POST"]),
        Route("/artwork", server.instrument("artwork", server.artwork), methods=["POST"]),
        Route("/artwork/batch", server.instrument("artwork_batch", server.artwork_batch), methods=["POST"]),
        Route("/feedback", server.instrument("feedback", server.feedback), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={MatineeError: _error}, lifespan=server.lifespan)
    app.state.server = server
    return app
