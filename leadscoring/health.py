"""Liveness of what the product needs: the database and the Celery broker."""

from __future__ import annotations

from django.db import connection

from leadscoring.celery import app as celery_app


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return f"database: {exc.__class__.__name__}"
    return None


def check_broker(url: str | None = None) -> str | None:
    try:
        with celery_app.connection_for_write(url) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as exc:
        return f"broker: {exc.__class__.__name__}"
    return None


def health_problems() -> list[str]:
    return [problem for problem in (check_database(), check_broker()) if problem]
