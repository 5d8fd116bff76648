"""Shared fixtures: users per role, a real Celery worker, and the rules for tests that need
PostgreSQL or a broker server.

With DATABASE_URL pointing at PostgreSQL and CELERY_BROKER_URL at Redis the suite uses them.
Without them it runs on SQLite and the filesystem broker, and skips only the tests marked
`postgres`, saying why. When CI=true a missing service fails the run instead: Redis is required,
and a run on SQLite (CI's second pass, `make test-sqlite`: the embedded default that `make run`
users get) must deselect the `postgres` tests (`-m "not postgres"`) rather than skip them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from django.conf import settings

from leadscoring.db import is_postgres

# Django models are imported inside the fixtures, so the engine and connector tests (which need
# no Django) can run with `-p no:django`.

IN_CI = os.environ.get("CI", "").lower() == "true"

ROLE_USERS = {
    "ops": "marketing_ops",
    "sales1": "sales",
    "sales2": "sales",
    "manager": "manager",
    "admin": "admin",
}
TEST_PASSWORD = "a-test-password-123"


# After pytest's own `-m` / `-k` deselection (trylast), so only the selected tests count.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if is_postgres():
        return
    needing = [item for item in items if "postgres" in item.keywords]
    if IN_CI and needing:
        raise pytest.UsageError(
            f"CI=true on SQLite, but {len(needing)} selected tests need PostgreSQL (e.g."
            f" {needing[0].nodeid}): deselect them with -m 'not postgres' (make test-sqlite)"
            " or set DATABASE_URL=postgres://…"
        )
    reason = "needs PostgreSQL: set DATABASE_URL=postgres://… to run it"
    for item in needing:
        item.add_marker(pytest.mark.skip(reason=reason))


def pytest_sessionstart(session: pytest.Session) -> None:
    if IN_CI and not settings.CELERY_BROKER_URL.startswith("redis"):
        raise pytest.UsageError(
            f"CI=true needs Redis; got the broker {settings.CELERY_BROKER_URL}."
        )


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Every test hashes passwords cheaply: role_users and seed_demo hash five to seven, and
    the production hasher (PBKDF2, a million rounds) made that seconds per test. What is
    tested is who may log in, not the hasher's cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def role_users(db) -> dict:
    """The demo company's users, one per role (plus a second sales rep)."""
    from django.contrib.auth.models import Group, User

    # get_or_create: a transactional test before this one flushes the tables, taking the
    # groups that the roles migration created with them.
    users = {}
    for username, role in ROLE_USERS.items():
        user = User.objects.create_user(username, f"{username}@example.com", TEST_PASSWORD)
        if role == "admin":
            user.is_staff = True
            user.is_superuser = True
            user.save()
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        users[username] = user
    return users


@pytest.fixture
def client_as(role_users) -> callable:
    """client_as("sales1") -> a test Client logged in as that user."""

    from django.test import Client

    def make(username: str) -> Client:
        client = Client()
        client.force_login(role_users[username])
        return client

    return make


@pytest.fixture
def celery_worker(transactional_db) -> Iterator[object]:
    """A real Celery worker, in a thread of this process, consuming from the configured broker
    (Redis in CI, kombu's filesystem transport on a bare laptop) — never eager mode."""
    from celery.contrib.testing.worker import start_worker

    from leadscoring.celery import app

    # The filesystem transport's folders exist once the app is finalized; purge stale
    # messages so a previous run's tasks do not leak into this test.
    app.loader.import_default_modules()
    app.finalize()
    with contextlib.suppress(FileNotFoundError):  # nothing ever queued on the filesystem broker
        app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30) as worker:
        yield worker


class SentTasks(list):
    """The tasks `scoring.jobs.dispatch` sent, as `(name, args)`, in order. `on(name, fn)` runs
    that task in-process, as `fn(*args)`, when it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.handlers: dict[str, object] = {}

    def on(self, name: str, handler) -> SentTasks:
        self.handlers[name] = handler
        return self

    def named(self, name: str) -> list[list]:
        return [args for sent, args in self if sent == name]


@pytest.fixture
def sent_tasks(monkeypatch) -> SentTasks:
    """Capture what dispatch sends instead of publishing it to the broker (the app's one
    publishing call, so every job kind is seen the same way)."""
    from leadscoring.celery import app

    sent = SentTasks()

    def send_task(name, args=None, kwargs=None, **options):
        sent.append((name, list(args or [])))
        handler = sent.handlers.get(name)
        if handler is not None:
            handler(*(args or []))

    monkeypatch.setattr(app, "send_task", send_task)
    return sent


CLOSED_BROKER_URL = "redis://127.0.0.1:9/0"  # the discard port: nothing listens there


@pytest.fixture
def broker_down() -> Iterator[str]:
    """The app's broker points at a closed port for the test (a real connection refused, not
    a mock); the configured broker and its connection pools come back afterwards."""
    from leadscoring.celery import app

    # broker_write_url is what publishing reads (it was derived from broker_url at start-up);
    # the pools are kombu's, shared by URL, so they are swapped out, never closed.
    names = ("broker_url", "broker_write_url")
    saved = [app.conf[name] for name in names], app._pool, app.amqp._producer_pool
    for name in names:
        app.conf[name] = CLOSED_BROKER_URL
    app._pool = app.amqp._producer_pool = None
    try:
        yield CLOSED_BROKER_URL
    finally:
        for name, value in zip(names, saved[0], strict=True):
            app.conf[name] = value
        app._pool, app.amqp._producer_pool = saved[1], saved[2]
