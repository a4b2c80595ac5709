"""Settings: env MATINEE_* > ./matinee.toml > ~/.config/matinee/config.toml > defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from matinee.config import SETTINGS, Settings, load_settings
from matinee.errors import ConfigError


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean environment: cwd is an empty project folder and HOME an empty user folder."""
    for name in list(os.environ):
        if name.startswith("MATINEE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    yield folder
    # the shared fixtures load settings while tearing down: leave no broken file behind
    (folder / "matinee.toml").unlink(missing_ok=True)
    (tmp_path / "user" / ".config" / "matinee" / "config.toml").unlink(missing_ok=True)


def write_project(project: Path, body: str) -> Path:
    path = project / "matinee.toml"
    path.write_text(body)
    return path


def write_user(body: str) -> Path:
    path = Path.home() / ".config" / "matinee" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def test_defaults(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "carol")
    s = load_settings()
    assert s.home == project / ".matinee"
    assert s.home.is_absolute()
    assert s.metadata_url == f"sqlite:///{project / '.matinee' / 'matinee.db'}"
    assert s.blob_url == str(project / ".matinee" / "blobs")
    assert (s.user, s.executor, s.namespace) == ("carol", "auto", None)
    assert s.max_workers == (os.cpu_count() or 1)


@pytest.mark.parametrize(
    "env, project_value, user_value, expected",
    [
        (None, None, None, None),
        (None, None, "from-user", "from-user"),
        (None, "from-project", "from-user", "from-project"),
        ("from-env", "from-project", "from-user", "from-env"),
        ("from-env", None, "from-user", "from-env"),
        ("from-env", "from-project", None, "from-env"),
        ("", "from-project", None, "from-project"),  # an empty variable counts as unset
    ],
)
def test_precedence(
    project: Path, monkeypatch: pytest.MonkeyPatch,
    env: str | None, project_value: str | None, user_value: str | None, expected: str | None,
) -> None:
    if env is not None:
        monkeypatch.setenv("MATINEE_NAMESPACE", env)
    if project_value is not None:
        write_project(project, f'[matinee]\nnamespace = "{project_value}"\n')
    if user_value is not None:
        write_user(f'[matinee]\nnamespace = "{user_value}"\n')
    assert load_settings().namespace == expected


def test_each_setting_is_read_from_each_source(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_user('[matinee]\nexecutor = "inline"\nmax_workers = 3\nuser = "u-file"\n')
    write_project(project, '[matinee]\nexecutor = "process"\nblob_url = "memory://b"\n')
    monkeypatch.setenv("MATINEE_MAX_WORKERS", "7")
    s = load_settings()
    assert (s.executor, s.max_workers, s.user, s.blob_url) == ("process", 7, "u-file", "memory://b")


def test_keyword_overrides_win_over_everything(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATINEE_EXECUTOR", "process")
    write_project(project, '[matinee]\nexecutor = "ray"\n')
    assert load_settings(executor="inline").executor == "inline"


def test_home_moves_the_derived_urls(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(project, '[matinee]\nhome = "~/store"\n')
    s = load_settings()
    assert s.home == Path.home() / "store"
    assert s.metadata_url == f"sqlite:///{Path.home() / 'store' / 'matinee.db'}"
    assert s.blob_url == str(Path.home() / "store" / "blobs")
    monkeypatch.setenv("MATINEE_METADATA_URL", "sqlite:////elsewhere/m.db")
    assert load_settings().metadata_url == "sqlite:////elsewhere/m.db"


def test_other_tables_in_the_project_file_are_ignored(project: Path) -> None:
    write_project(project, '[tool.other]\nexecutor = "nope"\n\n[matinee]\nnamespace = "team:a"\n')
    assert load_settings().namespace == "team:a"


@pytest.mark.parametrize("where", ["project", "user"])
def test_an_unknown_key_in_a_file_is_an_error(project: Path, where: str) -> None:
    body = '[matinee]\nexecutor = "inline"\nexcutor = "process"\n'
    path = write_project(project, body) if where == "project" else write_user(body)
    with pytest.raises(ConfigError, match="unknown setting 'excutor'") as info:
        load_settings()
    assert Path(info.value.path).resolve() == path.resolve()  # type: ignore[attr-defined]
    assert info.value.path in str(info.value)  # type: ignore[attr-defined]
    assert "known settings: home" in str(info.value)


def test_a_malformed_file_is_an_error_naming_it(project: Path) -> None:
    path = write_project(project, "[matinee\nexecutor = \n")
    with pytest.raises(ConfigError, match="cannot read settings file") as info:
        load_settings()
    assert Path(info.value.path).resolve() == path.resolve()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "source, setting, value, message",
    [
        ("env", "executor", "bogus", "executor must be auto, inline, process or ray, not 'bogus'"),
        ("env", "max_workers", "abc", "max_workers must be a whole number, not 'abc'"),
        ("env", "max_workers", "2.5", "max_workers must be a whole number, not '2.5'"),
        ("file", "executor", '"bogus"', "executor must be auto, inline, process or ray, not 'bogus'"),
        ("file", "executor", "1", "executor must be auto, inline, process or ray, not '1'"),
        ("file", "max_workers", '"abc"', "max_workers must be a whole number, not 'abc'"),
        ("file", "max_workers", "[2]", "max_workers must be a whole number, not [2]"),
    ],
)
def test_bad_values_are_errors_naming_the_setting(
    project: Path, monkeypatch: pytest.MonkeyPatch, source: str, setting: str, value: str, message: str
) -> None:
    with monkeypatch.context() as patch:  # undone before the shared fixtures load settings again
        if source == "env":
            patch.setenv(f"MATINEE_{setting.upper()}", value)
        else:
            write_project(project, f"[matinee]\n{setting} = {value}\n")
        with pytest.raises(ConfigError) as info:
            load_settings()
    assert message in str(info.value)
    assert f"MATINEE_{setting.upper()}" in str(info.value)
    assert info.value.setting == setting  # type: ignore[attr-defined]
    assert info.value.status == 400


def test_max_workers_is_at_least_one(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATINEE_MAX_WORKERS", "0")
    assert load_settings().max_workers == 1


def test_every_setting_has_a_help_text_and_a_field() -> None:
    fields = set(Settings.__dataclass_fields__)
    assert set(SETTINGS) == fields
    assert all(help_text.strip() for _default, help_text in SETTINGS.values())


def test_as_dict_gives_text_for_every_setting(project: Path) -> None:
    d = load_settings().as_dict()
    assert set(d) == set(SETTINGS)
    assert all(isinstance(v, str) for v in d.values())


def test_nothing_is_read_at_import_time(project: Path) -> None:
    write_project(project, "this is not toml [")
    code = "import matinee, matinee.config, matinee.core.store; print('imported')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"
    with pytest.raises(ConfigError):
        load_settings()
