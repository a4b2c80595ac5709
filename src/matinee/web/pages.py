"""The dashboard's HTML pages: runs, a run, compare, models, experiments, bandits, events, login.

Every page is a Jinja2 template with autoescaping on, so run names, tags,
parameters, artifact previews and event contexts always render as text. No
page carries inline script: chart data goes in ``<script type="application/json">``
blocks that ``/static/app.js`` reads and draws with plotly, whose JavaScript is
served from the plotly package itself (``/static/plotly.min.js``), so a page
needs nothing from the network.

Every handler is guarded by :func:`~matinee.web.auth.requires` (or marked
:func:`~matinee.web.auth.public`); forms that change state carry the CSRF value.
"""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from matinee.core.plain import finite
from matinee.core.store import Store
from matinee.errors import ConflictError, MatineeError, NotFoundError, ParameterError
from matinee.web.auth import HttpError, audit, csrf_ok, login, logout, public, requires

__all__ = ["render_error", "routes"]

HERE = Path(__file__).resolve().parent
TEMPLATES, STATIC = HERE / "templates", HERE / "static"
#: Runs per page by default, and at most.
PER_PAGE, MAX_PER_PAGE = 50, 200
#: How often pages showing live data (running runs and experiments, bandits, events) reload.
LIVE_SECONDS = 15
#: Metric columns on the runs page, tasks detailed and artifacts previewed on a run page.
METRIC_COLUMNS, MAX_TASKS, MAX_PREVIEWS, MAX_LOGS = 16, 200, 60, 40
#: Points of one metric series sent to a chart (longer series are thinned evenly).
MAX_POINTS = 2000
#: The largest id a database row can have (larger ones in a URL name nothing).
MAX_ID = 2**63 - 1
#: Seconds an experiment's analysis is reused.
ANALYSIS_TTL = 15.0
NAV = [("/runs", "Runs"), ("/models", "Models"), ("/experiments", "Experiments"), ("/bandits", "Bandits"),
       ("/events", "Events")]

_env: Any = None
_assets: dict[str, tuple[bytes, bytes | None, str]] = {}
_analyses: dict[str, tuple[float, Any]] = {}


# -- rendering -----------------------------------------------------------------------------
def _environment() -> Any:
    global _env
    if _env is None:
        from jinja2 import Environment, FileSystemLoader

        from matinee import __version__
        from matinee.web.graph import duration

        env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True,
                          lstrip_blocks=True)
        env.filters.update(when=_when, num=_num, size=_size, duration=lambda s: "" if s is None else duration(s))
        stamp = max(int(p.stat().st_mtime) for p in STATIC.iterdir())
        env.globals.update(nav=NAV, asset_version=f"{__version__}-{stamp}")
        _env = env
    return _env


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def _size(n: int | None) -> str:
    from matinee.cli.views import size

    return "" if n is None else size(int(n))


def render(request: Request, template: str, status: int = 200, refresh: int | None = None,
           **context: Any) -> HTMLResponse:
    """Render ``template`` with the principal, the CSRF value and a query-string builder.

    ``refresh`` (seconds) makes the page reload itself while it shows live data
    (app.js waits while the page is hidden or a field has focus); ``?refresh=0`` turns it off.
    """
    query = dict(request.query_params)
    if query.get("refresh") == "0":
        refresh = None

    def qs(**changes: Any) -> str:
        merged = {**query, **changes}
        return "?" + urlencode({k: v for k, v in merged.items() if v not in (None, "")})

    html = _environment().get_template(template).render(
        request=request, path=request.url.path, principal=getattr(request.state, "principal", None),
        csrf=getattr(request.state, "csrf", ""), qs=qs, refresh=refresh, **context,
    )
    return HTMLResponse(html, status_code=status)


def render_error(status: int, message: str, field: str | None = None) -> HTMLResponse:
    """The HTML page of an error (the app's error handler calls this for non-API paths)."""
    html = _environment().get_template("error.html").render(
        status=status, message=message, field=field, principal=None, csrf="", path="",
        qs=lambda **_: "",
    )
    return HTMLResponse(html, status_code=status)


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _is_admin(request: Request) -> bool:
    principal = getattr(request.state, "principal", None)
    return principal is not None and bool(principal.can("admin"))


async def _form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form post (what every dashboard form sends)."""
    from urllib.parse import parse_qsl

    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise HttpError(415, "send the form as application/x-www-form-urlencoded", field="content-type")
    try:
        body = await request.body()
    except RuntimeError:  # the stream was read as a form already (the CSRF check does): use that
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    if len(body) > 64 << 10:
        raise HttpError(413, "the form is too large", field="body")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _whole(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text in (None, ""):
        return default
    assert text is not None
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise ParameterError(f"{name} must be a whole number from {low} to {high}, not {text!r}", parameter=name)
    return int(text)


def _thin(points: list[tuple[Any, float]]) -> list[tuple[Any, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = len(points) / MAX_POINTS
    return [points[int(i * stride)] for i in range(MAX_POINTS - 1)] + [points[-1]]


def _series(store: Store, run_id: int) -> dict[str, dict[str, list[Any]]]:
    """Each metric of a run as ``{"x": steps (or point numbers), "y": values}``, thinned for charts."""
    grouped: dict[str, list[tuple[Any, float]]] = {}
    for row in store.metadata.metrics(run_id):
        points = grouped.setdefault(row["name"], [])
        points.append((row["step"] if row["step"] is not None else len(points), float(row["value"])))
    out = {}
    for name, points in grouped.items():
        points = _thin(sorted(points, key=lambda p: p[0]))
        out[name] = {"x": [p[0] for p in points], "y": [p[1] if math.isfinite(p[1]) else None for p in points]}
    return out


def _get_run(store: Store, text: str, field: str = "run_id") -> dict[str, Any]:
    if not text.isdigit():
        raise NotFoundError(f"no run {text!r}: a run id is a whole number", run_id=text, parameter=field)
    if int(text) > MAX_ID:  # beyond what the database holds: not there, whatever it is
        raise NotFoundError(f"no run {text} in this store", run_id=text, parameter=field)
    run = store.metadata.get_run(int(text))
    if run is None:
        raise NotFoundError(f"no run {text} in this store", run_id=int(text), parameter=field)
    return run


# -- runs ------------------------------------------------------------------------------------
@requires("reader")
async def index(request: Request) -> Response:
    return RedirectResponse("/runs", status_code=303)


@requires("reader")
async def runs_page(request: Request) -> Response:
    from matinee.core.events import parse_time

    q = request.query_params
    meta = _store(request).metadata
    filters = {k: (q.get(k) or "").strip() or None for k in ("flow", "status", "tag", "user")}
    sort, order = q.get("sort") or "id", q.get("order") or "desc"
    per = _whole(q.get("per"), "per", PER_PAGE, 1, MAX_PER_PAGE)
    page = _whole(q.get("page"), "page", 1, 1, 10**6)
    rows, total = meta.search_runs(**filters, since=parse_time(q.get("since") or None, "since"),
                                   until=parse_time(q.get("until") or None, "until"), sort=sort, order=order,
                                   limit=per, offset=(page - 1) * per)
    ids = [r["id"] for r in rows]
    latest = meta.latest_metrics(ids)
    columns = meta.metric_names(ids)
    sort_metric = sort[7:] if sort.startswith("metric:") else None
    if sort_metric:
        columns = [sort_metric] + [c for c in columns if c != sort_metric]
    live = any(r["status"] == "running" for r in rows)
    return render(request, "runs.html", refresh=LIVE_SECONDS if live else None, rows=rows, total=total,
                  page=page, per=per,
                  pages=max(1, math.ceil(total / per)), latest=latest, columns=columns[:METRIC_COLUMNS],
                  hidden_columns=max(0, len(columns) - METRIC_COLUMNS), all_metrics=meta.metric_names(),
                  flows=[r["flow_name"] for r in meta.list_flows()], filters=filters, sort=sort, order=order,
                  sort_metric=sort_metric, since=q.get("since") or "", until=q.get("until") or "",
                  statuses=("running", "completed", "failed"))


def _run_detail(store: Store, text: str) -> dict[str, Any]:
    from markupsafe import Markup

    from matinee.core.artifacts.store import ArtifactRef
    from matinee.web.graph import layout, to_svg
    from matinee.web.previews import log_head, preview

    meta = store.metadata
    run = _get_run(store, text)
    tasks = meta.list_tasks(run["id"])
    graph = layout(tasks)
    shown = tasks[:MAX_TASKS]
    artifacts: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    previews = 0
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for task in shown:
        for name, ref in meta.task_artifacts(task["id"]).items():
            if (name, ref.key) in seen:  # the same value passed on to a later task: listed once
                seen[(name, ref.key)]["also"] += 1
                continue
            item: dict[str, Any] = {"task": task, "name": name, "codec": ref.codec, "size": ref.size, "also": 0}
            seen[(name, ref.key)] = item
            if previews < MAX_PREVIEWS:
                item["preview"] = preview(store.artifacts.blobs, ArtifactRef(*ref))
                previews += 1
            artifacts.append(item)
        attempts = meta.task_attempts(task["id"])
        task["attempt_rows"] = attempts
        if attempts and len(logs) < MAX_LOGS:
            last = attempts[-1]
            out, err = log_head(store.artifacts.blobs, last["stdout_key"]), log_head(store.artifacts.blobs,
                                                                                   last["stderr_key"])
            if out or err or last["traceback"]:
                logs.append({"task": task, "attempt": last["attempt"], "stdout": out, "stderr": err,
                             "traceback": last["traceback"]})
    tags = meta.run_tags(run["id"])
    return {
        "run": run, "params": meta.run_params(run["id"]), "tags": [t["tag"] for t in tags if not t["system"]],
        "system_tags": [t["tag"] for t in tags if t["system"]], "tasks": shown, "more_tasks": len(tasks) - len(shown),
        "graph_svg": Markup(to_svg(graph)), "graph": graph, "artifacts": artifacts, "logs": logs,
        "series": {n: v for n, v in _series(store, run["id"]).items() if len(v["x"]) > 1}, "latest": meta.latest_metrics([run["id"]]).get(run["id"], {}),
        "unpreviewed": max(0, len(artifacts) - MAX_PREVIEWS),
    }


@requires("reader")
async def run_page(request: Request) -> Response:
    detail = await run_in_threadpool(_run_detail, _store(request), request.path_params["run_id"])
    return render(request, "run.html", **detail)


def parse_run_ids(text: str | None) -> list[int]:
    """The ``runs`` of ``/compare?runs=1,2,3``: 2 to 10 distinct run ids.

    Examples
    --------
    >>> parse_run_ids("3, 1,3")
    [3, 1]
    >>> parse_run_ids("1")
    Traceback (most recent call last):
    ...
    matinee.errors.ParameterError: runs must name 2 to 10 runs to compare, like ?runs=12,15; got 1
    """
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    bad = [p for p in parts if not p.isdigit()]
    if bad:
        raise ParameterError(f"runs must be run ids (whole numbers) separated by commas, like ?runs=12,15; "
                             f"{bad[0]!r} is not one", parameter="runs")
    ids = list(dict.fromkeys(int(p) for p in parts))
    if not 2 <= len(ids) <= 10:
        raise ParameterError(f"runs must name 2 to 10 runs to compare, like ?runs=12,15; got {len(ids)}",
                             parameter="runs")
    return ids


def _compare(store: Store, ids: list[int]) -> dict[str, Any]:
    meta = store.metadata
    runs = [_get_run(store, str(i), "runs") for i in ids]
    params = {r["id"]: meta.run_params(r["id"]) for r in runs}
    latest = meta.latest_metrics(ids)
    tags = meta.tags_of_runs(ids)
    names = sorted({n for p in params.values() for n in p})
    metrics = sorted({n for m in latest.values() for n in m})
    series: dict[str, dict[str, Any]] = {}
    for run in runs:
        for name, points in _series(store, run["id"]).items():
            series.setdefault(name, {})[f"{run['flow_name']}/{run['id']}"] = points
    series = {n: by_run for n, by_run in series.items() if any(len(v["x"]) > 1 for v in by_run.values())}
    differs = {n for n in names if len({json.dumps(params[r["id"]].get(n), sort_keys=True, default=str)
                                        for r in runs}) > 1}
    return {"runs": runs, "params": params, "param_names": names, "differs": differs, "latest": latest,
            "metric_names": metrics, "tags": {i: [t["tag"] for t in tags[i] if not t["system"]] for i in ids},
            "series": series}


@requires("reader")
async def compare_page(request: Request) -> Response:
    ids = parse_run_ids(",".join(request.query_params.getlist("runs")))
    data = await run_in_threadpool(_compare, _store(request), ids)
    return render(request, "compare.html", **data)


# -- models -------------------------------------------------------------------------------------
@requires("reader")
async def models_page(request: Request) -> Response:
    meta = _store(request).metadata
    models = [{**row, "aliases": meta.model_aliases(row["name"])} for row in meta.list_models()]
    return render(request, "models.html", models=models)


def _model(store: Store, name: str) -> dict[str, Any]:
    from matinee.core.registry import check_name

    meta = store.metadata
    check_name(name)
    rows = meta.model_versions(name)
    if not rows:
        raise NotFoundError(f"no model named {name!r} is registered", model=name, parameter="name")
    aliases = meta.model_aliases(name)
    by_version: dict[int, list[str]] = {}
    for alias in aliases:
        by_version.setdefault(int(alias["version"]), []).append(alias["alias"])
    runs = {rid: meta.get_run(rid) for rid in {r["run_id"] for r in rows if r["run_id"] is not None}}
    versions = []
    for row in reversed(rows):
        run = runs.get(row["run_id"])
        versions.append({**row, "aliases": by_version.get(int(row["version"]), []),
                         "metrics": json.loads(row["metrics"] or "{}"), "tags": json.loads(row["tags"] or "[]"),
                         "run": None if run is None else f"{run['flow_name']}/{run['id']}"})
    return {"name": name, "versions": versions, "aliases": aliases,
            "history": list(reversed(meta.alias_history(name)))}


@requires("reader")
async def model_page(request: Request) -> Response:
    data = await run_in_threadpool(_model, _store(request), request.path_params["name"])
    moved = request.query_params.get("moved")
    return render(request, "model.html", admin=_is_admin(request), moved=moved, **data)


async def _alias_action(request: Request, action: str) -> Response:
    from matinee.core.registry import check_alias, check_name, check_version

    name = check_name(request.path_params["name"])
    form = await _form(request)
    alias = check_alias(str(form.get("alias") or "champion").strip())
    user = request.state.principal.name
    meta = _store(request).metadata
    target = f"{name}@{alias}"
    try:
        if action == "promote":
            version = check_version(str(form.get("version") or "").strip())
            if version > MAX_ID:
                raise NotFoundError(f"model {name!r} has no version {version}", model=name, parameter="version")
            before = await run_in_threadpool(meta.move_alias, name, alias, version, "promote", user)
            detail = f"version {before} -> {version}" if before is not None else f"set to version {version}"
        else:
            before, version = await run_in_threadpool(meta.rollback_alias, name, alias, user)
            detail = f"version {before} -> {version}"
    except MatineeError as exc:
        await audit(request, f"alias.{action}", target, "failed", exc.status, exc.message)
        raise
    await audit(request, f"alias.{action}", target, "ok", 303, detail)
    return RedirectResponse(f"/models/{name}?{urlencode({'moved': f'{alias} {detail}'})}", status_code=303)


@requires("admin")
async def promote_action(request: Request) -> Response:
    return await _alias_action(request, "promote")


@requires("admin")
async def rollback_action(request: Request) -> Response:
    return await _alias_action(request, "rollback")


# -- experiments and bandits ----------------------------------------------------------------------
@requires("reader")
async def experiments_page(request: Request) -> Response:
    from matinee.core.experiments import list_experiments

    experiments = await run_in_threadpool(list_experiments)
    return render(request, "experiments.html", experiments=experiments)


def _analysis(name: str) -> tuple[Any, Any, str | None]:
    from matinee.core.experiments import analyze, get_experiment

    experiment = get_experiment(name)
    cached = _analyses.get(name)
    if cached is not None and time.monotonic() - cached[0] < ANALYSIS_TTL:
        return experiment, cached[1], None
    try:
        analysis = analyze(experiment)
    except (ConflictError, NotFoundError) as exc:  # not started, or no exposure yet: say so on the page
        return experiment, None, exc.message
    _analyses[name] = (time.monotonic(), analysis)
    return experiment, analysis, None


@requires("reader")
async def experiment_page(request: Request) -> Response:
    from matinee.web.eventdata import wilson

    experiment, analysis, empty = await run_in_threadpool(_analysis, request.path_params["name"])
    arms = []
    if analysis is not None:
        for row in analysis.arms:
            row = dict(row)
            impressions, plays = row.get("impressions"), row.get("plays")
            if impressions and plays is not None and 0 <= plays <= impressions:
                row["take_rate_low"], row["take_rate_high"] = wilson(float(plays), int(impressions))
            arms.append(row)
    metric_names = [] if analysis is None else [m for m in (experiment.primary_metric, *experiment.guardrails)]
    chart = None
    if analysis is not None:
        primary = experiment.primary_metric
        chart = {"metric": primary,
                 "arms": [{"arm": a["arm"], "value": a.get(primary), "low": a.get("take_rate_low") if primary ==
                           "take_rate" else None, "high": a.get("take_rate_high") if primary == "take_rate" else None}
                          for a in arms],
                 "effects": [{"label": f"{e['treatment']} vs {e['control']}: {e['metric']}", "diff": e["diff"],
                              "low": e["diff_low"], "high": e["diff_high"]} for e in analysis.effects]}
    return render(request, "experiment.html", refresh=LIVE_SECONDS if experiment.status == "running" else None,
                  experiment=experiment, analysis=analysis, empty=empty, arms=arms,
                  metric_names=metric_names, chart=finite(chart))


@requires("reader")
async def bandits_page(request: Request) -> Response:
    from matinee.core.events import parse_time
    from matinee.web.eventdata import bandit_summary, log_path

    since = parse_time(request.query_params.get("since") or None, "since")
    endpoint = (request.query_params.get("endpoint") or "").strip() or None
    store = _store(request)
    summary = await run_in_threadpool(bandit_summary, store, since, endpoint)
    return render(request, "bandits.html", refresh=LIVE_SECONDS, summary=summary, chart=finite(summary),
                  log=str(log_path(store.settings.home)), since=request.query_params.get("since") or "",
                  endpoint=endpoint or "")


@requires("reader")
async def events_page(request: Request) -> Response:
    from matinee.web.eventdata import EVENT_FILTERS, log_path, recent_events

    q = request.query_params
    kind = q.get("kind") or "decision"
    limit = _whole(q.get("limit"), "limit", 50, 1, 1000)
    filters = {k: q[k].strip() for k in EVENT_FILTERS if q.get(k, "").strip()}
    store = _store(request)
    rows = await run_in_threadpool(recent_events, log_path(store.settings.home), kind, filters, limit)
    return render(request, "events.html", refresh=LIVE_SECONDS, rows=rows, kind=kind, limit=limit, filters=filters,
                  filter_names=list(EVENT_FILTERS), log=str(log_path(store.settings.home)))


# -- login ------------------------------------------------------------------------------------------
def _next(target: Any) -> str:
    text = str(target or "")
    return text if text.startswith("/") and not text.startswith(("//", "/\\")) else "/runs"


@public
async def login_page(request: Request) -> Response:
    enabled = request.app.state.auth.enabled()
    return render(request, "login.html", next=_next(request.query_params.get("next")), enabled=enabled, error=None)


@public
async def login_action(request: Request) -> Response:
    form = await _form(request)
    target = _next(form.get("next"))
    enabled = request.app.state.auth.enabled()
    if not await csrf_ok(request):  # another site cannot log this browser in to an account of its choosing
        await audit(request, "POST /login", "/login", "denied", 403, "csrf")
        return render(request, "login.html", status=403, next=target, enabled=enabled,
                      error="The form is stale or came from another site: log in again from this page.")
    response = RedirectResponse(target, status_code=303)
    try:
        await login(request, str(form.get("token") or "").strip(), response)
    except HttpError as exc:
        request.state.principal = None
        return render(request, "login.html", status=401, next=target, enabled=True, error=exc.message)
    return response


@public
async def logout_action(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    logout(response)
    return response


# -- static files ---------------------------------------------------------------------------------------
def _asset(name: str) -> tuple[bytes, bytes | None, str]:
    if name not in _assets:
        if name == "plotly.min.js":
            import plotly

            path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        elif name in ("app.js", "style.css"):
            path = STATIC / name
        else:
            raise NotFoundError(f"no static file {name!r}", parameter="name")
        data = path.read_bytes()
        kind = "text/css; charset=utf-8" if name.endswith(".css") else "text/javascript; charset=utf-8"
        _assets[name] = (data, gzip.compress(data, 6), kind)
    return _assets[name]


@public
async def static_file(request: Request) -> Response:
    data, packed, kind = await run_in_threadpool(_asset, request.path_params["name"])
    headers = {"cache-control": "public, max-age=31536000, immutable", "vary": "accept-encoding"}
    if packed is not None and "gzip" in request.headers.get("accept-encoding", ""):
        headers["content-encoding"] = "gzip"
        return Response(packed, media_type=kind, headers=headers)
    return Response(data, media_type=kind, headers=headers)


def routes() -> list[BaseRoute]:
    """Every page route, the login pair and the static files."""
    get: list[tuple[str, Callable[..., Any]]] = [
        ("/", index), ("/runs", runs_page), ("/runs/{run_id}", run_page), ("/compare", compare_page),
        ("/models", models_page), ("/models/{name}", model_page), ("/experiments", experiments_page),
        ("/experiments/{name}", experiment_page), ("/bandits", bandits_page), ("/events", events_page),
        ("/login", login_page), ("/static/{name}", static_file),
    ]
    out: list[BaseRoute] = [Route(path, handler, methods=["GET", "HEAD"]) for path, handler in get]
    out += [Route("/login", login_action, methods=["POST"]), Route("/logout", logout_action, methods=["POST"]),
            Route("/models/{name}/promote", promote_action, methods=["POST"]),
            Route("/models/{name}/rollback", rollback_action, methods=["POST"])]
    return out
