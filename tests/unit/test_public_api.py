"""The curated public surface: a sorted ``__all__``, every name real, and a cheap ``import matinee``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import matinee

HEAVY = ["numpy", "pandas", "sqlalchemy", "alembic", "click", "rich", "pyarrow"]
PUBLIC = [name for name in matinee.__all__ if not name.startswith("_")]


def test_all_is_sorted_and_unique() -> None:
    assert matinee.__all__ == sorted(matinee.__all__)
    assert len(set(matinee.__all__)) == len(matinee.__all__)


@pytest.mark.parametrize("name", matinee.__all__)
def test_every_name_in_all_resolves(name: str) -> None:
    assert getattr(matinee, name) is not None


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_defined_by_matinee(name: str) -> None:
    member = getattr(matinee, name)
    assert member.__module__.startswith("matinee"), f"{name} comes from {member.__module__}"


def test_the_version_is_a_string() -> None:
    assert isinstance(matinee.__version__, str)
    assert matinee.__version__.count(".") >= 1


def test_dir_lists_the_public_api() -> None:
    assert set(matinee.__all__) <= set(dir(matinee))


def test_an_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        matinee.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(matinee, "_private_helper")


def test_public_names_resolve_to_the_objects_their_modules_define() -> None:
    from matinee.core.flows.spec import FlowSpec
    from matinee.core.tracking.api import start_run

    assert matinee.FlowSpec is FlowSpec
    assert matinee.start_run is start_run


def _modules_after(code: str) -> dict[str, bool]:
    script = f"import json, sys\n{code}\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_heavy_module_check_can_see_an_import() -> None:
    assert _modules_after("import numpy")["numpy"] is True


def test_import_matinee_imports_nothing_heavy() -> None:
    assert _modules_after("import matinee") == dict.fromkeys(HEAVY, False)


@pytest.mark.parametrize("name", ["FlowSpec", "step", "Parameter", "current", "start_run", "load_settings", "Run"])
def test_using_the_flow_api_imports_nothing_heavy(name: str) -> None:
    assert _modules_after(f"import matinee\nmatinee.{name}") == dict.fromkeys(HEAVY, False)


def test_defining_a_flow_imports_nothing_heavy() -> None:
    code = (
        "from matinee import FlowSpec, Parameter, step\n"
        "class F(FlowSpec):\n"
        "    alpha = Parameter('alpha', default=0.5)\n"
        "    @step\n"
        "    def start(self):\n"
        "        self.next(self.end)\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n"
    )
    assert _modules_after(code) == dict.fromkeys(HEAVY, False)
