"""The integrations page: connections, their runs and schedules (admin and marketing ops)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from integrations import config as integration_config
from integrations import selectors, services
from scoring.roles import require


def _vendor(vendor: str) -> str:
    if vendor not in services.VENDORS:
        raise Http404("unknown integration")
    return vendor


@require_GET
@require("manage_integrations")
def integrations_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "integrations/page.html",
        {
            "connections": selectors.connections_overview(),
            "unmatched_owners": selectors.owners_unmatched(),
        },
    )


@require_GET
@require("manage_integrations")
def connection_status(request: HttpRequest, vendor: str) -> HttpResponse:
    """The live part of one connection's card; htmx polls it while a run is going."""
    return render(
        request,
        "integrations/_status.html",
        {"c": selectors.connection_overview(_vendor(vendor))},
    )


@require_POST
@require("manage_integrations")
def sync_now(request: HttpRequest, vendor: str) -> HttpResponse:
    full = request.POST.get("full") == "1"
    services.sync_enqueue(_vendor(vendor), full=full)
    messages.info(request, f"{vendor} {'full ' if full else ''}sync queued.")
    return redirect("integrations")


@require_POST
@require("manage_integrations")
def test_connection(request: HttpRequest, vendor: str) -> HttpResponse:
    outcome = services.connection_test(_vendor(vendor))
    level = messages.SUCCESS if outcome["ok"] else messages.ERROR
    messages.add_message(request, level, f"{vendor}: {outcome['message']}")
    return redirect("integrations")


@require_POST
@require("manage_integrations")
def schedule_update(request: HttpRequest, vendor: str) -> HttpResponse:
    try:
        every = int(request.POST.get("every_minutes", ""))
        services.schedule_set(
            _vendor(vendor), every_minutes=every, enabled=request.POST.get("enabled") == "on"
        )
    except ValueError as exc:
        messages.error(request, f"Schedule not saved: {exc}")
    else:
        messages.success(request, f"{vendor} schedule saved.")
    return redirect("integrations")


@require_POST
@require("manage_integrations")
def settings_save(request: HttpRequest, vendor: str) -> HttpResponse:
    keys = [s.key for s in integration_config.SETTINGS[_vendor(vendor)]]
    values = {key: request.POST.get(key, "") for key in keys}
    clear = [key for key in keys if request.POST.get(f"clear_{key}") == "on"]
    try:
        services.connection_settings_save(vendor, values, clear=clear)
    except ImproperlyConfigured as exc:
        messages.error(request, f"Settings not saved: {exc}")
    else:
        messages.success(request, f"{vendor} settings saved.")
    return redirect("integrations")
