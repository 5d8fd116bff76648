"""POST /api/v1/leads/<id>/feedback/: a user's verdict on a lead they can see.

Body `{"verdict": "good" | "bad", "reason": CODE, "note": TEXT}`; reason codes are
`Feedback.Reason` (`not_decision_maker`, `no_budget`, `student_or_personal`, `competitor`,
`spam_or_fake`, `wrong_persona`, `already_customer`, `other`), required when the verdict is
bad. Posting again edits the caller's verdict. 201 when created, 200 when edited, 400 with
errors by field, 403 without the `give_feedback` capability, 404 for a lead the caller cannot
see."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scoring.api.permissions import HasCapability
from scoring.models import Feedback
from scoring.selectors.leads import visible_leads
from scoring.services.feedback import NOTE_MAX_CHARS, FeedbackInvalid, feedback_give


class FeedbackInSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=Feedback.Verdict.choices)
    reason = serializers.ChoiceField(
        choices=Feedback.Reason.choices, required=False, allow_blank=True, default=""
    )
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=NOTE_MAX_CHARS,
        trim_whitespace=True,
    )


class FeedbackOutSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.get_username", read_only=True)
    lead = serializers.IntegerField(source="lead_id", read_only=True)

    class Meta:
        model = Feedback
        fields = [
            "id",
            "lead",
            "author",
            "verdict",
            "reason",
            "note",
            "band",
            "score",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class LeadFeedbackView(APIView):
    permission_classes = [IsAuthenticated, HasCapability]
    required_capability = "give_feedback"

    @extend_schema(
        request=FeedbackInSerializer,
        responses={201: FeedbackOutSerializer, 200: FeedbackOutSerializer},
        summary="Give or edit your verdict on a lead",
    )
    def post(self, request: Request, lead_id: int) -> Response:
        lead = get_object_or_404(visible_leads(request.user), pk=lead_id)
        incoming = FeedbackInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        existed = Feedback.objects.filter(lead=lead, author=request.user).exists()
        try:
            feedback = feedback_give(
                lead, request.user, data["verdict"], data["reason"], data["note"]
            )
        except FeedbackInvalid as exc:
            return Response(
                {field: [message] for field, message in exc.errors.items()},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(
            FeedbackOutSerializer(feedback).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )
