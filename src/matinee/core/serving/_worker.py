"""The app factory each worker process of ``serve(..., workers=N)`` imports.

The deployment travels from the parent in the ``MATINEE_DEPLOYMENT`` environment
variable as JSON (:meth:`Deployment.to_dict`).
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette

from matinee.core.serving.app import build_app
from matinee.core.serving.config import Deployment

#: The environment variable holding the deployment for worker processes.
ENV = "MATINEE_DEPLOYMENT"


def create_app() -> Starlette:
    """The app of the deployment in ``$MATINEE_DEPLOYMENT``."""
    return build_app(Deployment.from_dict(json.loads(os.environ[ENV])))
