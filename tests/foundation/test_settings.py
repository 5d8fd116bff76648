"""Settings come from the environment and fail loudly, naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from leadscoring.env import (
    ensure_local_env_file,
    env_bool,
    env_database,
    env_int,
    load_env_file,
)

ROOT = Path(__file__).resolve().parents[2]


def run_django(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_malformed_boolean_names_its_variable(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "perhaps")
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG"):
        env_bool("SOME_FLAG", False)


def test_a_malformed_integer_names_its_variable(monkeypatch):
    monkeypatch.setenv("SOME_NUMBER", "ten")
    with pytest.raises(ImproperlyConfigured, match="SOME_NUMBER"):
        env_int("SOME_NUMBER", 1)


def test_a_bad_database_url_names_its_variable(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "nosuchdb://x")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        env_database("DATABASE_URL", "sqlite:///x")


def test_sqlite_is_the_default_database(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = env_database("DATABASE_URL", "sqlite:////tmp/x.sqlite3")
    assert config["ENGINE"] == "django.db.backends.sqlite3"


def test_start_up_fails_without_secret_key_when_debug_is_off_in_one_clear_line():
    result = run_django({"DEBUG": "false"}, "check")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Configuration error: The environment variable SECRET_KEY is required when DEBUG is off."
    ]


def test_the_local_env_file_is_written_once_and_read_back(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    assert ensure_local_env_file(path) is True
    written = path.read_text()
    assert ensure_local_env_file(path) is False and path.read_text() == written
    assert path.stat().st_mode & 0o777 == 0o600

    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("FIELD_ENCRYPTION_KEYS", raising=False)
    monkeypatch.setenv("LEADSCORING_ENV_FILE", str(path))
    assert load_env_file(tmp_path / "unused") == path

    from cryptography.fernet import Fernet

    assert f"SECRET_KEY='{os.environ['SECRET_KEY']}'" in written
    assert len(os.environ["SECRET_KEY"]) == 50
    Fernet(os.environ["FIELD_ENCRYPTION_KEYS"])  # a valid key


def test_variables_already_set_win_over_the_env_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("SECRET_KEY='from-file'\n")
    monkeypatch.setenv("SECRET_KEY", "from-environment")
    monkeypatch.setenv("LEADSCORING_ENV_FILE", str(path))
    load_env_file(tmp_path / "unused")
    assert os.environ["SECRET_KEY"] == "from-environment"


def test_manage_py_works_in_the_local_set_up_with_no_variables(tmp_path):
    # What a new user has after `make run`: a .env, and nothing exported.
    env_file = tmp_path / ".env"
    ensure_local_env_file(env_file)
    result = run_django(
        {"LEADSCORING_ENV_FILE": str(env_file), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"},
        "check",
    )
    assert result.returncode == 0, result.stderr


def test_deploy_check_is_clean_with_production_settings():
    env = {
        "DEBUG": "false",
        "SECRET_KEY": "x7Jq2vR9pL4mZ8nB3cT6wY1aK5dF0gH2jN7sQ4uV9eX3rM6bC8",
        "ALLOWED_HOSTS": "leads.example.com",
    }
    result = run_django(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
