"""Loading a flow class from a Python file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from matinee.core.flows.spec import FlowSpec
from matinee.errors import FlowError


def load_flow(path: str | Path, name: str | None = None) -> type[FlowSpec]:
    """Import ``path`` and return the FlowSpec subclass it defines (``name`` picks one of several)."""
    file = Path(path).resolve()
    if not file.is_file():
        raise FlowError(f"no flow file at {path}", path=str(path))
    module_name = file.stem
    if str(file.parent) not in sys.path:
        sys.path.insert(0, str(file.parent))
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise FlowError(f"cannot import {path}: not a Python file", path=str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise FlowError(f"importing {path} failed: {type(exc).__name__}: {exc}", path=str(path)) from exc
    flows = {
        obj.__name__: obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, FlowSpec) and obj is not FlowSpec and obj.__module__ == module_name
    }
    if name is not None:
        if name not in flows:
            raise FlowError(f"{path} defines no flow {name!r}; it defines: {', '.join(flows) or 'none'}")
        return flows[name]
    if len(flows) != 1:
        found = ", ".join(sorted(flows)) or "none"
        raise FlowError(f"{path} must define exactly one FlowSpec subclass; it defines: {found}", path=str(path))
    return next(iter(flows.values()))
