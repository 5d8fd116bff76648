"""Project middleware: login everywhere but the API, and each user's time zone."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from scoring.selectors.users import user_time_zone


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Login everywhere, except the API: DRF authenticates API requests itself (tokens as well
    as sessions) and answers 401/403 as JSON instead of redirecting a machine to a form."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class UserTimeZoneMiddleware:
    """Pages render times and read typed days in the time zone the signed-in user chose on the
    profile page (`UserPreference.time_zone`); everyone else, and every API request (its
    clients get one zone whoever's session it is), gets the site's TIME_ZONE. One primary-key
    lookup per page request.

    The zone is thread-local in Django, and a server thread serves many users: it is always
    reset after the response so the next request never inherits it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = ""
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not request.path_info.startswith("/api/"):
            name = user_time_zone(user)
        if name:
            timezone.activate(name)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def site_time_zone(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """View decorator: the view runs in the site's TIME_ZONE whatever the user chose. For the
    KPI pages: their days and periods are the site's, the ones the KPI cube is built in (a
    request in another zone cannot use the cube and would compute from the leads)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with timezone.override(None):
            return view(request, *args, **kwargs)

    return wrapper
