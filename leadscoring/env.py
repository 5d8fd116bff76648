"""The one place that reads the environment.

Every setting comes through these small typed readers, so a missing or malformed value fails
at start-up with a message that names the variable, instead of surfacing later as a confusing
error deep inside a request.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        if required:
            raise ImproperlyConfigured(f"The environment variable {name} is required.")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no).")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_database(name: str, default: str) -> dict:
    """A Django DATABASES entry from a URL (postgres://…, sqlite:///…)."""
    raw = os.environ.get(name) or default
    try:
        config = environ.Env.db_url_config(raw)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None
    if config.get("ENGINE") not in environ.Env.DB_SCHEMES.values():
        raise ImproperlyConfigured(f"{name}={raw!r} names an unsupported database scheme.")
    return config


def env_cache(name: str, default: str) -> dict:
    """A Django CACHES entry from a URL (redis://…, dbcache://TABLE, locmemcache://…)."""
    raw = os.environ.get(name) or default
    try:
        config = environ.Env.cache_url_config(raw)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise ImproperlyConfigured(f"{name} is not a valid cache URL: {exc}") from None
    if config.get("BACKEND") not in environ.Env.CACHE_SCHEMES.values():
        raise ImproperlyConfigured(f"{name}={raw!r} names an unsupported cache scheme.")
    return config


def load_env_file(default: Path) -> Path | None:
    """Read a `.env` file into the environment (variables already set win). Its path is
    `LEADSCORING_ENV_FILE` when set (empty: read none), else `default`. Returns the path read."""
    configured = os.environ.get("LEADSCORING_ENV_FILE")
    path = Path(configured) if configured else default
    if configured == "" or not path.is_file():
        return None
    environ.Env.read_env(path, overwrite=False)
    return path


def ensure_local_env_file(path: Path) -> bool:
    """The local set-up's secrets, made once: write `path` with a generated SECRET_KEY and
    FIELD_ENCRYPTION_KEYS unless it exists (mode 0600; `.env` is git-ignored). Returns whether
    it wrote the file. Only the embedded default calls this: a deployment sets its variables
    itself and fails loudly when one is missing."""
    if path.exists():
        return False
    from cryptography.fernet import Fernet
    from django.core.management.utils import get_random_secret_key

    path.write_text(
        "# Written by `make run` on first start: this machine's local secrets. Never commit it.\n"
        f"SECRET_KEY='{get_random_secret_key()}'\n"
        f"FIELD_ENCRYPTION_KEYS={Fernet.generate_key().decode()}\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return True


def env_email(name: str) -> dict[str, object]:
    """Django's EMAIL_* settings from a URL (smtp://user:pass@host:25, smtp+tls://...,
    consolemail://), or {} when the variable is not set."""
    raw = os.environ.get(name)
    if not raw:
        return {}
    try:
        config = environ.Env.email_url_config(raw)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise ImproperlyConfigured(f"{name} is not a valid email URL: {exc}") from None
    return {key: value for key, value in config.items() if value not in (None, "")}
