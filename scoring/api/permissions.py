"""The API's access check: a DRF permission over the capability table in `scoring.roles`."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from scoring.roles import can


class HasCapability(BasePermission):
    """DRF permission: the view names its capability in `required_capability`, or one per
    method in `capability_by_method`."""

    def has_permission(self, request: Any, view: Any) -> bool:
        by_method = getattr(view, "capability_by_method", None) or {}
        capability = by_method.get(request.method, getattr(view, "required_capability", None))
        if capability is None:
            return False
        return can(request.user, capability)
