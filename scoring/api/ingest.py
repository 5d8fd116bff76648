"""Ingestion and lead endpoints: POST /api/v1/events/ and /api/v1/leads/.

Views parse and authorise, call one service or selector, and serialise. Roles apply exactly as
on the pages: lead querysets come from ``visible_leads(user)`` (a sales rep gets 404 for
another rep's lead), writes need the ``ingest`` capability.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

from django.conf import settings
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
from scoring.models import Feedback, Lead, LifecycleStage
from scoring.selectors.leads import (
    LeadListFilter,
    lead_list,
    lead_list_page,
    lead_list_query,
    visible_leads,
)
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


class BodyTooLarge(Exception):
    """The request body is over the endpoint's limit (a 413)."""


def _payload_too_large(detail: str) -> Response:
    return Response({"detail": detail}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)


def _body_limit() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def read_json_body(request: Request, limit: int | None = None) -> Any:
    """The JSON body, read through `strict_json`; raises BodyTooLarge past ``limit`` bytes
    (default DATA_UPLOAD_MAX_MEMORY_SIZE; the declared or the actual size) and ParseError for
    a body that is not JSON. A ``Content-Encoding: gzip`` body (SDKs send them) is inflated,
    and its inflated size is what the limit bounds, so a small bomb cannot grow past it."""
    limit = _body_limit() if limit is None else limit
    gzipped = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower() == "gzip"
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise BodyTooLarge(f"The body is larger than {limit} bytes.")
    raw = request._request.read(limit + 1)  # a body without Content-Length is bounded too
    if len(raw) > limit:
        raise BodyTooLarge(f"The body is larger than {limit} bytes.")
    if gzipped:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise ParseError("The body is not valid gzip.") from None
        if len(raw) > limit or inflater.unconsumed_tail:
            raise BodyTooLarge(f"The inflated body is larger than {limit} bytes.")
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
    # The body is read by read_json_body, so DRF's parsers never see it.
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
            body = read_json_body(request)
        except BodyTooLarge as exc:
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

_PARAMETER_TYPES: dict[str, Any] = {
    "open": OpenApiTypes.BOOL,
    "new_mql": OpenApiTypes.BOOL,
    "awaiting_feedback": OpenApiTypes.BOOL,
    "sla_due": OpenApiTypes.BOOL,
    "score_min": OpenApiTypes.NUMBER,
    "score_max": OpenApiTypes.NUMBER,
    "page_size": OpenApiTypes.INT,
    "created_from": OpenApiTypes.DATE,
    "created_to": OpenApiTypes.DATE,
    "flagged_from": OpenApiTypes.DATE,
    "flagged_to": OpenApiTypes.DATE,
    "created_after": OpenApiTypes.DATETIME,
    "created_before": OpenApiTypes.DATETIME,
}
_PARAMETER_ENUMS: dict[str, list[str]] = {
    "lifecycle_stage": LifecycleStage.values,
    "feedback": Feedback.Verdict.values,
    "reason": Feedback.Reason.values,
    "ordering": ["-score", "score", "queue"],
}


class _IngestWritesThrottled:
    """Throttle only the writing methods of a read/write view."""

    def get_throttles(self) -> list:
        if self.request.method in ("POST", "PUT", "PATCH"):
            return [IngestThrottle()]
        return []


# The query parameters in the OpenAPI schema, from the one FilterSet (scoring.lead_list).
LEAD_LIST_PARAMETERS = [
    OpenApiParameter(
        name,
        _PARAMETER_TYPES.get(name, str),
        enum=_PARAMETER_ENUMS.get(name),
        description=str(f.label or ""),
    )
    for name, f in LeadListFilter.base_filters.items()
]


class LeadListView(_IngestWritesThrottled, APIView):
    """GET: the caller's visible leads, filtered, searched, ordered by score, cursor-paged:
    the same list as the /leads/ page and its CSV export (`scoring.lead_list`).
    POST: upsert a lead by identity or email (201 when created, 200 otherwise)."""

    permission_classes = [IsAuthenticated, HasCapability]
    capability_by_method = {"GET": "view_leads", "POST": "ingest"}

    @extend_schema(parameters=LEAD_LIST_PARAMETERS, responses=LeadListSerializer(many=True))
    def get(self, request: Request) -> Response:
        query, errors = lead_list_query(request.query_params)
        if errors:
            return Response(errors, status=400)
        page = lead_list_page(
            lead_list(visible_leads(request.user), query),
            query.after,
            query.size,
            descending=query.descending,
            first=query.first,
        )
        next_url = None
        if page.has_more:
            params = request.query_params.copy()
            params.pop("after", None)
            params["cursor"] = page.next_cursor
            next_url = request.build_absolute_uri("?" + params.urlencode())
        return Response(
            {"next": next_url, "results": LeadListSerializer(page.rows, many=True).data}
        )

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
