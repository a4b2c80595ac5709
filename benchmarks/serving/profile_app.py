"""Per-request CPU of the apps themselves, without a server or sockets, and where it goes.

    python benchmarks/serving/profile_app.py [--requests N] [--profile recs|artwork] [--top 25]

Builds the models (models.py) in a temporary MATINEE_HOME, then calls each ASGI
app directly (scope, receive, send) N times in one event loop, single-threaded:
matinee's ``build_app`` on ``/recommendations`` and ``/artwork``, and the bare
app on ``/recommendations``. Prints the CPU time per request of each (so the
difference is the app's own overhead, free of HTTP parsing and of the machine's
noise), then a cProfile of the chosen matinee endpoint, by own time.
"""

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scope(path):
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}


async def call(app, path, body):
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope(path), receive, send)
    status = sent[0]["status"]
    if status != 200:
        raise RuntimeError(f"{path} answered {status}: {sent[1]['body'][:300]!r}")


async def per_request(app, path, bodies, n):
    encoded = [b.encode() for b in bodies]
    for body in encoded[:50]:
        await call(app, path, body)
    started = time.process_time()
    for i in range(n):
        await call(app, path, encoded[i % len(encoded)])
    return (time.process_time() - started) / n * 1000


async def profiled(app, path, bodies, n):
    encoded = [b.encode() for b in bodies]
    profile = cProfile.Profile()
    profile.enable()
    for i in range(n):
        await call(app, path, encoded[i % len(encoded)])
    profile.disable()
    return profile


async def main_async(args, workdir):
    from matinee.core.serving import Deployment, Endpoint, build_app

    os.environ["BENCH_FACTORS"] = str(workdir / "factors.npz")
    sys.path.insert(0, str(HERE))
    import bare_app

    bodies = json.loads((workdir / "bodies.json").read_text())
    deployment = Deployment(recs=Endpoint("ranker@champion"), artwork=Endpoint("artwork@champion"),
                            event_log=str(workdir / "events.db"))
    app = build_app(deployment)
    bare = bare_app.app()
    async with app.router.lifespan_context(app):
        results = {
            "matinee /recommendations": await per_request(app, "/recommendations", bodies["recs"], args.requests),
            "bare /recommendations": await per_request(bare, "/recommendations", bodies["recs"], args.requests),
            "matinee /artwork": await per_request(app, "/artwork", bodies["artwork"], args.requests // 4),
        }
        for name, ms in results.items():
            print(f"{name:28s} {ms:.3f} ms CPU per request")
        path = "/recommendations" if args.profile == "recs" else "/artwork"
        profile = await profiled(app, path, bodies["recs" if args.profile == "recs" else "artwork"],
                                 args.requests if args.profile == "recs" else args.requests // 4)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.top)
    print(out.getvalue())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", choices=("recs", "artwork"), default="recs")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="serving-profile-") as tmp:
        workdir = Path(tmp)
        os.environ["MATINEE_HOME"] = str(workdir / "matinee_home")
        subprocess.run([sys.executable, HERE / "models.py", workdir], check=True, capture_output=True,
                       env={**os.environ, "BENCH_NO_MLFLOW": "1"})
        asyncio.run(main_async(args, workdir))


if __name__ == "__main__":
    main()
