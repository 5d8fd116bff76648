"""Leads and their events in Django admin, read-mostly: the product's own pages and services
change leads (scoring, merges, feedback), so the admin is for browsing and looking rows up."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from scoring.models import Event, Lead


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = ("email", "name", "company", "score", "band", "lifecycle_stage", "owner")
    list_filter = ("band", "lifecycle_stage")
    search_fields = ("email", "company")
    # One query for the page's owners rather than one per row.
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    ordering = ("-created_at",)
    show_full_result_count = False  # a COUNT(*) over every lead on each page is slow
    # Scoring output is written by the rescore services only; editing it here would make the
    # breakdown disagree with the rule set that produced it.
    readonly_fields = (
        "score",
        "band",
        "breakdown",
        "rule_set_version",
        "scored_at",
        "persona",
        "created_at",
        "updated_at",
    )

    @admin.display(description="Name", ordering="last_name")
    def name(self, lead: Lead) -> str:
        return f"{lead.first_name} {lead.last_name}".strip()

    def has_delete_permission(self, request: HttpRequest, obj: Lead | None = None) -> bool:
        # Deleting a lead would drop its events and history; leads are disqualified instead.
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("event_type", "occurred_at", "lead", "source", "external_id")
    list_filter = ("event_type", "source")
    search_fields = ("external_id", "lead__email")
    list_select_related = ("lead",)
    raw_id_fields = ("lead",)
    ordering = ("-occurred_at",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False
