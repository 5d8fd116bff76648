"""API tokens (django-rest-knox): made and revoked for one user.

Only the token's digest and its 15-character prefix (`token_key`) are stored, so the plain
token exists only in the return value of `token_create`: callers show it once and never keep
it (not in a session, a URL or a log)."""

from __future__ import annotations

import datetime as dt
import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from knox.models import AuthToken

logger = logging.getLogger(__name__)

MAX_EXPIRY_DAYS = 3650


class TokenInvalid(ValueError):
    """The request for a token cannot be met (an inactive user, a bad expiry)."""


def token_create(
    user: AbstractBaseUser, expires_days: int | None = None, *, replace_existing: bool = False
) -> tuple[AuthToken, str]:
    """A new token for `user` -> (the stored row, the plain token to show once).

    `expires_days` None means the token never expires; otherwise 1..MAX_EXPIRY_DAYS.
    `replace_existing` revokes the user's other tokens in the same transaction.
    Raises TokenInvalid for an inactive user or an expiry out of range."""
    if not user.is_active:
        raise TokenInvalid(f"user {user.get_username()!r} is inactive")
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        raise TokenInvalid(f"the expiry must be between 1 and {MAX_EXPIRY_DAYS} days")
    expiry = dt.timedelta(days=expires_days) if expires_days else None
    with transaction.atomic():
        replaced = AuthToken.objects.filter(user=user).delete()[0] if replace_existing else 0
        instance, token = AuthToken.objects.create(user=user, expiry=expiry)
    logger.info(
        "api_token.created user=%s prefix=%s expires=%s replaced=%s",
        user.pk,
        instance.token_key,
        instance.expiry.isoformat() if instance.expiry else "never",
        replaced,
    )
    return instance, token


def token_revoke(user: AbstractBaseUser, token_key: str) -> bool:
    """Revoke the user's own token with exactly this prefix; False when the user has none
    (another user's token is never touched)."""
    deleted = AuthToken.objects.filter(user=user, token_key=token_key).delete()[0]
    if deleted:
        logger.info("api_token.revoked user=%s prefix=%s", user.pk, token_key)
    return bool(deleted)
