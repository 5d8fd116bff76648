"""Roles are Django groups. This module is the one place that says which role may do what;
pages, the API and tests all read it from here. The HTTP and DRF adapters that enforce it are
`scoring.views.access.require` and `scoring.api.permissions.HasCapability`."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

MARKETING_OPS = "marketing_ops"
SALES = "sales"
MANAGER = "manager"
ADMIN = "admin"
ROLES = (MARKETING_OPS, SALES, MANAGER, ADMIN)

# Capability -> roles that have it. A superuser counts as the admin role (and gets no more in
# the product: least privilege, so the role matrix holds for everyone).
CAPABILITIES: dict[str, frozenset[str]] = {
    "view_leads": frozenset({SALES, MARKETING_OPS, MANAGER, ADMIN}),
    "view_all_leads": frozenset({MARKETING_OPS, MANAGER, ADMIN}),
    "give_feedback": frozenset({SALES, MARKETING_OPS, MANAGER}),
    "view_rules": frozenset({MARKETING_OPS, MANAGER, ADMIN}),
    "edit_rules": frozenset({MARKETING_OPS}),
    "view_feedback_review": frozenset({MARKETING_OPS, MANAGER}),
    "view_kpis": frozenset({MANAGER, MARKETING_OPS, ADMIN}),
    "view_models": frozenset({MARKETING_OPS, MANAGER}),
    "train_models": frozenset({MARKETING_OPS}),
    "manage_integrations": frozenset({ADMIN, MARKETING_OPS}),
    "ingest": frozenset({ADMIN, MARKETING_OPS}),
    "import_data": frozenset({MARKETING_OPS, ADMIN}),
    # Own API tokens (the profile page) and the API docs link: every role may script the API.
    "use_api": frozenset({SALES, MARKETING_OPS, MANAGER, ADMIN}),
    "manage_users": frozenset({ADMIN}),
    # Acting on scores (docs/acting.md): outgoing webhooks and routing rules are set up by
    # ops and admins; managers read routing and the reps' workload.
    "manage_webhooks": frozenset({MARKETING_OPS, ADMIN}),
    "edit_routing": frozenset({MARKETING_OPS, ADMIN}),
    "view_routing": frozenset({MARKETING_OPS, MANAGER, ADMIN}),
    # Champion/challenger experiments: marketing ops start, stop and promote; managers read.
    "view_experiments": frozenset({MARKETING_OPS, MANAGER}),
    "run_experiments": frozenset({MARKETING_OPS}),
}

# Each group's Django model permissions, granted by the roles migration so that the admin
# site and `user.has_perm` agree with the capabilities above.
GROUP_MODEL_PERMISSIONS: dict[str, list[str]] = {
    MARKETING_OPS: [
        f"{action}_{model}"
        for model in ("ruleset", "rule", "persona", "band")
        for action in ("add", "change", "delete", "view")
    ]
    + ["view_lead", "view_event", "view_feedback", "add_feedback", "change_feedback"],
    SALES: ["view_lead", "view_event", "add_feedback", "change_feedback", "view_feedback"],
    MANAGER: [
        "view_lead",
        "view_event",
        "view_feedback",
        "view_ruleset",
        "view_rule",
        "view_persona",
        "view_band",
    ],
    ADMIN: ["view_lead", "view_event", "view_ruleset", "view_rule", "view_persona", "view_band"],
}


def user_roles(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_role_cache", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True)) & frozenset(ROLES)
        if user.is_superuser:
            cached = cached | {ADMIN}
        user._role_cache = cached
    return cached


def can(user: AbstractBaseUser | AnonymousUser, capability: str) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    return bool(user_roles(user) & CAPABILITIES[capability])


def primary_role(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """The role whose home page the user lands on."""
    roles = user_roles(user)
    for role in (MARKETING_OPS, MANAGER, SALES, ADMIN):
        if role in roles:
            return role
    return None
