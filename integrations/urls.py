from django.urls import path

from integrations import views, views_outbound, webhooks

urlpatterns: list = [
    path("integrations/", views.integrations_page, name="integrations"),
    path("integrations/source-keys/", views.source_key_create_view, name="source-key-create"),
    path(
        "integrations/source-keys/<int:key_id>/revoke",
        views.source_key_revoke_view,
        name="source-key-revoke",
    ),
    path("imports/", views.import_page, name="import-page"),
    path("imports/<int:job_id>/", views.import_detail, name="import-detail"),
    path("imports/<int:job_id>/progress/", views.import_progress, name="import-progress"),
    path("integrations/hubspot/webhook", webhooks.hubspot_webhook, name="hubspot-webhook"),
    path(
        "integrations/<slug:vendor>/status",
        views.connection_status,
        name="integration-status",
    ),
    path("integrations/<slug:vendor>/sync", views.sync_now, name="integration-sync"),
    path("integrations/<slug:vendor>/test", views.test_connection, name="integration-test"),
    path(
        "integrations/<slug:vendor>/schedule",
        views.schedule_update,
        name="integration-schedule",
    ),
    path(
        "integrations/<slug:vendor>/settings",
        views.settings_save,
        name="integration-settings",
    ),
    # Outgoing webhooks (integrations/views_outbound.py)
    path("webhooks/", views_outbound.webhooks_page, name="webhooks"),
    path("webhooks/<int:webhook_id>/", views_outbound.webhook_log, name="webhook-log"),
    path("webhooks/<int:webhook_id>/toggle/", views_outbound.webhook_toggle, name="webhook-toggle"),
    path("webhooks/<int:webhook_id>/delete/", views_outbound.webhook_remove, name="webhook-delete"),
    path(
        "webhooks/deliveries/<int:delivery_id>/redeliver/",
        views_outbound.delivery_retry,
        name="delivery-redeliver",
    ),
    path("profile/alerts/", views_outbound.alert_preferences, name="alert-preferences"),
]
