"""matinee: develop, deploy and enhance personalization models.

The public API is re-exported here and imported lazily, so ``import matinee``
costs almost nothing; each name loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "ArtifactError": "matinee.errors",
    "ConfigError": "matinee.errors",
    "EventLog": "matinee.core.events",
    "Flow": "matinee.core.client",
    "FlowError": "matinee.errors",
    "FlowSpec": "matinee.core.flows.spec",
    "GraphError": "matinee.errors",
    "IncludeFile": "matinee.core.flows.spec",
    "JSONType": "matinee.core.flows.spec",
    "MatineeError": "matinee.errors",
    "MetricSeries": "matinee.core.client",
    "ModelVersion": "matinee.core.registry",
    "NotFoundError": "matinee.errors",
    "Parameter": "matinee.core.flows.spec",
    "ParameterError": "matinee.errors",
    "Run": "matinee.core.client",
    "Step": "matinee.core.client",
    "Task": "matinee.core.client",
    "catch": "matinee.core.flows.decorators",
    "current": "matinee.core.flows.current",
    "default_namespace": "matinee.core.client",
    "get_namespace": "matinee.core.client",
    "load_model": "matinee.core.registry",
    "load_settings": "matinee.config",
    "namespace": "matinee.core.client",
    "register_model": "matinee.core.registry",
    "resources": "matinee.core.flows.decorators",
    "retry": "matinee.core.flows.decorators",
    "start_run": "matinee.core.tracking.api",
    "step": "matinee.core.flows.decorators",
    "timeout": "matinee.core.flows.decorators",
}

__all__ = [
    "ArtifactError",
    "ConfigError",
    "EventLog",
    "Flow",
    "FlowError",
    "FlowSpec",
    "GraphError",
    "IncludeFile",
    "JSONType",
    "MatineeError",
    "MetricSeries",
    "ModelVersion",
    "NotFoundError",
    "Parameter",
    "ParameterError",
    "Run",
    "Step",
    "Task",
    "__version__",
    "catch",
    "current",
    "default_namespace",
    "get_namespace",
    "load_model",
    "load_settings",
    "namespace",
    "register_model",
    "resources",
    "retry",
    "start_run",
    "step",
    "timeout",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'matinee' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from matinee.config import load_settings
    from matinee.core.client import (
        Flow,
        MetricSeries,
        Run,
        Step,
        Task,
        default_namespace,
        get_namespace,
        namespace,
    )
    from matinee.core.events import EventLog
    from matinee.core.flows.current import current
    from matinee.core.flows.decorators import catch, resources, retry, step, timeout
    from matinee.core.flows.spec import FlowSpec, IncludeFile, JSONType, Parameter
    from matinee.core.registry import ModelVersion, load_model, register_model
    from matinee.core.tracking.api import start_run
    from matinee.errors import (
        ArtifactError,
        ConfigError,
        FlowError,
        GraphError,
        MatineeError,
        NotFoundError,
        ParameterError,
    )
