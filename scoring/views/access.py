"""The pages' access check: a view decorator over the capability table in `scoring.roles`."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from scoring.roles import can


def require(capability: str) -> Callable:
    """View decorator: 403 unless the user has the capability (login is enforced by the
    middleware before this runs)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not can(request.user, capability):
                raise PermissionDenied(f"Your role does not allow this ({capability}).")
            return view(request, *args, **kwargs)

        wrapper.capability = capability  # read by the role-matrix test
        return wrapper

    return decorator
