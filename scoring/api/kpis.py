"""The KPIs as JSON under /api/v1/kpis/. Every endpoint takes the same filters
(`start`, `end` as YYYY-MM-DD counting leads created in [start, end]; `persona`; `source`;
`owner` user id; `version` rule-set version), answers 400 with one message per bad parameter,
and needs the `view_kpis` capability.

`bands/` is a contract (DESIGN.md §9): a list, one object per band in band order —
the live rule set's global bands lowest first (zero-lead bands included), then any band
found in the score history but not in the live rule set, then `"Unscored"` only when some
leads had no score-history row before conversion / the end of the period — each object with
exactly `band, leads, converted, conversion_rate, ci_low, ci_high, revenue,
median_cycle_days`.

Every response carries `X-KPI-As-Of` (ISO 8601): the moment the figures describe. It is the
request's time when they are current, or the KPI cube's refresh time when they were read from a
cube refreshed before the latest writes (scoring.kpis.cube); the body is unchanged."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scoring.api.permissions import HasCapability
from scoring.kpis.filters import KpiFilterError, KpiFilters, parse_filters
from scoring.kpis.grades import conversion_by_account_band
from scoring.kpis.report import KpiReport
from scoring.roles import can

AS_OF_HEADER = "X-KPI-As-Of"

FILTER_PARAMETERS = [
    OpenApiParameter("start", OpenApiTypes.DATE, description="First creation day (included)"),
    OpenApiParameter("end", OpenApiTypes.DATE, description="Last creation day (included)"),
    OpenApiParameter("persona", OpenApiTypes.STR),
    OpenApiParameter("source", OpenApiTypes.STR),
    OpenApiParameter("owner", OpenApiTypes.INT, description="Owner user id"),
    OpenApiParameter("version", OpenApiTypes.INT, description="Rule-set version"),
]


def request_filters(request: Any) -> KpiFilters:
    """Filters from the query string; a user who may not see every lead sees only their own.
    Raises KpiFilterError."""
    filters = parse_filters(request.GET)
    if not can(request.user, "view_all_leads"):
        filters = dataclasses.replace(filters, owner_id=request.user.pk)
    return filters


class BandRowSerializer(serializers.Serializer):
    band = serializers.CharField()
    leads = serializers.IntegerField()
    converted = serializers.IntegerField()
    conversion_rate = serializers.FloatField(allow_null=True)
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    revenue = serializers.FloatField()
    median_cycle_days = serializers.FloatField(allow_null=True)


class _KpiView(APIView):
    permission_classes = [HasCapability]
    required_capability = "view_kpis"
    compute: Callable[[KpiReport], Any]

    def get(self, request: Request) -> Response:
        try:
            filters = request_filters(request)
        except KpiFilterError as error:
            return Response({"errors": error.errors}, status=400)
        report = KpiReport(filters)
        response = Response(type(self).compute(report))
        response[AS_OF_HEADER] = report.as_of().isoformat()
        return response


def _kpi_view(name: str, compute: Callable[[KpiReport], Any], doc: str, response: Any = None):
    view = type(
        name,
        (_KpiView,),
        {"compute": staticmethod(compute), "__doc__": doc},
    )
    view.get = extend_schema(
        parameters=FILTER_PARAMETERS,
        responses={200: response or OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
        description=doc,
    )(view.get)
    return view


BandsView = _kpi_view(
    "KpiBandsView",
    KpiReport.bands,
    "Conversion by band before conversion (the §9 contract).",
    BandRowSerializer(many=True),
)
FunnelView = _kpi_view("KpiFunnelView", KpiReport.funnel, "Funnel stages and stage-to-stage rates.")
CycleView = _kpi_view("KpiCycleView", KpiReport.cycle, "Days created -> customer per band.")
QualificationView = _kpi_view(
    "KpiQualificationView",
    KpiReport.qualification,
    "Precision/recall of qualification now and per score threshold, MQLs per week.",
)
LiftView = _kpi_view(
    "KpiLiftView", KpiReport.lift, "Lift, cumulative gains, ROC curve and AUC by score decile."
)
CalibrationView = _kpi_view(
    "KpiCalibrationView", KpiReport.calibration, "Predicted vs observed conversion per decile."
)
RevenueView = _kpi_view("KpiRevenueView", KpiReport.revenue, "Revenue by band before conversion.")
BandEntriesView = _kpi_view(
    "KpiBandEntriesView", KpiReport.band_entries, "Leads entering each band per week."
)
FeedbackView = _kpi_view(
    "KpiFeedbackView", KpiReport.feedback, "Share of reviewed leads flagged bad, per band."
)
AccountBandsView = _kpi_view(
    "KpiAccountBandsView",
    lambda report: conversion_by_account_band(report.filters),
    "Conversion of the cohort's leads by their account's band (accounts, leads, converted,"
    " conversion_rate, ci_low, ci_high).",
)
