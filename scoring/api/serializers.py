"""Input and output shapes of the ingestion and lead endpoints.

Events are validated by ``scoring.services.events.parse_event_item``, a plain function,
rather than by a DRF serializer per item: a batch of 10,000 events through DRF field
machinery costs about ten times more than the insert itself (the ingest target is 20,000
events/s). ``EventInSerializer`` describes the same shape for the OpenAPI schema only.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from scoring.models import Lead, LifecycleStage
from scoring.selectors.experiments import lead_experiments
from scoring.services.events import DEFAULT_SOURCE
from scoring.services.leads import LeadUpsert


class EventInSerializer(serializers.Serializer):
    """One event (schema only; validation is :func:`parse_event_item`)."""

    external_id = serializers.CharField(
        max_length=255, help_text="With source, the idempotency key."
    )
    source = serializers.CharField(max_length=40, required=False, default=DEFAULT_SOURCE)
    event_type = serializers.CharField(max_length=80)
    occurred_at = serializers.DateTimeField(help_text="ISO 8601 with a time zone.")
    email = serializers.EmailField(required=False, help_text="Unknown emails create a lead.")
    lead_source = serializers.CharField(max_length=40, required=False)
    lead_external_id = serializers.CharField(max_length=255, required=False)
    properties = serializers.DictField(required=False)


class IngestErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    external_id = serializers.CharField(required=False)
    reasons = serializers.ListField(child=serializers.CharField())


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    rejected = serializers.IntegerField()
    errors = IngestErrorSerializer(many=True)


# --------------------------------------------------------------------------------------------
# Leads
# --------------------------------------------------------------------------------------------


class LeadUpsertSerializer(serializers.Serializer):
    """A lead to create or update, found by ``identity_source`` + ``external_id`` or by email.
    ``source`` is the lead source (marketing channel), not the system the id comes from."""

    email = serializers.EmailField(required=False, allow_null=True, max_length=254)
    identity_source = serializers.CharField(required=False, max_length=40, default="api")
    external_id = serializers.CharField(required=False, max_length=255)
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    title = serializers.CharField(required=False, allow_blank=True, max_length=200)
    company = serializers.CharField(required=False, allow_blank=True, max_length=200)
    employees = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    industry = serializers.CharField(required=False, allow_blank=True, max_length=120)
    country = serializers.CharField(required=False, allow_blank=True, max_length=120)
    source = serializers.CharField(required=False, allow_blank=True, max_length=120)
    owner = serializers.SlugRelatedField(
        slug_field="username",
        queryset=get_user_model().objects.all(),
        required=False,
        allow_null=True,
    )
    lifecycle_stage = serializers.ChoiceField(choices=LifecycleStage.choices, required=False)
    created_at = serializers.DateTimeField(required=False)
    mql_at = serializers.DateTimeField(required=False, allow_null=True)
    sql_at = serializers.DateTimeField(required=False, allow_null=True)
    opportunity_at = serializers.DateTimeField(required=False, allow_null=True)
    converted_at = serializers.DateTimeField(required=False, allow_null=True)
    revenue = serializers.FloatField(required=False, allow_null=True)
    attributes = serializers.DictField(required=False)

    def __init__(self, *args: Any, updating: bool = False, **kwargs: Any) -> None:
        self.updating = updating
        super().__init__(*args, **kwargs)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not self.updating and not attrs.get("email") and not attrs.get("external_id"):
            raise serializers.ValidationError("Give an email or an external_id.")
        return attrs

    def to_upsert(self) -> LeadUpsert:
        """The validated body as a service input (``owner`` becomes ``owner_id``)."""
        data = dict(self.validated_data)
        identity_source = data.pop("identity_source", "api")
        external_id = data.pop("external_id", None)
        attributes = data.pop("attributes", {}) or {}
        if "owner" in data:
            owner = data.pop("owner")
            if owner is not None:
                data["owner_id"] = owner.pk
        return LeadUpsert(
            source=identity_source, external_id=external_id, values=data, attributes=attributes
        )


class LeadListSerializer(serializers.ModelSerializer):
    """One row of the lead list as `scoring.lead_list.lead_list_page` reads it: a dict of
    LIST_FIELDS (the owner's username and the model probability come joined in)."""

    owner = serializers.CharField(source="owner__username", default=None, read_only=True)
    model_probability = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Lead
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "title",
            "company",
            "source",
            "owner",
            "persona",
            "lifecycle_stage",
            "score",
            "band",
            "grade",
            "group_scores",
            "model_probability",
            "created_at",
        ]
        read_only_fields = fields


class LeadEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    source = serializers.CharField()
    external_id = serializers.CharField()
    event_type = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    properties = serializers.DictField()


class LeadDetailSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", default=None, read_only=True)
    identities = serializers.SerializerMethodField()
    merges = serializers.SerializerMethodField()
    recent_events = serializers.SerializerMethodField()
    model_probability = serializers.FloatField(read_only=True, allow_null=True)
    experiments = serializers.SerializerMethodField()

    class Meta:
        model = Lead
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "title",
            "company",
            "employees",
            "industry",
            "country",
            "source",
            "attributes",
            "owner",
            "lifecycle_stage",
            "created_at",
            "updated_at",
            "mql_at",
            "sql_at",
            "opportunity_at",
            "converted_at",
            "disqualified_at",
            "lost_at",
            "revenue",
            "persona",
            "score",
            "band",
            "grade",
            "group_scores",
            "group_bands",
            "breakdown",
            "model_probability",
            "rule_set_version",
            "scored_at",
            "qualified",
            "identities",
            "merges",
            "recent_events",
            "experiments",
        ]
        read_only_fields = fields

    def get_identities(self, lead: Lead) -> list[dict[str, str]]:
        return [
            {"source": i.source, "external_id": i.external_id}
            for i in lead.identities.order_by("source", "external_id")
        ]

    def get_merges(self, lead: Lead) -> list[dict[str, Any]]:
        return list(
            lead.merges.order_by("-merged_at").values(
                "merged_lead_id",
                "email",
                "identities_moved",
                "events_moved",
                "merged_at",
                "details",
            )
        )

    def get_experiments(self, lead: Lead) -> list[dict[str, Any]]:
        """The lead's arm in each experiment it was in (newest first), with the other arm's
        score of it."""
        return [
            {key: row[key] for key in ("name", "arm", "shadow_score")}
            for row in lead_experiments(lead.pk)
        ]

    def get_recent_events(self, lead: Lead) -> list[dict[str, Any]]:
        events = lead.events.order_by("-occurred_at", "-id")[: self.context.get("events", 20)]
        return LeadEventSerializer(events, many=True).data
