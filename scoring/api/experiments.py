"""`/api/v1/experiments/`: champion/challenger experiments (docs/experiments.md).

- `GET /api/v1/experiments/`: every experiment, newest first (managers and marketing ops).
- `POST /api/v1/experiments/`: start one (marketing ops): `{"name", "kind": "ruleset" |
  "model" | "threshold", "challenger": RULE-SET DOCUMENT | "challenger_model": ID |
  "threshold": SCORE, "split", "metric", "horizon_days", "population", "min_sample",
  "hypothesis", "relevant_difference", "alpha"}`; 201 with the report, 400 with errors by
  field (nothing is written then).
- `GET /api/v1/experiments/<name>/`: the report, the shape of `experiment report --json`.
- `POST /api/v1/experiments/<name>/stop/` (`{"promote": false}`) and `.../promote/`
  (marketing ops): end it; every lead returns to the champion (the rescore runs as bulk tasks
  after the response); promote makes the challenger live first. 409 when it is not running.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scoring.api.permissions import HasCapability
from scoring.experiments.stats import DECISIONS
from scoring.models import Experiment
from scoring.selectors.experiments import experiment_list, experiment_report
from scoring.services.experiments import (
    ExperimentInvalid,
    ExperimentRequest,
    experiment_start,
    experiment_stop,
)


class ExperimentInSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=Experiment.Kind.choices)
    hypothesis = serializers.CharField(required=False, allow_blank=True, default="")
    challenger = serializers.JSONField(required=False, default=None)
    challenger_model = serializers.IntegerField(required=False, default=None)
    threshold = serializers.FloatField(required=False, default=None)
    split = serializers.FloatField(required=False, default=0.5)
    metric = serializers.ChoiceField(choices=Experiment.Metric.choices, default="conversion")
    horizon_days = serializers.IntegerField(required=False, default=90, min_value=1)
    population = serializers.ChoiceField(choices=Experiment.Population.choices, default="new")
    min_sample = serializers.IntegerField(required=False, default=1000, min_value=1)
    relevant_difference = serializers.FloatField(required=False, default=0.02)
    alpha = serializers.FloatField(required=False, default=0.05)


class ExperimentSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Experiment
        fields = [
            "name",
            "kind",
            "status",
            "metric",
            "population",
            "split",
            "hypothesis",
            "started_at",
            "stopped_at",
            "final_decision",
        ]
        read_only_fields = fields


class ArmReportSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=["champion", "challenger"])
    leads = serializers.IntegerField()
    qualified = serializers.IntegerField()
    sales_accepted = serializers.IntegerField()
    converted = serializers.IntegerField()
    bad_leads = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True)
    ci = serializers.ListField(child=serializers.FloatField(allow_null=True))
    median_days_to_convert = serializers.FloatField(allow_null=True)


class DifferenceSerializer(serializers.Serializer):
    estimate = serializers.FloatField(allow_null=True)
    ci = serializers.ListField(child=serializers.FloatField(allow_null=True))


class ExperimentReportSerializer(serializers.Serializer):
    """The report's shape, for the schema (`scoring.selectors.experiments.experiment_report`
    builds it)."""

    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Experiment.Kind.choices)
    metric = serializers.ChoiceField(choices=Experiment.Metric.choices)
    status = serializers.ChoiceField(choices=Experiment.Status.choices)
    split = serializers.FloatField()
    min_sample = serializers.IntegerField()
    alpha = serializers.FloatField()
    relevant_difference = serializers.FloatField()
    arms = ArmReportSerializer(many=True)
    difference = DifferenceSerializer()
    decision = serializers.ChoiceField(choices=list(DECISIONS))


# Service field names -> the API's (the API says `challenger`, the service what it holds).
API_FIELDS = {"challenger_document": "challenger", "challenger_model_id": "challenger_model"}


class ExperimentListView(APIView):
    permission_classes = [IsAuthenticated, HasCapability]
    capability_by_method = {"GET": "view_experiments", "POST": "run_experiments"}

    @extend_schema(responses=ExperimentSummarySerializer(many=True), summary="List experiments")
    def get(self, request: Request) -> Response:
        return Response(ExperimentSummarySerializer(experiment_list(), many=True).data)

    @extend_schema(
        request=ExperimentInSerializer,
        responses={201: ExperimentReportSerializer},
        summary="Start an experiment",
    )
    def post(self, request: Request) -> Response:
        incoming = ExperimentInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(incoming.validated_data)
        try:
            experiment = experiment_start(
                ExperimentRequest(
                    challenger_document=data.pop("challenger"),
                    challenger_model_id=data.pop("challenger_model"),
                    **data,
                ),
                user=request.user,
            )
        except ExperimentInvalid as exc:
            return Response(
                {API_FIELDS.get(field, field): [reason] for field, reason in exc.errors.items()},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(experiment_report(experiment), status=status.HTTP_201_CREATED)


class ExperimentDetailView(APIView):
    permission_classes = [IsAuthenticated, HasCapability]
    required_capability = "view_experiments"

    @extend_schema(responses=ExperimentReportSerializer, summary="An experiment's report")
    def get(self, request: Request, name: str) -> Response:
        return Response(experiment_report(get_object_or_404(Experiment, name=name)))


class ExperimentStopInSerializer(serializers.Serializer):
    promote = serializers.BooleanField(required=False, default=False)


class ExperimentStopView(APIView):
    permission_classes = [IsAuthenticated, HasCapability]
    required_capability = "run_experiments"
    promote = False

    @extend_schema(
        request=ExperimentStopInSerializer,
        responses=ExperimentReportSerializer,
        summary="Stop (or promote) an experiment",
    )
    def post(self, request: Request, name: str) -> Response:
        experiment = get_object_or_404(Experiment, name=name)
        incoming = ExperimentStopInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        promote = self.promote or incoming.validated_data["promote"]
        try:
            experiment = experiment_stop(experiment, user=request.user, promote=promote)
        except ExperimentInvalid as exc:
            return Response(
                {field: [reason] for field, reason in exc.errors.items()},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(experiment_report(experiment))


class ExperimentPromoteView(ExperimentStopView):
    promote = True

    @extend_schema(
        request=None,
        responses=ExperimentReportSerializer,
        summary="Promote the challenger, ending the experiment",
    )
    def post(self, request: Request, name: str) -> Response:
        return super().post(request, name)
