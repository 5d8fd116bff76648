"""Reads of the Segment source for the integrations page: plain dicts, never a key or digest."""

from __future__ import annotations

from typing import Any

from django.db.models import F

from integrations.models import SourceKey


def source_keys_overview() -> list[dict[str, Any]]:
    """Every source key (active first, then revoked) with its last call and counts."""
    rows = SourceKey.objects.select_related("created_by").order_by(
        F("revoked_at").asc(nulls_first=True), "name"
    )
    return [
        {
            "id": key.pk,
            "name": key.name,
            "prefix": key.prefix,
            "active": key.is_active,
            "created_at": key.created_at,
            "created_by": key.created_by.get_username() if key.created_by else "",
            "revoked_at": key.revoked_at,
            "last_call_at": key.last_call_at,
            "requests": key.requests,
            "accepted": key.accepted,
            "duplicate": key.duplicate,
            "rejected": key.rejected,
            "last_error": key.last_error,
        }
        for key in rows
    ]
