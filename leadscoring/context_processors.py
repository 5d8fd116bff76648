"""The navigation each role sees, prepared for the base template."""

from django.http import HttpRequest

from scoring.roles import can, user_roles

NAVIGATION = [
    ("Home", "/", None),
    ("Leads", "/leads/", "view_leads"),
    ("Rules", "/rules/", "view_rules"),
    ("Personas", "/personas/", "view_rules"),
    ("Feedback", "/feedback/", "view_feedback_review"),
    ("KPIs", "/kpis/", "view_kpis"),
    ("Models", "/models/", "view_models"),
    ("Experiments", "/experiments/", "view_experiments"),
    ("Imports", "/imports/", "import_data"),
    ("Integrations", "/integrations/", "manage_integrations"),
    ("Routing", "/routing/", "view_routing"),
    ("Webhooks", "/webhooks/", "manage_webhooks"),
    ("Users", "/users/", "manage_users"),
    ("API docs", "/api/docs/", "use_api"),
]


def navigation(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": [], "user_roles": []}
    items = [
        {"label": label, "url": url, "active": request.path == url}
        for label, url, capability in NAVIGATION
        if capability is None or can(user, capability)
    ]
    return {"nav_items": items, "user_roles": sorted(user_roles(user))}
