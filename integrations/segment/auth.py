"""Segment's authentication at /segment/v1/: the write key is the user name of HTTP Basic (the
password is empty), or the ``writeKey`` field of the body. A write key is a source key
(`SourceKey`) or the API token of a user with the ``ingest`` capability. Bad keys count
towards the same per-address failure limit as bad API tokens."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from integrations.models import SourceKey
from integrations.segment.services import source_key_find
from scoring.api.authentication import (
    TokenAuthentication,
    auth_failure_record,
    auth_failures_check,
)
from scoring.api.ingest import IngestThrottle
from scoring.roles import can


def write_key_of(request: Request) -> str | None:
    """The write key the request carries: Basic user name first, then the body's
    ``writeKey`` (the view parses the body into ``request.segment_body`` before this runs)."""
    header = get_authorization_header(request).split()
    if len(header) == 2 and header[0].lower() == b"basic":
        try:
            decoded = base64.b64decode(header[1], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationFailed("The Basic credentials are not valid base64.") from None
        user, _, _password = decoded.partition(":")
        if user:
            return user
    body = getattr(request, "segment_body", None)
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str) and body["writeKey"]:
        return body["writeKey"]
    return None


class WriteKeyAuthentication(BaseAuthentication):
    """(AnonymousUser, SourceKey) for a source key, (user, AuthToken) for an API token."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        key = write_key_of(request)
        if key is None:
            return None
        auth_failures_check(request)
        source_key = source_key_find(key)
        if source_key is not None:
            return AnonymousUser(), source_key
        try:
            # knox's own check of a token (digest compare, expiry, active user).
            return TokenAuthentication().authenticate_credentials(key.encode())
        except (AuthenticationFailed, UnicodeError):
            auth_failure_record(request)
            raise AuthenticationFailed("Invalid write key.") from None

    def authenticate_header(self, request: Request) -> str:
        return 'Basic realm="segment"'


class CanWriteEvents(BasePermission):
    """A source key may write; a token's user needs the ``ingest`` capability."""

    message = "This write key's user may not ingest (the ingest capability is needed)."

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, SourceKey):
            return True
        return can(request.user, "ingest")


class WriteKeyThrottle(IngestThrottle):
    """The events API's ``ingest`` rate, counted per source key or per token."""

    def get_cache_key(self, request: Request, view: Any) -> str:
        if isinstance(request.auth, SourceKey):
            return self.cache_format % {"scope": self.scope, "ident": f"source-{request.auth.pk}"}
        token_key = getattr(request.auth, "token_key", None)
        if token_key:
            return self.cache_format % {"scope": self.scope, "ident": f"knox-{token_key}"}
        return super().get_cache_key(request, view)
