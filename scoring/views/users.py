"""The users page: admins invite users, change their role, deactivate and reactivate them.
Thin: parse the form, call one service of `scoring.services.users`, render or redirect."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from scoring.forms_accounts import UserActiveForm, UserInviteForm, UserRoleForm
from scoring.roles import ROLES
from scoring.selectors.users import user_audit_trail, users_with_roles
from scoring.services.users import (
    UserChangeRefused,
    user_invite,
    user_set_active,
    user_set_role,
)
from scoring.views.access import require


def _users(
    request: HttpRequest,
    invite_form: UserInviteForm | None = None,
    invitation_link: str = "",
    invited: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "users": users_with_roles(),
        "audit": user_audit_trail(),
        "roles": ROLES,
        "invite_form": invite_form or UserInviteForm(),
        "invitation_link": invitation_link,
        "invited": invited,
    }
    return render(request, "accounts/users.html", context, status=status)


@require("manage_users")
@require_GET
def users_page(request: HttpRequest) -> HttpResponse:
    return _users(request)


@require("manage_users")
@require_POST
@never_cache
def user_invite_submit(request: HttpRequest) -> HttpResponse:
    """Create the user and show their one-time set-password link on this response only."""
    form = UserInviteForm(request.POST)
    if not form.is_valid():
        return _users(request, invite_form=form, status=400)
    try:
        invitation = user_invite(request.user, **form.cleaned_data)
    except UserChangeRefused as exc:
        form.add_error(None, str(exc))
        return _users(request, invite_form=form, status=400)
    link = request.build_absolute_uri(invitation.set_password_path)
    return _users(request, invitation_link=link, invited=invitation.username)


@require("manage_users")
@require_POST
def user_role_submit(request: HttpRequest, user_id: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=user_id)
    form = UserRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
        return redirect("users")
    try:
        user_set_role(request.user, user, form.cleaned_data["role"])
    except UserChangeRefused as exc:
        messages.error(request, f"{user.get_username()}: {exc}.")
    else:
        messages.success(request, f"{user.get_username()} is now {form.cleaned_data['role']}.")
    return redirect("users")


@require("manage_users")
@require_POST
def user_active_submit(request: HttpRequest, user_id: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=user_id)
    form = UserActiveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say whether the user is active.")
        return redirect("users")
    active = form.cleaned_data["active"]
    try:
        user_set_active(request.user, user, active)
    except UserChangeRefused as exc:
        messages.error(request, f"{user.get_username()}: {exc}.")
    else:
        state = "reactivated" if active else "deactivated"
        messages.success(request, f"{user.get_username()} {state}.")
    return redirect("users")
