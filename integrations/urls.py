from django.urls import path

from integrations import views, webhooks

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
]
