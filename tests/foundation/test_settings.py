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


def run_django(env: dict[str, str | None], *args: str) -> subprocess.CompletedProcess:
    """`manage.py *args` in a new process with this one's environment and `env` (a None value
    unsets that variable)."""
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={k: v for k, v in {**base, **env}.items() if v is not None},
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


# The local set-up with DEBUG off (`DEBUG=false make run`, which sets LOCAL_HTTP): plain HTTP
# on 127.0.0.1, Django's own test client inside a process started with those variables.
LOCAL_PROBE = """
import json
from django.conf import settings
from django.test import Client

client = Client(HTTP_HOST="127.0.0.1")
login = client.get("/accounts/login/")
missing = client.get("/no-such-page/")
static = client.get("/static/favicon.svg")
print(json.dumps({
    "debug": settings.DEBUG,
    "hosts": settings.ALLOWED_HOSTS,
    "login": login.status_code,
    "csrf_cookie_secure": login.cookies["csrftoken"]["secure"],
    "hsts": login.headers.get("Strict-Transport-Security"),
    "missing": missing.status_code,
    "missing_page": missing.content.decode(),
    "static": static.status_code,
    "localhost": Client(HTTP_HOST="localhost").get("/accounts/login/").status_code,
}))
"""


def local_env(tmp_path, **extra: str | None) -> dict[str, str | None]:
    return {
        "DEBUG": "false",
        "SECRET_KEY": "x7Jq2vR9pL4mZ8nB3cT6wY1aK5dF0gH2jN7sQ4uV9eX3rM6bC8",
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "VAR_DIR": str(tmp_path / "var"),
        **extra,
    }


def test_debug_off_on_loopback_serves_plain_http_static_files_and_the_apps_404(tmp_path):
    import json

    env = local_env(tmp_path, LOCAL_HTTP="true", ALLOWED_HOSTS=None)
    result = run_django(env, "shell", "-c", LOCAL_PROBE)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["debug"] is False
    assert {"127.0.0.1", "localhost"} <= set(probe["hosts"])
    # The login page is served, not redirected to HTTPS, and its cookie is not Secure-only
    # (a browser would not send it back over plain HTTP and the login would fail).
    assert (probe["login"], probe["localhost"]) == (200, 200)
    assert not probe["csrf_cookie_secure"] and probe["hsts"] is None
    assert probe["static"] == 200  # whitenoise, no collectstatic needed
    assert probe["missing"] == 404
    assert "There is nothing here" in probe["missing_page"]
    # The app's page (base.html; its navigation shows once signed in: tests/pages/test_finish.py)
    assert 'href="/static/favicon.svg"' in probe["missing_page"]
    assert "Technical details" not in probe["missing_page"]  # not Django's debug page


def test_debug_off_without_local_http_keeps_the_https_only_defaults(tmp_path):
    import json

    probe = (
        "import json; from django.conf import settings as s; print(json.dumps("
        "[s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SECURE_HSTS_SECONDS, s.ALLOWED_HOSTS]))"
    )
    result = run_django(local_env(tmp_path, ALLOWED_HOSTS=None), "shell", "-c", probe)
    assert result.returncode == 0, result.stderr
    redirect, session_secure, csrf_secure, hsts, hosts = json.loads(result.stdout.splitlines()[-1])
    assert (redirect, session_secure, csrf_secure, hsts) == (True, True, True, 31536000)
    assert "127.0.0.1" in hosts


def test_local_http_refuses_a_real_host_name_in_one_line(tmp_path):
    env = local_env(tmp_path, LOCAL_HTTP="true", ALLOWED_HOSTS="leads.example.com")
    result = run_django(env, "check")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "LOCAL_HTTP" in lines[0] and "leads.example.com" in lines[0]
