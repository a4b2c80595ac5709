"""``uvicorn --factory matinee_app:app``: matinee's serving app for the deployment in ``BENCH_DEPLOYMENT``.

Used when ``matinee serve`` has no ``--workers`` option, so that the app can still
run in several uvicorn worker processes on one port.
"""

import os

from matinee.core.serving import build_app, load_deployment


def app():
    return build_app(load_deployment(os.environ["BENCH_DEPLOYMENT"]))
