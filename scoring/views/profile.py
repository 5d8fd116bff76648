"""The profile page: a user's time zone and own API tokens (create, shown once; revoke).
Thin: parse the form, call the users or token service, render."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from scoring.forms_accounts import ApiTokenCreateForm, TimeZoneForm
from scoring.selectors.api_tokens import api_tokens_of
from scoring.selectors.users import user_time_zone
from scoring.services.api_tokens import TokenInvalid, token_create, token_revoke
from scoring.services.users import UserChangeRefused, user_time_zone_set
from scoring.views.access import require


def _profile(
    request: HttpRequest,
    form: ApiTokenCreateForm | None = None,
    new_token: str = "",
    new_prefix: str = "",
    status: int = 200,
    zone_form: TimeZoneForm | None = None,
) -> HttpResponse:
    context = {
        "tokens": api_tokens_of(request.user),
        "form": form or ApiTokenCreateForm(),
        "zone_form": zone_form or TimeZoneForm(initial={"time_zone": user_time_zone(request.user)}),
        "new_token": new_token,
        "new_prefix": new_prefix,
    }
    return render(request, "accounts/profile.html", context, status=status)


@require("use_api")
@require_GET
def profile_page(request: HttpRequest) -> HttpResponse:
    return _profile(request)


@require("use_api")
@require_POST
@never_cache
def api_token_create(request: HttpRequest) -> HttpResponse:
    """Make a token and show it in this response only: it is not put in the session or a
    redirect, so reloading the page does not show it again (never_cache keeps it out of the
    browser's cache too)."""
    form = ApiTokenCreateForm(request.POST)
    if not form.is_valid():
        return _profile(request, form=form, status=400)
    try:
        instance, token = token_create(request.user, form.cleaned_data["expires_days"])
    except TokenInvalid as exc:
        form.add_error(None, str(exc))
        return _profile(request, form=form, status=400)
    return _profile(request, new_token=token, new_prefix=instance.token_key)


@require("use_api")
@require_POST
def api_token_revoke(request: HttpRequest, token_key: str) -> HttpResponse:
    if token_revoke(request.user, token_key):
        messages.success(request, f"Token {token_key}… revoked: it no longer works.")
    else:
        messages.error(request, "No such token of yours.")
    return redirect("profile")


@require("use_api")
@require_POST
def time_zone_save(request: HttpRequest) -> HttpResponse:
    form = TimeZoneForm(request.POST)
    if not form.is_valid():
        return _profile(request, zone_form=form, status=400)
    try:
        user_time_zone_set(request.user, form.cleaned_data["time_zone"])
    except UserChangeRefused as exc:
        form.add_error("time_zone", str(exc))
        return _profile(request, zone_form=form, status=400)
    name = form.cleaned_data["time_zone"] or "the site's"
    messages.success(request, f"Time zone saved: pages now show times in {name}.")
    return redirect("profile")
