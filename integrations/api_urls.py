"""/api/v1/webhooks/ (integrations.api), mounted by leadscoring.urls beside scoring's API
(scoring never imports integrations)."""

from django.urls import path

from integrations import api

urlpatterns = [
    path("", api.WebhookListView.as_view(), name="api-webhooks"),
    path("<int:webhook_id>/", api.WebhookDetailView.as_view(), name="api-webhook"),
    path(
        "<int:webhook_id>/deliveries/",
        api.WebhookDeliveriesView.as_view(),
        name="api-webhook-deliveries",
    ),
]
