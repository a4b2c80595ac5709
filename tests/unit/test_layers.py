"""The architecture's layering rules, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "matinee"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted((SRC / "core").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_core_never_imports_apps_cli_or_demo(path):
    bad = {m for m in imported_modules(path) if m.startswith(("matinee.apps", "matinee.cli", "matinee.demo"))}
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}: core must not depend on apps, cli or demo"


def test_the_rule_sees_imports():
    sample = SRC / "cli" / "demo.py"
    assert any(m.startswith("matinee.core") for m in imported_modules(sample))
