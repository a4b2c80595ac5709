"""Docs are tested: every command and setting is documented, examples run, the README's commands are CI's."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

import matinee
from matinee.cli.main import cli
from matinee.config import SETTINGS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_is_documented(command):
    assert f"### `matinee {command}" in (REPO / "docs" / "cli.md").read_text()


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_every_setting_is_documented(setting):
    text = (REPO / "docs" / "settings.md").read_text()
    assert f"`{setting}`" in text and f"`MATINEE_{setting.upper()}`" in text


def test_readme_first_screen_has_the_two_commands():
    readme = (REPO / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert first_block and readme.index(first_block.group(0)) < 1200
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "matinee demo" in commands[0]
    test_command = commands[1].split("&&")[-1].strip()
    assert test_command.startswith("python -m pytest")
    assert test_command in (REPO / ".ci" / "run").read_text()


def test_quickstart_in_readme_matches_example():
    readme = (REPO / "README.md").read_text()
    example = (REPO / "examples" / "quickstart.py").read_text()
    block = re.search(r"```python\n# examples/quickstart.py\n(.*?)```", readme, re.S)
    assert block
    assert _code_lines(block.group(1)) == _code_lines(example)


def _code_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith('"""')]


@pytest.mark.parametrize("name", [n for n in matinee.__all__ if not n.startswith("__")])
def test_public_names_have_docstrings(name):
    obj = getattr(matinee, name)
    assert (getattr(obj, "__doc__", None) or "").strip(), f"matinee.{name} has no docstring"


@pytest.mark.parametrize(
    "module",
    ["matinee.core.tracking.api", "matinee.core.flows.decorators", "matinee.core.flows.current",
     "matinee.core.flows.spec", "matinee.core.events._log", "matinee.core.plain",
     "matinee.core.timespan"],
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_artwork_guide_example_runs():
    text = (REPO / "docs" / "artwork.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("rounds=30_000", "rounds=6_000").replace("last=10_000", "last=2_000")
    code = code.replace("rounds=20_000", "rounds=4_000").replace("n_bootstrap=200", "n_bootstrap=20")
    exec(compile(code, "docs/artwork.md", "exec"), {})
