"""Reads of API tokens for the profile page: by prefix, never the token itself (only its
digest is stored)."""

from __future__ import annotations

import datetime as dt
from typing import TypedDict

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from knox.models import AuthToken


class ApiTokenRow(TypedDict):
    prefix: str
    created: dt.datetime
    expiry: dt.datetime | None
    expired: bool


def api_tokens_of(user: AbstractBaseUser) -> list[ApiTokenRow]:
    """The user's tokens, newest first. Knox does not record when a token was last used, so
    there is no such column; an expired token is listed (and marked) until knox deletes it
    on its next use."""
    now = timezone.now()
    return [
        {
            "prefix": token.token_key,
            "created": token.created,
            "expiry": token.expiry,
            "expired": token.expiry is not None and token.expiry <= now,
        }
        for token in AuthToken.objects.filter(user=user).order_by("-created", "-pk")
    ]
