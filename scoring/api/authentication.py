"""API token authentication: django-rest-knox's hashed tokens, with failures throttled.

A client that keeps sending bad tokens is guessing: after `API_AUTH_FAILURE_LIMIT` failures from
one address within `API_AUTH_FAILURE_WINDOW_SECONDS`, every token request from that address is
answered 429 (with Retry-After) until the window has passed, a right token included, so the
answers stop telling a guesser anything. The count lives in the shared cache, so it holds
across every web process."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request

logger = logging.getLogger(__name__)


def _failure_key(request: Request) -> str:
    return f"api-auth-failures:{request.META.get('REMOTE_ADDR', '')}"


def auth_failures_check(request: Request) -> None:
    """Raise Throttled while the caller's address is over the failure limit. Every API that
    takes a secret (tokens here, write keys at /segment/) shares the one count."""
    if (cache.get(_failure_key(request)) or 0) >= settings.API_AUTH_FAILURE_LIMIT:
        raise Throttled(
            wait=settings.API_AUTH_FAILURE_WINDOW_SECONDS,
            detail="Too many failed authentication attempts.",
        )


def auth_failure_record(request: Request) -> None:
    """Count one failed authentication of the caller's address (logged, without the address)."""
    key = _failure_key(request)
    window = settings.API_AUTH_FAILURE_WINDOW_SECONDS
    # add() starts the window on the first failure; incr() keeps its expiry.
    if not cache.add(key, 1, window):
        try:
            cache.incr(key)
        except ValueError:  # the window ended between add() and incr()
            cache.add(key, 1, window)
    logger.warning("api.auth.failed failures_in_window=%s", cache.get(key))


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        auth_failures_check(request)
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            auth_failure_record(request)
            raise


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """How /api/schema/ describes the token: `Authorization: Token <key>`."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict:
        return build_bearer_security_scheme_object(
            header_name="Authorization",
            token_prefix="Token",  # noqa: S106 (a scheme name)
        )
