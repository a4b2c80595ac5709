"""The deploy-and-enhance half of ``matinee demo``: register the winners, serve them, send traffic, read it back.

After the training flows, :func:`register_winners` registers the best
recommender (``champion``) and the artwork policy picked by DR (``champion``)
with the runner-up (``challenger``), each from its run's artifact so the
lineage points at the run. :func:`run_loop` writes a deployment (a 50/50
artwork split, online learning, frequent snapshots) under
``MATINEE_HOME/demo/<stamp>/``, starts ``matinee serve`` on a free port of
127.0.0.1, waits for ``/readyz``, drives simulated members through real HTTP
(:func:`matinee.apps.sim.traffic.drive`), stops the server with SIGTERM (it
flushes the event log and snapshots what it learned), then reads the event log
and the registry back and writes an HTML report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from matinee.errors import MatineeError

#: Registered names of the demo's models.
RECS_MODEL = "demo-ranker"
ARTWORK_MODEL = "demo-artwork"
#: The artwork split between the aliases.
SPLIT = {"champion": 50, "challenger": 50}
#: Visits of simulated members (each asks for PAGE titles) in a full and a quick demo.
VISITS = {"full": 1_200, "quick": 400}
PAGE = 8
#: Server settings of the demo deployment.
SNAPSHOT_INTERVAL = {"full": 5.0, "quick": 3.0}
LEARN_BATCH = 64
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0

Echo = Callable[[str], None]


# -- registry ----------------------------------------------------------------------------
def register_winners(recs: dict[str, Any] | None, artwork: dict[str, Any] | None) -> dict[str, Any]:
    """Register and promote the training flows' winners; returns what was registered, by model.

    Parameters
    ----------
    recs
        The recommendations summary (``run``, ``best``, ``test_metrics``), or None.
    artwork
        The artwork summary (``run``, ``leaderboard``), or None.

    Returns
    -------
    dict
        ``{model name: {alias: {"version", "source", "policy"|"model"}}}``.
    """
    from matinee.core.registry import promote, register_model

    out: dict[str, Any] = {}
    if recs is not None:
        metrics = {k: v for k, v in recs["test_metrics"].items() if isinstance(v, (int, float))}
        version = register_model(RECS_MODEL, f"{recs['run']}:model", metrics=metrics, tags=["demo"],
                                 description=f"best recommender of {recs['run']} by validation NDCG@10")
        promote(RECS_MODEL, version.version, "champion")
        out[RECS_MODEL] = {"champion": {"version": version.version, "source": version.source,
                                        "model": recs["best"]["model"]}}
    if artwork is not None:
        board = artwork["leaderboard"]
        champion = _register_policy(artwork["run"], board[0], "champion",
                                    f"artwork policy of {artwork['run']} picked by DR", source=f"{artwork['run']}:policy")
        out[ARTWORK_MODEL] = {"champion": champion}
        if len(board) > 1:
            out[ARTWORK_MODEL]["challenger"] = _register_policy(
                artwork["run"], board[1], "challenger", f"runner-up by DR in {artwork['run']}")
    return out


def _register_policy(run: str, row: dict[str, Any], alias: str, description: str,
                     source: str | None = None) -> dict[str, Any]:
    """Register the policy of ``row`` (the end task's ``source``, else its fit task's) and point ``alias`` at it."""
    from matinee.core.client import Run
    from matinee.core.registry import promote, register_model

    if source is None:
        task = next((t for t in Run(run)["fit"] if t.data.name == row["policy"]), None)
        if task is None:
            raise MatineeError(f"{run} has no fit task for policy {row['policy']!r}", run=run)
        source = f"{task.pathspec}:policy"
    metrics = {"dr": row["dr"], "dr_low": row["dr_low"], "dr_high": row["dr_high"]}
    if row.get("truth") is not None:
        metrics["true_value"] = row["truth"]
    version = register_model(ARTWORK_MODEL, source, metrics=metrics, tags=["demo"],
                             description=description)
    promote(ARTWORK_MODEL, version.version, alias)
    return {"version": version.version, "source": version.source, "policy": row["policy"],
            "params": row["params"], "dr": row["dr"], "dr_low": row["dr_low"], "dr_high": row["dr_high"],
            "true_value": row.get("truth")}


def created_versions(since: float) -> list[dict[str, Any]]:
    """Versions of the demo's models registered at or after ``since``, oldest first."""
    from matinee.core.registry import versions
    from matinee.errors import NotFoundError

    rows = []
    for name in (RECS_MODEL, ARTWORK_MODEL):
        with contextlib.suppress(NotFoundError):
            for v in versions(name):
                if v.created_at >= since:
                    rows.append({"model": v.name, "version": v.version, "aliases": list(v.aliases),
                                 "tags": list(v.tags), "source": v.source, "created_at": v.created_at,
                                 "online_rounds": v.metrics.get("online_rounds")})
    return sorted(rows, key=lambda r: (r["created_at"], r["model"], r["version"]))


# -- the server ----------------------------------------------------------------------------
def write_deployment(folder: Path, mode: str, salt: str) -> Path:
    """The demo's deployment TOML: recs champion, artwork champion/challenger 50/50, learning online."""
    split = ", ".join(f"{alias} = {share}" for alias, share in SPLIT.items())
    text = (
        "# Written by matinee demo: serve it again with `matinee serve <this file>`.\n"
        "poll_interval = 1.0\n"
        "learn = true\n"
        f"learn_batch = {LEARN_BATCH}\n"
        f"snapshot_interval = {SNAPSHOT_INTERVAL[mode]}\n"
        "\n[recs]\n"
        f"model = \"{RECS_MODEL}@champion\"\n"
        "\n[artwork]\n"
        f"model = \"{ARTWORK_MODEL}@champion\"\n"
        f"salt = \"{salt}\"\n"
        f"split = {{ {split} }}\n"
    )
    path = folder / "deployment.toml"
    path.write_text(text, encoding="utf-8")
    return path


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A ``matinee serve`` child process and where it listens."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    cold_start: float = 0.0
    exit_code: int | None = None
    stop_seconds: float = 0.0

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def serving(deployment: Path, home: Path, echo: Echo) -> Iterator[ServerProcess]:
    """Start ``matinee serve DEPLOYMENT`` on a free port, wait until ready; SIGTERM it on the way out.

    Raises
    ------
    MatineeError
        The server exited or did not become ready in time (the message quotes its log).
    """
    import httpx

    port = free_port()
    log = deployment.with_name("server.log")
    command = [sys.executable, "-m", "matinee.cli.main", "serve", str(deployment), "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
    env = {**os.environ, "MATINEE_HOME": str(home)}
    started = time.perf_counter()
    with log.open("wb") as out:
        # its own session: a Ctrl-C at the terminal reaches the demo, which stops the server cleanly
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        with httpx.Client(base_url=server.url, timeout=2.0) as client:
            models: dict[str, Any] = {}
            while True:
                if process.poll() is not None:
                    raise MatineeError(f"the server exited with code {process.returncode} before it was ready; "
                                       f"its log ({log}) ends:\n{server.log_tail()}", path=str(log))
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    answer = client.get("/readyz")
                    if answer.status_code == 200:
                        break
                    models = answer.json().get("models") or {}
                if time.perf_counter() - started > READY_TIMEOUT:
                    errors = "; ".join(f"{m}: {info.get('error')}" for m, info in models.items()
                                       if isinstance(info, dict) and info.get("error"))
                    raise MatineeError(f"the server was not ready after {READY_TIMEOUT:.0f}s"
                                       + (f" ({errors})" if errors else "")
                                       + f"; its log ({log}) ends:\n{server.log_tail()}", path=str(log))
                time.sleep(0.05)
        server.cold_start = time.perf_counter() - started
        echo(f"  server ready at {server.url} (pid {process.pid}) after a {server.cold_start:.1f}s cold start")
        yield server
    finally:
        stop(server)


def stop(server: ServerProcess) -> None:
    """SIGTERM the server and wait for it to flush and exit (killed if it does not, after STOP_TIMEOUT)."""
    process = server.process
    started = time.perf_counter()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    server.stop_seconds = time.perf_counter() - started
    server.exit_code = process.returncode


# -- the loop --------------------------------------------------------------------------------
def run_loop(*, artwork: dict[str, Any], registered: dict[str, Any], sim_size: str, seed: int, mode: str,
             home: Path, echo: Echo, show_progress: bool, since: float | None = None) -> dict[str, Any]:
    """Serve the registered models, drive simulated traffic, stop, and read back the log and the registry.

    Parameters
    ----------
    artwork
        The artwork training summary (``run``, ``data``, ``shape``).
    registered
        What :func:`register_winners` returned.
    sim_size, seed
        The simulated service the recommender trained on; its members visit and
        its titles' artwork is shown (the flows' seed: at the default size the
        artwork policies trained on this very service's artwork).
    mode
        ``"full"`` or ``"quick"``: how much traffic.
    home
        MATINEE_HOME; the deployment, the server's log and the report go under ``home/demo/<stamp>``.
    echo
        Where progress lines go.
    show_progress
        Show a progress bar while the traffic runs (on a terminal).
    since
        When the demo started: registry versions created since are listed
        (default: when serving began).

    Returns
    -------
    dict
        The online part of the demo's summary (JSON-ready).
    """
    from matinee.apps.sim.traffic import drive

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    (home / "demo").mkdir(parents=True, exist_ok=True)
    for copy in range(1, 1000):  # two demos started in the same second get folders of their own
        folder = home / "demo" / (stamp if copy == 1 else f"{stamp}-{copy}")
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            break
    stamp = folder.name
    deployment = write_deployment(folder, mode, salt=f"demo-{stamp}")
    env = traffic_environment(sim_size, seed, tuple(artwork["shape"]))
    visits = VISITS[mode]
    began = time.time()
    echo(f"  deployment {deployment}: {RECS_MODEL}@champion at /recommendations, "
         f"{ARTWORK_MODEL} champion/challenger 50/50 at /artwork, learning online")
    experiment = start_demo_experiment(f"demo-{stamp}", echo)
    with serving(deployment, home, echo) as server:
        echo(f"  {visits:,} simulated member visits: /recommendations for {PAGE} titles, /artwork for each, "
             "then /feedback with what the member did")
        with _bar(show_progress, "members visiting", visits) as advance:
            traffic = drive(server.url, env, visits=visits, page_size=PAGE, on_step=advance)
        echo(f"  {traffic.decisions:,} artwork decisions and their feedback in {traffic.seconds:.1f}s "
             f"({sum(traffic.requests.values()):,} HTTP requests, "
             f"{'batch endpoints' if traffic.batch else 'single requests'}); stopping the server (SIGTERM)")
    if server.exit_code != 0:
        echo(f"  warning: the server exited with code {server.exit_code}; its log ({server.log}) ends:\n"
             f"{server.log_tail()}")
    online = _read_back(artwork=artwork, registered=registered, traffic=traffic, visits=visits, server=server,
                        began=began, since=began if since is None else since, folder=folder,
                        deployment=deployment, stamp=stamp)
    online["experiment"] = finish_demo_experiment(experiment, folder)
    return online


def start_demo_experiment(name: str, echo: Echo) -> str:
    """Create and start the champion/challenger experiment the demo's artwork split runs.

    Its arms, weights and salt are the deployment's (the demo writes the split
    with the same salt), so the analysis can check every member's arm against
    serving's hash. A demo experiment an interrupted demo left running is
    stopped first: two experiments cannot run on one model and endpoint.
    """
    from matinee.core.experiments import (
        Experiment,
        create_experiment,
        list_experiments,
        start_experiment,
        stop_experiment,
    )

    for old in list_experiments(status="running"):
        if old.model == ARTWORK_MODEL and old.name.startswith("demo-"):
            stop_experiment(old.name)
    weights = {f"{ARTWORK_MODEL}@{alias}": share / 100 for alias, share in SPLIT.items()}
    create_experiment(Experiment.build(
        name, weights, endpoint="artwork", salt=name,
        description="matinee demo: the artwork champion against the challenger, 50/50 by member"))
    start_experiment(name)
    echo(f"  experiment {name} started: {ARTWORK_MODEL} champion vs challenger on take rate")
    return name


def finish_demo_experiment(name: str, folder: Path) -> dict[str, Any]:
    """Stop the demo's experiment, analyse it from the event log and write its report."""
    from matinee.core.experiments import analyze, stop_experiment
    from matinee.core.experiments import write_report as write_experiment_report

    stop_experiment(name)
    analysis = analyze(name)
    report = write_experiment_report(analysis, folder / "experiment.html")
    return {**analysis.as_dict(), "report": str(report)}


def traffic_environment(sim_size: str, seed: int, shape: tuple[int, ...]) -> Any:
    """The artwork environment over the simulated service ``sim_size``, shaped as the policies were trained.

    Raises
    ------
    MatineeError
        The service's members or artwork have other feature counts than the trained policies.
    """
    from matinee.apps.sim import StreamingService

    context, variants, features = (int(x) for x in shape)
    service = StreamingService(sim_size, seed=seed)
    env = service.artwork_environment(n_variants=variants)
    if (env.n_context_features, env.n_variant_features) != (context, features):
        raise MatineeError(f"the policies were trained on {context} member and {features} variant features; the "
                           f"{sim_size} service has {env.n_context_features} and {env.n_variant_features}",
                           sim_size=sim_size)
    return env


@contextlib.contextmanager
def _bar(show: bool, description: str, total: int) -> Iterator[Callable[[int, int], None]]:
    if not show:
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("  {task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done, total: bar.update(task, completed=done)


def _read_back(*, artwork: dict[str, Any], registered: dict[str, Any], traffic: Any, visits: int,
               server: ServerProcess, began: float, since: float, folder: Path, deployment: Path,
               stamp: str) -> dict[str, Any]:
    from matinee.core.events import EventLog

    log = EventLog()
    try:
        joined = log.joined(since=began)
    finally:
        log.close()
    joined = joined[joined["model"] == ARTWORK_MODEL]
    arms = traffic.by_arm()
    policies = registered.get(ARTWORK_MODEL, {})
    logged_mean = float(artwork["data"]["mean_reward"])
    rows = []
    order = {alias: i for i, alias in enumerate(SPLIT)}
    for row in sorted(arms.to_dict("records"), key=lambda r: (order.get(r["arm"], len(order)), r["arm"])):
        offline = policies.get(row["arm"], {})
        logged = joined[joined["arm"] == row["arm"]]
        rows.append({
            "arm": row["arm"], "policy": offline.get("policy"), "registered_version": offline.get("version"),
            "served_versions": row["versions"], "decisions": row["decisions"], "plays": row["plays"],
            "take_rate": row["take_rate"], "low": row["low"], "high": row["high"],
            "expected": row["expected"], "uniform": row["uniform"], "oracle": row["oracle"],
            "share_of_oracle": row["share_of_oracle"],
            "estimate": offline.get("dr"), "estimate_low": offline.get("dr_low"),
            "estimate_high": offline.get("dr_high"), "offline_true_value": offline.get("true_value"),
            "estimate_lift": None if offline.get("dr") is None else offline["dr"] / logged_mean,
            "observed_lift": row["take_rate"] / row["uniform"] if row["uniform"] > 0 else None,
            "logged_decisions": len(logged), "logged_plays": int(logged["reward"].sum()),
        })
    versions = created_versions(since)
    # a version counts as this demo's snapshot when it is tagged so and was made after serving began
    snapshots = [v for v in versions if "online-snapshot" in v["tags"]]
    return {
        "folder": str(folder),
        "deployment": str(deployment),
        "server": {"url": server.url, "cold_start_seconds": server.cold_start, "exit_code": server.exit_code,
                   "stop_seconds": server.stop_seconds, "log": str(server.log)},
        "traffic": {"visits": visits, "page_size": PAGE,
                    "decisions": traffic.decisions, "feedback": traffic.decisions, "seconds": traffic.seconds,
                    "requests": traffic.requests, "batch_endpoints": traffic.batch,
                    "decisions_per_second": traffic.decisions / traffic.seconds if traffic.seconds else None},
        "arms": rows,
        "logged_mean_reward": logged_mean,
        "event_log": {"path": str(EventLog().path), "since": began, "decisions": len(joined),
                      "feedback": int(joined["n_feedback"].sum()), "plays": int(joined["reward"].sum())},
        "versions": versions,
        "snapshots": snapshots,
        "_timeline": joined[["arm", "ts", "reward", "model_version"]].reset_index(drop=True),
        "stamp": stamp,
    }


# -- the report --------------------------------------------------------------------------------
def write_report(online: dict[str, Any], recs: dict[str, Any], artwork: dict[str, Any]) -> Path | None:
    """The demo's HTML report next to the deployment; None when the event log holds no demo decisions."""
    import pandas as pd

    from matinee.apps.artwork.live_report import write_live_report

    timeline = online["_timeline"]
    if timeline.empty:
        return None
    arms = pd.DataFrame(online["arms"])
    keep = ["arm", "policy", "served_versions", "decisions", "plays", "take_rate", "low", "high", "expected",
            "uniform", "oracle", "estimate", "estimate_low", "estimate_high", "estimate_lift", "observed_lift"]
    arms = arms[keep]
    traffic = online["traffic"]
    notes = [
        f"Recommender: {recs['best']['model']} (test NDCG@10 {recs['test_metrics']['ndcg@10']:.4f}) from "
        f"{recs['run']}, served as {RECS_MODEL}@champion.",
        f"Artwork: policies from {artwork['run']}, champion/challenger split 50/50 by member, learning online "
        f"from feedback and snapshotting to the registry.",
        f"Traffic: {traffic['decisions']:,} artwork decisions (with their feedback) from simulated members over "
        f"{traffic['seconds']:.1f}s; the simulator's ground truth decided the plays.",
        f"Offline estimates are on the logs' traffic (mean reward under uniform logging "
        f"{online['logged_mean_reward']:.4f}); the online traffic shows recommended titles, so compare lifts "
        f"over a uniform choice as well as raw take rates.",
    ]
    versions = pd.DataFrame([{k: v for k, v in row.items() if k != "created_at"} for row in online["versions"]])
    path = Path(online["folder"]) / "report.html"
    return write_live_report(path, timeline, arms, title=f"matinee demo {online['stamp']}: the whole loop",
                             notes=notes, tables=[("Registry versions created", versions)])


# -- printing ----------------------------------------------------------------------------------
def print_summary(online: dict[str, Any], recs: dict[str, Any], registered: dict[str, Any]) -> None:
    """The online part of the demo as tables and the next commands to try."""
    from matinee.cli.views import print_table

    server, traffic, events = online["server"], online["traffic"], online["event_log"]
    click.echo(f"\nServed at {server['url']}: cold start {server['cold_start_seconds']:.1f}s, "
               f"{traffic['decisions']:,} decisions in {traffic['seconds']:.1f}s "
               f"({traffic['decisions_per_second']:,.0f}/s with their feedback), stopped with SIGTERM in "
               f"{server['stop_seconds']:.1f}s (exit code {server['exit_code']})")

    def pct(value: Any) -> str:
        return "" if value is None else f"{value:.3f}"

    rows = [{"arm": r["arm"], "policy": r["policy"] or "", "decisions": f"{r['decisions']:,}",
             "take rate [95%]": f"{r['take_rate']:.3f} [{r['low']:.3f}, {r['high']:.3f}]",
             "truth": pct(r["expected"]),
             "of oracle": "" if r["share_of_oracle"] != r["share_of_oracle"] else f"{r['share_of_oracle']:.1%}"}
            for r in online["arms"]]
    print_table(rows, list(rows[0]), title="Online take rate per arm (truth: the simulator's expected take rate)")
    rows = [{"arm": r["arm"],
             "DR before serving": "" if r["estimate"] is None else
             f"{r['estimate']:.3f} [{r['estimate_low']:.3f}, {r['estimate_high']:.3f}]",
             "online": f"{r['take_rate']:.3f}",
             "DR lift": "" if r["estimate_lift"] is None else f"{r['estimate_lift']:.2f}x",
             "online lift": "" if r["observed_lift"] is None else f"{r['observed_lift']:.2f}x"}
            for r in online["arms"]]
    print_table(rows, list(rows[0]), title="Off-policy estimate vs online (lift: over a uniform choice)")
    click.echo(f"DR is measured on the logs' traffic (mean reward {online['logged_mean_reward']:.3f} under a "
               "uniform choice); online, members see their recommended titles, so compare the lifts.")
    click.echo(f"\nEvent log {events['path']}: {events['decisions']:,} decisions of this demo, "
               f"{events['feedback']:,} feedback events, {events['plays']:,} plays")
    # every registered version, but of the online snapshots only those an alias points at now
    shown = [v for v in online["versions"] if "online-snapshot" not in v["tags"] or v["aliases"]]
    rows = [{"model": v["model"], "version": v["version"], "aliases": ", ".join(v["aliases"]),
             "from": f"online snapshot, {v['online_rounds'] or 0:,.0f} rounds" if "online-snapshot" in v["tags"]
             else v["source"] or ""}
            for v in shown]
    if rows:
        print_table(rows, list(rows[0]), title="Registry versions created by this demo")
    hidden = len(online["versions"]) - len(shown)
    if hidden:
        click.echo(f"...and {hidden} earlier online snapshots (matinee models versions {ARTWORK_MODEL})")
    experiment = online.get("experiment")
    if experiment:
        print_experiment(experiment)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(events["since"]))
    click.echo(
        "\nNext:\n"
        f"  matinee experiments analyze {experiment['experiment']['name'] if experiment else ''}\n"
        "  matinee models ls\n"
        f"  matinee models history {ARTWORK_MODEL}\n"
        f"  matinee models show {RECS_MODEL}@champion\n"
        "  matinee events stats\n"
        f"  matinee events export --since {since} --to demo-events.parquet\n"
        f"  matinee serve {online['deployment']}"
    )


def print_experiment(experiment: dict[str, Any]) -> None:
    """The champion/challenger experiment's analysis: its checks first, then the effects."""
    from matinee.cli.views import print_table

    for line in experiment.get("warnings", []):
        click.secho(f"WARNING: {line}", fg="red" if "MISMATCH" in line else "yellow")
    def num(value: Any, spec: str = ".4f") -> str:
        return "" if value is None else format(value, spec)

    srm = experiment.get("srm")
    rows = [{"metric": f"{x['metric']}{'' if x['role'] == 'primary' else ' (guardrail)'}",
             x["control"]: num(x["mean_control"]), x["treatment"]: num(x["mean_treatment"]),
             "diff [95%]": f"{num(x['diff'], '+.4f')} [{num(x['diff_low'], '+.4f')}, {num(x['diff_high'], '+.4f')}]",
             "p": num(x["p_value"], ".3g"), "sig": "yes" if x["significant"] else "no"}
            for x in experiment["effects"]]
    name = experiment["experiment"]["name"]
    if rows:
        print_table(rows, list(rows[0]), title=f"Experiment {name}: challenger vs champion")
    if srm:
        click.echo(f"Sample ratio check: p = {srm['p_value']:.3g} ({'MISMATCH' if srm['flagged'] else 'ok'}); "
                   f"report {experiment['report']}")
