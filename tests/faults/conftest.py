"""Fixtures of the fault suite (issue #20): a Redis of the test's own that it can stop and
start (a `redis-server` subprocess, so the outage is real: connection refused, and a restart
without persistence loses what was queued), the app pointed at it, real workers (`celery
worker` subprocesses that a test kills with SIGKILL, or one in a thread of this process), the
beat jobs run as beat runs them, and the bulk data the faults act on."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

BASE_DIR = Path(settings.BASE_DIR)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `condition` until it is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class OwnRedis:
    """A `redis-server` on a free port, no persistence: stop() is a real outage."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("the fault suite needs redis-server (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def accepting() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return True
            return False

        wait_for(accepting, 10, "redis-server to accept connections")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_broker() -> Iterator[OwnRedis]:
    """The app publishes to (and a thread worker consumes from) a Redis of this test's own;
    the configured broker and its connection pools come back afterwards."""
    from leadscoring.celery import app

    redis = OwnRedis()
    redis.start()
    names = ("broker_url", "broker_read_url", "broker_write_url")
    saved = [app.conf[name] for name in names], app._pool, app.amqp._producer_pool
    for name in names:
        app.conf[name] = redis.url
    app._pool = app.amqp._producer_pool = None
    try:
        yield redis
    finally:
        for name, value in zip(names, saved[0], strict=True):
            app.conf[name] = value
        app._pool, app.amqp._producer_pool = saved[1], saved[2]
        redis.stop()


@contextlib.contextmanager
def thread_worker() -> Iterator[object]:
    """A real Celery worker in a thread of this process, on the app's current broker (it
    sees this process's environment and settings: the fake vendors, short sweep periods)."""
    from celery.contrib.testing.worker import start_worker

    from leadscoring.celery import app

    app.loader.import_default_modules()
    app.finalize()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30) as worker:
        yield worker


def database_url() -> str:
    """The test database, as DATABASE_URL spells it, for worker subprocesses."""
    db = settings.DATABASES["default"]
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class WorkerProcesses:
    """`celery worker` subprocesses (solo pool: the main process runs the tasks, so killing
    it kills the work in flight) on the test database and a given broker."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.running: list[subprocess.Popen] = []

    def start(self, broker_url: str, **env: str) -> subprocess.Popen:
        environment = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker_url,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        log = (self.tmp_path / f"worker-{len(self.running)}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "leadscoring",
                "worker",
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
                "-n",
                f"fault{len(self.running)}@%h",
            ],
            cwd=BASE_DIR,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.running.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL: no warm shutdown, no ack, no cleanup (a crash, the OOM killer)."""
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.tmp_path.glob("worker-*.log"))

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    self.kill(process)


@pytest.fixture
def worker_processes(tmp_path) -> Iterator[WorkerProcesses]:
    workers = WorkerProcesses(tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()


def bulk_leads(count: int) -> list[int]:
    """`count` leads in one statement (the faults need volume, not factories); their ids."""
    from scoring.models import Lead

    Lead.objects.bulk_create(
        [
            Lead(email=f"fault{n}@example.com", employees=50 + (n % 7) * 100, title="Engineer")
            for n in range(count)
        ]
    )
    return list(Lead.objects.order_by("id").values_list("id", flat=True))


@pytest.fixture
def quick_sweeps(settings) -> None:
    """The sweeps' periods shortened from minutes to a second (the bound they promise is
    stated in minutes in docs/operations.md; here the test waits for seconds)."""
    settings.RESCORE_STALL_SECONDS = 1
    settings.JOB_RESEND_SECONDS = 1
