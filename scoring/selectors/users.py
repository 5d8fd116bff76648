"""Reads for the users page (every user with their roles, and the recent audit trail) and a
user's own preferences (the time zone the pages show times in)."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from typing import TypedDict

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Prefetch

from scoring.models import UserAudit, UserPreference
from scoring.roles import ADMIN, ROLES

AUDIT_LIMIT = 50


class UserRow(TypedDict):
    id: int
    username: str
    email: str
    roles: list[str]
    is_active: bool
    has_password: bool
    last_login: dt.datetime | None


class AuditRow(TypedDict):
    at: dt.datetime
    actor: str
    user: str
    action: str
    details: dict


def users_with_roles() -> list[UserRow]:
    """Every user by username, with their role groups (a superuser counts as admin), in two
    queries."""
    role_groups = Prefetch("groups", queryset=Group.objects.filter(name__in=ROLES))
    rows: list[UserRow] = []
    for user in get_user_model().objects.order_by("username").prefetch_related(role_groups):
        roles = {group.name for group in user.groups.all()}
        if user.is_superuser:
            roles.add(ADMIN)
        rows.append(
            {
                "id": user.pk,
                "username": user.get_username(),
                "email": user.email,
                "roles": sorted(roles),
                "is_active": user.is_active,
                "has_password": user.has_usable_password(),
                "last_login": user.last_login,
            }
        )
    return rows


def user_audit_trail(limit: int = AUDIT_LIMIT) -> list[AuditRow]:
    entries = UserAudit.objects.select_related("actor", "user")[:limit]
    return [
        {
            "at": entry.at,
            "actor": entry.actor.get_username() if entry.actor else "",
            "user": entry.user.get_username(),
            "action": entry.get_action_display(),
            "details": entry.details,
        }
        for entry in entries
    ]


@functools.cache
def time_zone_names() -> tuple[str, ...]:
    """Every IANA time zone this system knows (`zoneinfo.available_timezones()`), sorted: the
    profile page's choices. Read once per process (it walks the tz database)."""
    return tuple(sorted(zoneinfo.available_timezones()))


def user_time_zone(user: AbstractBaseUser) -> str:
    """The time zone `user` chose on the profile page, or "" for the site's TIME_ZONE (also
    when they never chose, or when the stored zone is no longer known to this system)."""
    name = (
        UserPreference.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first()
    )
    return name if name and name in time_zone_names() else ""
