"""Fixtures for the Segment source: write keys (a source key, an API token) and a client that
posts as an SDK does (HTTP Basic, the key as user name, an empty password)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import api_token


@pytest.fixture(autouse=True)
def _fresh_throttle_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def source_key(db) -> str:
    from integrations.segment.services import source_key_create

    return source_key_create("website")[1]


@pytest.fixture
def ops_token(role_users) -> str:
    return api_token(role_users["ops"])


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


@pytest.fixture
def segment(source_key) -> Callable[..., Any]:
    """segment("track", {...}) -> the response of POST /segment/v1/track with the source key."""
    client = Client()

    def post(endpoint: str, body: Any, *, key: str | None = source_key, **headers: str):
        raw = body if isinstance(body, bytes | str) else json.dumps(body)
        extra = {"HTTP_AUTHORIZATION": basic(key)} if key else {}
        extra.update(headers)
        return client.post(
            f"/segment/v1/{endpoint}", data=raw, content_type="application/json", **extra
        )

    return post
