"""Ingestion and lead endpoints: POST /api/v1/events/ and /api/v1/leads/.

Views parse and authorise, call one service or selector, and serialise. Roles apply exactly as
on the pages: lead querysets come from ``visible_leads(user)`` (a sales rep gets 404 for
another rep's lead), writes need the ``ingest`` capability.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

import django_filters
from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from scoring import strict_json
from scoring.api.parsers import StrictJSONParser
from scoring.api.permissions import HasCapability
from scoring.api.serializers import (
    EventInSerializer,
    IngestResultSerializer,
    LeadDetailSerializer,
    LeadListSerializer,
    LeadUpsertSerializer,
)
from scoring.models import Lead, LifecycleStage
from scoring.selectors import visible_leads
from scoring.services.events import MAX_EVENTS_PER_REQUEST, events_ingest, parse_event_item
from scoring.services.leads import lead_update, lead_upsert


class IngestThrottle(SimpleRateThrottle):
    """The ``ingest`` rate, counted per API token (per user for session callers), so one
    runaway integration cannot starve the others that share a user."""

    scope = "ingest"

    def get_cache_key(self, request: Request, view: Any) -> str:
        token = getattr(request.auth, "key", None)
        if token:
            ident = "token-" + hashlib.sha256(token.encode()).hexdigest()[:32]
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class _TooLarge(Exception):
    pass


def _payload_too_large(detail: str) -> Response:
    return Response({"detail": detail}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)


def _body_limit() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _read_json(request: Request) -> Any:
    """The JSON body; raises _TooLarge past the body limit (declared or actual size)."""
    limit = _body_limit()
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise _TooLarge(f"The body is larger than {limit} bytes.")
    raw = request._request.read(limit + 1)  # a body without Content-Length is bounded too
    if len(raw) > limit:
        raise _TooLarge(f"The body is larger than {limit} bytes.")
    try:
        return strict_json.loads(raw)
    except strict_json.StrictJSONError as exc:
        raise ParseError(f"The body is not JSON this API accepts: {exc}") from None


class EventIngestView(APIView):
    """POST one event or a list of up to 10,000. Valid events are stored even when others
    are rejected (then 400); with ``?atomic=true`` nothing is stored unless all are valid."""

    permission_classes = [IsAuthenticated, HasCapability]
    required_capability = "ingest"
    throttle_classes = [IngestThrottle]
    # The body is read by _read_json, so DRF's parsers never see it.
    parser_classes = [StrictJSONParser]

    @extend_schema(
        request=EventInSerializer(many=True),
        parameters=[
            OpenApiParameter("atomic", OpenApiTypes.BOOL, description="all or nothing"),
        ],
        responses={200: IngestResultSerializer, 400: IngestResultSerializer, 413: None},
    )
    def post(self, request: Request) -> Response:
        try:
            body = _read_json(request)
        except _TooLarge as exc:
            return _payload_too_large(str(exc))
        items = body if isinstance(body, list) else [body] if isinstance(body, dict) else None
        if items is None:
            raise ParseError("The body must be an event object or a list of events.")
        if not items:
            raise ParseError("The body holds no events.")
        if len(items) > MAX_EVENTS_PER_REQUEST:
            return _payload_too_large(
                f"{len(items)} events in one request; the limit is {MAX_EVENTS_PER_REQUEST}."
            )
        atomic = request.query_params.get("atomic", "").lower() in ("1", "true", "yes")
        now = timezone.now()
        valid, positions, errors = [], [], []
        for index, item in enumerate(items):
            event, reasons = parse_event_item(item, now=now)
            if event is None:
                errors.append(_error(index, item, reasons))
            else:
                valid.append(event)
                positions.append(index)
        accepted = duplicate = 0
        if valid and not (atomic and errors):
            result = events_ingest(valid, atomic=atomic)
            for position, reasons in result.rejected:
                index = positions[position]
                errors.append(_error(index, items[index], reasons))
            accepted, duplicate = result.accepted, result.duplicate
        errors.sort(key=lambda e: e["index"])
        payload = {
            "accepted": accepted,
            "duplicate": duplicate,
            "rejected": len(errors),
            "errors": errors,
        }
        if atomic and errors:
            # All or nothing: every item is rejected, but only the bad ones have reasons.
            payload.update(accepted=0, duplicate=0, rejected=len(items))
        return Response(payload, status=400 if errors else 200)


def _error(index: int, item: Any, reasons: list[str]) -> dict[str, Any]:
    error: dict[str, Any] = {"index": index, "reasons": reasons}
    if isinstance(item, dict) and isinstance(item.get("external_id"), str | int):
        error["external_id"] = str(item["external_id"])
    return error


# --------------------------------------------------------------------------------------------
# Leads
# --------------------------------------------------------------------------------------------


class LeadFilter(django_filters.FilterSet):
    band = django_filters.CharFilter(field_name="band", lookup_expr="iexact")
    persona = django_filters.CharFilter(field_name="persona", lookup_expr="iexact")
    owner = django_filters.CharFilter(field_name="owner__username")
    lifecycle_stage = django_filters.ChoiceFilter(choices=LifecycleStage.choices)
    score_min = django_filters.NumberFilter(field_name="score", lookup_expr="gte")
    score_max = django_filters.NumberFilter(field_name="score", lookup_expr="lte")
    source = django_filters.CharFilter(field_name="source", lookup_expr="iexact")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    q = django_filters.CharFilter(method="search", label="search email, name, company")

    class Meta:
        model = Lead
        fields: list[str] = []

    def search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        condition = Q()
        for term in value.split():
            condition &= (
                Q(email__icontains=term)
                | Q(first_name__icontains=term)
                | Q(last_name__icontains=term)
                | Q(company__icontains=term)
            )
        return queryset.filter(condition)


class ScoreCursor:
    """Keyset pagination over (score, id), nulls last, in either direction. The cursor is
    opaque to clients: base64 of the last row's score and id."""

    default_size = 50
    max_size = 500

    def __init__(self, request: Request) -> None:
        self.request = request
        ordering = request.query_params.get("ordering", "-score")
        if ordering not in ("score", "-score"):
            raise ParseError("ordering must be score or -score.")
        self.descending = ordering == "-score"
        try:
            self.size = min(
                int(request.query_params.get("page_size", self.default_size)), self.max_size
            )
        except ValueError:
            raise ParseError("page_size must be a number.") from None
        if self.size < 1:
            raise ParseError("page_size must be at least 1.")
        self.after = self._decode(request.query_params.get("cursor"))

    @staticmethod
    def _decode(cursor: str | None) -> tuple[int | None, int] | None:
        if not cursor:
            return None
        try:
            score, lead_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            if (score is not None and not isinstance(score, int)) or not isinstance(lead_id, int):
                raise ValueError
        except (ValueError, TypeError, binascii.Error):
            raise ParseError("Invalid cursor.") from None
        return score, lead_id

    def paginate(self, queryset: QuerySet) -> tuple[list[Lead], str | None]:
        if self.descending:
            order = [F("score").desc(nulls_last=True), "-id"]
            past, id_past = "score__lt", "id__lt"
        else:
            order = [F("score").asc(nulls_last=True), "id"]
            past, id_past = "score__gt", "id__gt"
        if self.after is not None:
            score, lead_id = self.after
            if score is None:
                queryset = queryset.filter(score__isnull=True, **{id_past: lead_id})
            else:
                queryset = queryset.filter(
                    Q(**{past: score})
                    | Q(score=score, **{id_past: lead_id})
                    | Q(score__isnull=True)
                )
        rows = list(queryset.order_by(*order)[: self.size + 1])
        if len(rows) <= self.size:
            return rows, None
        rows = rows[: self.size]
        last = rows[-1]
        token = base64.urlsafe_b64encode(json.dumps([last.score, last.id]).encode()).decode()
        params = self.request.query_params.copy()
        params["cursor"] = token
        return rows, self.request.build_absolute_uri("?" + params.urlencode())


class _IngestWritesThrottled:
    """Throttle only the writing methods of a read/write view."""

    def get_throttles(self) -> list:
        if self.request.method in ("POST", "PUT", "PATCH"):
            return [IngestThrottle()]
        return []


class LeadListView(_IngestWritesThrottled, APIView):
    """GET: the caller's visible leads, filtered, searched, ordered by score, cursor-paged.
    POST: upsert a lead by identity or email (201 when created, 200 otherwise)."""

    permission_classes = [IsAuthenticated, HasCapability]
    capability_by_method = {"GET": "view_leads", "POST": "ingest"}

    @extend_schema(
        parameters=[
            OpenApiParameter("band", str),
            OpenApiParameter("persona", str),
            OpenApiParameter("owner", str, description="username"),
            OpenApiParameter("lifecycle_stage", str, enum=LifecycleStage.values),
            OpenApiParameter("score_min", int),
            OpenApiParameter("score_max", int),
            OpenApiParameter("source", str),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME),
            OpenApiParameter("q", str, description="search email, name, company"),
            OpenApiParameter("ordering", str, enum=["score", "-score"]),
            OpenApiParameter("page_size", int),
            OpenApiParameter("cursor", str),
        ],
        responses=LeadListSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = LeadFilter(
            request.query_params,
            queryset=visible_leads(request.user).select_related("owner", "probability_row"),
        )
        if not filters.is_valid():
            return Response(filters.errors, status=400)
        rows, next_url = ScoreCursor(request).paginate(filters.qs)
        return Response({"next": next_url, "results": LeadListSerializer(rows, many=True).data})

    @extend_schema(request=LeadUpsertSerializer, responses=LeadDetailSerializer)
    def post(self, request: Request) -> Response:
        serializer = LeadUpsertSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        outcome = lead_upsert(serializer.to_upsert())
        if outcome.status == "rejected":
            return Response({"detail": outcome.reason}, status=400)
        lead = Lead.objects.select_related("owner", "probability_row").get(pk=outcome.lead_id)
        body = LeadDetailSerializer(lead).data
        body["status"] = outcome.status
        return Response(body, status=201 if outcome.status == "created" else 200)


class LeadDetailView(_IngestWritesThrottled, APIView):
    """GET one visible lead with its score, band, breakdown, model probability, identities,
    merges and recent events. PUT/PATCH update it (a new email that belongs to another lead
    merges the two)."""

    permission_classes = [IsAuthenticated, HasCapability]
    capability_by_method = {"GET": "view_leads", "PUT": "ingest", "PATCH": "ingest"}

    def _lead(self, request: Request, lead_id: int) -> Lead:
        return get_object_or_404(
            visible_leads(request.user).select_related("owner", "probability_row"), pk=lead_id
        )

    @extend_schema(responses=LeadDetailSerializer)
    def get(self, request: Request, lead_id: int) -> Response:
        return Response(LeadDetailSerializer(self._lead(request, lead_id)).data)

    @extend_schema(request=LeadUpsertSerializer, responses=LeadDetailSerializer)
    def patch(self, request: Request, lead_id: int) -> Response:
        lead = self._lead(request, lead_id)
        serializer = LeadUpsertSerializer(data=request.data, partial=True, updating=True)
        serializer.is_valid(raise_exception=True)
        try:
            lead, outcome = lead_update(lead, serializer.to_upsert())
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=400)
        body = LeadDetailSerializer(
            Lead.objects.select_related("owner", "probability_row").get(pk=lead.pk)
        ).data
        body["status"] = outcome
        return Response(body)

    put = patch
