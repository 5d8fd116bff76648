"""The paths measured against running servers: event ingest through the REST API under
gunicorn (2 workers) with a load generator on loopback, and one event in -> that lead's new
score stored, with a real Celery worker running."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def _token(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", "create_api_token", "ops"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1].strip()


def start_web(env: dict[str, str], *, threads: int = 1) -> tuple[subprocess.Popen, str]:
    """gunicorn (two workers, each with `threads` threads) on a free loopback port, and its base
    URL; the caller waits for `/healthz` and terminates it."""
    port = _free_port()
    web = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "leadscoring.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    return web, f"http://127.0.0.1:{port}"


def measure(env: dict[str, str], database_url: str, *, batches: int, samples: int) -> dict:
    env = {**env, "INGEST_THROTTLE_RATE": "1000000/min", "ALLOWED_HOSTS": "127.0.0.1"}
    web, base = start_web(env)
    worker = None
    try:
        _wait_for(f"{base}/healthz")
        token = _token(env)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as conn:
            emails = [
                row[0]
                for row in conn.execute(
                    "SELECT email FROM scoring_lead WHERE email IS NOT NULL ORDER BY id LIMIT 20000"
                )
            ]
        run = uuid.uuid4().hex[:8]

        def post_batch(b: int) -> int:
            events = [
                {
                    "external_id": f"bench-{run}-{b}-{i}",
                    "source": "bench",
                    "event_type": "page_view",
                    "occurred_at": "2026-01-01T00:00:00Z",
                    "email": emails[(b * 1000 + i) % len(emails)],
                    "properties": {"path": "/"},
                }
                for i in range(1000)
            ]
            response = requests.post(
                f"{base}/api/v1/events/", data=json.dumps(events), headers=headers, timeout=120
            )
            response.raise_for_status()
            return response.json()["accepted"]

        post_batch(-1)  # warm both workers' connections
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            accepted = sum(pool.map(post_batch, range(batches)))
        ingest_seconds = time.perf_counter() - started
        if accepted != batches * 1000:
            raise RuntimeError(f"ingest accepted {accepted} of {batches * 1000}")

        worker = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "leadscoring",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
        )
        latencies = []
        with psycopg.connect(
            database_url.replace("postgres://", "postgresql://"), autocommit=True
        ) as conn:
            # The ingest above marked its leads for rescoring; the worker drains that backlog
            # first (timed on its own), so the single-event latency below is not a queue wait.
            backlog = conn.execute("SELECT COUNT(*) FROM scoring_pendingrescore").fetchone()[0]
            drain_started = time.perf_counter()
            while conn.execute("SELECT EXISTS (SELECT 1 FROM scoring_pendingrescore)").fetchone()[
                0
            ]:
                if time.perf_counter() - drain_started > 600:
                    raise RuntimeError("the ingest backlog was not rescored within 600 s")
                time.sleep(0.2)
            drain_seconds = time.perf_counter() - drain_started
            rows = conn.execute(
                "SELECT id, email FROM scoring_lead WHERE email IS NOT NULL "
                "ORDER BY id DESC LIMIT %s",
                [samples + 5],
            ).fetchall()
            for n, (lead_id, email) in enumerate(rows[: samples + 5]):
                before = conn.execute(
                    "SELECT scored_at FROM scoring_lead WHERE id = %s", [lead_id]
                ).fetchone()[0]
                event = {
                    "external_id": f"rt-{run}-{n}",
                    "source": "bench",
                    "event_type": "demo_request",
                    "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "email": email,
                }
                sent = time.perf_counter()
                requests.post(
                    f"{base}/api/v1/events/", data=json.dumps(event), headers=headers, timeout=30
                ).raise_for_status()
                while time.perf_counter() - sent < 30:
                    after = conn.execute(
                        "SELECT scored_at FROM scoring_lead WHERE id = %s", [lead_id]
                    ).fetchone()[0]
                    if after != before:
                        break
                    time.sleep(0.002)
                else:
                    raise RuntimeError(f"lead {lead_id} was not rescored within 30 s")
                if n >= 5:  # the first few warm the worker
                    latencies.append((time.perf_counter() - sent) * 1000)
        latencies.sort()
        return {
            "backlog_leads": backlog,
            "backlog_seconds": drain_seconds,
            "events_per_second": batches * 1000 / ingest_seconds,
            "realtime_p50_ms": statistics.median(latencies),
            "realtime_p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
        }
    finally:
        for process in (web, worker):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
