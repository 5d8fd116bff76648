"""Staff pages. Each area's views live in their own module under scoring/views/."""

from django.urls import path

from scoring.views import companies as company_views
from scoring.views import experiments as experiment_views
from scoring.views import feedback as feedback_views
from scoring.views import kpis as kpi_views
from scoring.views import leads as lead_views
from scoring.views import models as model_views
from scoring.views import profile as profile_views
from scoring.views import routing as routing_views
from scoring.views import rules as rule_views
from scoring.views import users as user_views

urlpatterns: list = [
    path("experiments/", experiment_views.experiments_page, name="experiments"),
    path("experiments/<int:experiment_id>/", experiment_views.experiment_page, name="experiment"),
    path(
        "experiments/<int:experiment_id>/end/",
        experiment_views.experiment_end,
        name="experiment-end",
    ),
    path("leads/", lead_views.lead_queue, name="lead-queue"),
    path("leads/export.csv", lead_views.lead_export, name="lead-export"),
    path("leads/<int:lead_id>/", lead_views.lead_detail, name="lead-detail"),
    path(
        "leads/<int:lead_id>/feedback/",
        feedback_views.lead_feedback_submit,
        name="lead-feedback",
    ),
    path("leads/<int:lead_id>/accept/", routing_views.lead_accept, name="lead-accept"),
    path("routing/", routing_views.routing_page, name="routing"),
    path("routing/workload/", routing_views.workload_page, name="routing-workload"),
    path("routing/v<int:version>.json", routing_views.routing_version, name="routing-version"),
    path("feedback/", feedback_views.feedback_review_page, name="feedback-review"),
    path("kpis/", kpi_views.kpi_dashboard, name="kpis"),
    path("kpis/calibration/", kpi_views.kpi_calibration, name="kpi-calibration"),
    path("kpis/export/<slug:table>.csv", kpi_views.kpi_export, name="kpi-export"),
    # Rules, personas, bands, preview, publishing (scoring/views/rules.py)
    path("companies/", company_views.company_list, name="companies"),
    path("companies/<int:account_id>/", company_views.company_detail, name="company"),
    path("rules/", rule_views.rules_index, name="rules-index"),
    path("rules/new/", rule_views.draft_new, name="rules-new"),
    path("rules/import/", rule_views.rules_import, name="rules-import"),
    path("rules/<int:rule_set_id>/", rule_views.rule_set_detail, name="rules-detail"),
    path("rules/<int:rule_set_id>/export.json", rule_views.rules_export, name="rules-export"),
    path("rules/<int:rule_set_id>/settings/", rule_views.rule_set_settings, name="rules-settings"),
    path("rules/<int:rule_set_id>/discard/", rule_views.rule_set_discard, name="rules-discard"),
    path("rules/<int:rule_set_id>/groups/", rule_views.rule_set_groups, name="rules-groups"),
    path("rules/<int:rule_set_id>/history/", rule_views.rule_set_history, name="rules-history"),
    path("rules/<int:rule_set_id>/publish/", rule_views.rule_set_publish, name="rules-publish"),
    path("rules/<int:rule_set_id>/rollback/", rule_views.rule_set_publish, name="rules-rollback"),
    path("rules/<int:rule_set_id>/rescore/", rule_views.rule_set_rescore, name="rules-rescore"),
    path("rules/<int:rule_set_id>/preview/", rule_views.preview_new, name="rules-preview-new"),
    path(
        "rules/<int:rule_set_id>/<str:section>/",
        rule_views.section_fragment,
        name="rules-section",
    ),
    path("rules/<int:rule_set_id>/<str:section>/add/", rule_views.item_save, name="rules-item-add"),
    path(
        "rules/<int:rule_set_id>/<str:section>/<int:index>/",
        rule_views.item_save,
        name="rules-item-save",
    ),
    path(
        "rules/<int:rule_set_id>/<str:section>/<int:index>/edit/",
        rule_views.item_edit,
        name="rules-item-edit",
    ),
    path(
        "rules/<int:rule_set_id>/<str:section>/<int:index>/delete/",
        rule_views.item_delete,
        name="rules-item-delete",
    ),
    path(
        "rules/<int:rule_set_id>/rules/<int:index>/move/",
        rule_views.rule_move,
        name="rules-rule-move",
    ),
    path("rules/previews/<int:preview_id>/", rule_views.preview_page, name="rules-preview"),
    path(
        "rules/previews/<int:preview_id>/status/",
        rule_views.preview_status,
        name="rules-preview-status",
    ),
    path("rules/runs/<int:run_id>/", rule_views.rescore_run_page, name="rules-run"),
    path("rules/runs/<int:run_id>/status/", rule_views.rescore_run_status, name="rules-run-status"),
    path("personas/", rule_views.personas_page, name="personas"),
    path("models/", model_views.models_page, name="models"),
    path("models/progress/<str:run_key>/", model_views.training_progress, name="models-progress"),
    path("models/<int:model_id>/activate/", model_views.model_activate, name="models-activate"),
    path("models/<int:model_id>/apply/", model_views.model_apply_suggestion, name="models-apply"),
    path("models/rollback/", model_views.model_rollback, name="models-rollback"),
    path("models/deactivate/", model_views.model_deactivate, name="models-deactivate"),
    path("models/explain/<int:lead_id>/", model_views.lead_explanation, name="models-explain"),
    # A user's own API tokens; admins manage users and roles (scoring/views/profile.py, users.py)
    path("profile/", profile_views.profile_page, name="profile"),
    path("profile/tokens/", profile_views.api_token_create, name="profile-token-create"),
    path("profile/time-zone/", profile_views.time_zone_save, name="profile-time-zone"),
    path(
        "profile/tokens/<str:token_key>/revoke/",
        profile_views.api_token_revoke,
        name="profile-token-revoke",
    ),
    path("users/", user_views.users_page, name="users"),
    path("users/invite/", user_views.user_invite_submit, name="users-invite"),
    path("users/<int:user_id>/role/", user_views.user_role_submit, name="users-role"),
    path("users/<int:user_id>/active/", user_views.user_active_submit, name="users-active"),
]
