"""/api/v1/webhooks/: outgoing webhook subscriptions (marketing ops and admins).

- `GET /api/v1/webhooks/`: the subscriptions; `POST` with `{"url", "secret", "events": [...]}`
  creates one (201; 400 with the reason per field: a URL that resolves to a private address,
  a secret shorter than 16 characters, an unknown event type).
- `GET /api/v1/webhooks/<id>/`; `PATCH` with `{"paused": true|false}`; `DELETE` (204).
- `GET /api/v1/webhooks/<id>/deliveries/`: the latest 100 deliveries (the delivery log).

The secret is write-only: it is never returned."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.config import SecretsUnavailable
from integrations.models import OutboxDelivery, WebhookSubscription
from integrations.outbound.webhooks import (
    EVENT_TYPES,
    WebhookInvalid,
    webhook_create,
    webhook_delete,
    webhook_pause,
)
from scoring.api.permissions import HasCapability


class WebhookInSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500)
    secret = serializers.CharField(max_length=200, write_only=True)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), allow_empty=False
    )


class WebhookOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookSubscription
        fields = ["id", "url", "events", "paused", "created_at"]
        read_only_fields = fields


class WebhookPatchSerializer(serializers.Serializer):
    paused = serializers.BooleanField()


class DeliveryOutSerializer(serializers.ModelSerializer):
    type = serializers.SerializerMethodField()
    transition = serializers.IntegerField(source="transition_id")

    class Meta:
        model = OutboxDelivery
        fields = [
            "id",
            "key",
            "transition",
            "type",
            "status",
            "attempts",
            "last_status_code",
            "last_attempt_at",
            "last_error",
            "next_attempt_at",
            "delivered_at",
        ]
        read_only_fields = fields

    def get_type(self, delivery: OutboxDelivery) -> str:
        from integrations.outbound.relay import EVENT_TYPE

        return EVENT_TYPE.get(delivery.transition.kind, delivery.transition.kind)


class _WebhookView(APIView):
    permission_classes = [IsAuthenticated, HasCapability]
    required_capability = "manage_webhooks"


class WebhookListView(_WebhookView):
    @extend_schema(responses=WebhookOutSerializer(many=True), summary="List outgoing webhooks")
    def get(self, request: Request) -> Response:
        return Response(WebhookOutSerializer(WebhookSubscription.objects.all(), many=True).data)

    @extend_schema(
        request=WebhookInSerializer,
        responses={201: WebhookOutSerializer},
        summary="Subscribe a URL to lead events",
    )
    def post(self, request: Request) -> Response:
        incoming = WebhookInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        try:
            subscription = webhook_create(
                data["url"], data["secret"], data["events"], user=request.user
            )
        except WebhookInvalid as exc:
            return Response(
                {field: [message] for field, message in exc.errors.items()},
                status=status.HTTP_400_BAD_REQUEST,
            )
        except SecretsUnavailable as exc:
            return Response({"secret": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(WebhookOutSerializer(subscription).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(_WebhookView):
    @extend_schema(responses=WebhookOutSerializer, summary="One outgoing webhook")
    def get(self, request: Request, webhook_id: int) -> Response:
        subscription = get_object_or_404(WebhookSubscription, pk=webhook_id)
        return Response(WebhookOutSerializer(subscription).data)

    @extend_schema(
        request=WebhookPatchSerializer,
        responses=WebhookOutSerializer,
        summary="Pause or resume a webhook",
    )
    def patch(self, request: Request, webhook_id: int) -> Response:
        subscription = get_object_or_404(WebhookSubscription, pk=webhook_id)
        incoming = WebhookPatchSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        webhook_pause(subscription, incoming.validated_data["paused"])
        return Response(WebhookOutSerializer(subscription).data)

    @extend_schema(responses={204: None}, summary="Delete a webhook and its delivery log")
    def delete(self, request: Request, webhook_id: int) -> Response:
        webhook_delete(get_object_or_404(WebhookSubscription, pk=webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveriesView(_WebhookView):
    @extend_schema(responses=DeliveryOutSerializer(many=True), summary="A webhook's deliveries")
    def get(self, request: Request, webhook_id: int) -> Response:
        subscription = get_object_or_404(WebhookSubscription, pk=webhook_id)
        deliveries = subscription.deliveries.select_related("transition").order_by("-pk")[:100]
        return Response(DeliveryOutSerializer(deliveries, many=True).data)
