"""`make run`: the whole product on one machine with no services to install.

Migrates, loads the demo data when the database is empty, then runs the web server (gunicorn),
a Celery worker and Celery beat in the foreground. By default the database is a SQLite file and
the broker is kombu's filesystem transport; set DATABASE_URL / CELERY_BROKER_URL to use
PostgreSQL and Redis instead. `DEBUG=false make run` runs it as in production (the app's error
pages instead of Django's debug pages) while still on plain HTTP on 127.0.0.1 (`LOCAL_HTTP`).
Ctrl-C stops all three."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from leadscoring.env import ensure_local_env_file  # noqa: E402

BIN = Path(sys.executable).parent


def main() -> int:
    if ensure_local_env_file(ROOT / ".env"):
        print("Wrote .env with this machine's generated SECRET_KEY and encryption key.")
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")  # the embedded default is a local demo, not a deployment
    # Served over plain HTTP on 127.0.0.1 (below): with DEBUG=false too, no HTTPS redirect or
    # Secure-only cookies, which would make the local login impossible (docs/configuration.md).
    env.setdefault("LOCAL_HTTP", "true")
    env.setdefault("DJANGO_SETTINGS_MODULE", "leadscoring.settings")
    port = env.get("PORT", "8000")
    manage = [sys.executable, str(ROOT / "manage.py")]

    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True)
    leads = env.get("DEMO_LEADS", "5000")
    subprocess.run(
        [*manage, "seed_demo", "--if-empty", "--leads", leads], cwd=ROOT, env=env, check=True
    )

    commands = {
        "web": [
            str(BIN / "gunicorn"),
            "leadscoring.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--access-logfile",
            "-",
        ],
        "worker": [
            str(BIN / "celery"),
            "-A",
            "leadscoring",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
        ],
        "beat": [
            str(BIN / "celery"),
            "-A",
            "leadscoring",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(ROOT / "var" / "celerybeat-schedule"),
        ],
    }
    (ROOT / "var").mkdir(exist_ok=True)
    processes = {name: subprocess.Popen(cmd, cwd=ROOT, env=env) for name, cmd in commands.items()}
    print(
        f"Serving http://127.0.0.1:{port}/  (log in as ops, sales1, manager or admin)", flush=True
    )

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"{name} exited with {process.returncode}; stopping.", file=sys.stderr)
                exit_code = process.returncode or 1
                stopping = True
        time.sleep(0.5)
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 15
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
