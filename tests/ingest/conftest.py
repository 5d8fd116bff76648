"""Fixtures for the ingestion tests: API clients per role, token clients, and a cleared
throttle cache so rate counts never leak between tests."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.factories import api_token


@pytest.fixture(autouse=True)
def _fresh_throttle_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_as(role_users):
    """api_as("ops") -> a DRF APIClient authenticated by a fresh token of that user."""

    def make(username: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(role_users[username])}")
        return client

    return make
