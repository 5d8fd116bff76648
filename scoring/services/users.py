"""Users and their roles, as an admin manages them on the users page: invite, change role,
deactivate and reactivate. Every change is written to `UserAudit` and logged as one
structured line.

Roles are Django groups (`scoring.roles.ROLES`); a user managed here has exactly one role.
Two guards keep the product administrable: an admin cannot deactivate themself, and the last
active admin can neither be deactivated nor lose the admin role."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from scoring.models import UserAudit, UserPreference
from scoring.roles import ADMIN, ROLES
from scoring.selectors.users import time_zone_names

logger = logging.getLogger(__name__)


class UserChangeRefused(ValueError):
    """The change would break a rule (unknown role, taken username, last admin...); the
    message is meant for the admin who asked."""


@dataclass(frozen=True)
class Invitation:
    user_id: int
    username: str
    set_password_path: str  # relative: the page makes it absolute with the request's host


def _audit(actor: AbstractBaseUser, user: AbstractBaseUser, action: str, **details: Any) -> None:
    UserAudit.objects.create(actor=actor, user=user, action=action, details=details)
    logger.info(
        "user.%s actor=%s user=%s %s",
        action,
        actor.pk,
        user.pk,
        # The email stays in the audit table only: logs travel further than the database.
        " ".join(f"{key}={value}" for key, value in details.items() if key != "email"),
    )


def _is_admin(user: AbstractBaseUser) -> bool:
    return user.is_superuser or user.groups.filter(name=ADMIN).exists()


def _other_active_admins(user: AbstractBaseUser) -> bool:
    """Whether an active admin other than `user` exists. Call inside a transaction: the
    admins' rows are locked until it ends, so two admins demoting each other at the same
    moment cannot both pass the last-admin check (a no-op on SQLite, which has one writer)."""
    admins = (
        get_user_model()
        .objects.select_for_update(of=("self",))
        .filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name=ADMIN))
        .values_list("pk", flat=True)
    )
    return any(pk != user.pk for pk in admins)


def set_password_path(user: AbstractBaseUser) -> str:
    """The one-time link to Django's password-reset confirm page for `user`. Django's token
    generator hashes the password and last login into the token, so the link stops working
    once a password is set (or after PASSWORD_RESET_TIMEOUT)."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return reverse("password_reset_confirm", kwargs={"uidb64": uidb64, "token": token})


def user_invite(actor: AbstractBaseUser, *, username: str, email: str, role: str) -> Invitation:
    """Create an active user with the role and no usable password, and return the set-password
    link to hand to them. Raises UserChangeRefused for an unknown role, a malformed email or a
    username already taken."""
    username = username.strip()
    email = email.strip()
    if role not in ROLES:
        raise UserChangeRefused(f"unknown role {role!r}")
    if not username:
        raise UserChangeRefused("a username is required")
    try:
        validate_email(email)
    except ValidationError:
        raise UserChangeRefused(f"{email!r} is not an email address") from None
    model = get_user_model()
    with transaction.atomic():
        if model.objects.filter(username__iexact=username).exists():
            raise UserChangeRefused(f"the username {username!r} is taken")
        # Admins browse leads in Django admin, which needs is_staff; what they may do there is
        # their group's model permissions (scoring.roles.GROUP_MODEL_PERMISSIONS).
        user = model.objects.create_user(
            username=username, email=email, password=None, is_staff=role == ADMIN
        )
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        _audit(actor, user, UserAudit.Action.INVITE, role=role, email=email)
    return Invitation(user_id=user.pk, username=username, set_password_path=set_password_path(user))


def user_set_role(actor: AbstractBaseUser, user: AbstractBaseUser, role: str) -> None:
    """Give `user` exactly this role (other role groups are removed; non-role groups stay);
    Django admin access (`is_staff`) follows the admin role.
    Raises UserChangeRefused for an unknown role or when the last active admin would lose the
    admin role (a superuser stays an admin whatever their groups)."""
    if role not in ROLES:
        raise UserChangeRefused(f"unknown role {role!r}")
    with transaction.atomic():
        before = sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if before == [role]:
            return
        if (
            role != ADMIN
            and not user.is_superuser
            and _is_admin(user)
            and user.is_active
            and not _other_active_admins(user)
        ):
            raise UserChangeRefused("this is the last admin: make someone else admin first")
        user.groups.remove(*Group.objects.filter(name__in=ROLES))
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        staff = role == ADMIN or user.is_superuser
        if user.is_staff != staff:
            user.is_staff = staff
            user.save(update_fields=["is_staff"])
        _audit(actor, user, UserAudit.Action.ROLE, before=",".join(before), after=role)
    # `scoring.roles.user_roles` caches on the instance.
    user.__dict__.pop("_role_cache", None)


def user_set_active(actor: AbstractBaseUser, user: AbstractBaseUser, active: bool) -> None:
    """Deactivate (the user can no longer log in, their sessions and API tokens stop working)
    or reactivate. Raises UserChangeRefused when an admin deactivates themself or the last
    active admin."""
    if user.is_active == active:
        return
    if not active and user.pk == actor.pk:
        raise UserChangeRefused("you cannot deactivate yourself")
    with transaction.atomic():
        if not active and _is_admin(user) and not _other_active_admins(user):
            raise UserChangeRefused("this is the last admin: make someone else admin first")
        user.is_active = active
        user.save(update_fields=["is_active"])
        action = UserAudit.Action.REACTIVATE if active else UserAudit.Action.DEACTIVATE
        _audit(actor, user, action)


def user_time_zone_set(user: AbstractBaseUser, name: str) -> None:
    """Store the time zone `user` sees the pages in: an IANA name (`Asia/Tokyo`), or "" for
    the site's TIME_ZONE. Raises UserChangeRefused for a name this system does not know."""
    name = name.strip()
    if name and name not in time_zone_names():
        raise UserChangeRefused(f"Unknown time zone {name!r}.")
    UserPreference.objects.update_or_create(user=user, defaults={"time_zone": name})
    logger.info("users.time_zone.set user=%s zone=%s", user.pk, name or "site")
