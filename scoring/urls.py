"""Staff pages. Each area's views live in their own module under scoring/views/."""

from django.urls import path

from scoring.views import feedback as feedback_views
from scoring.views import imports as import_views
from scoring.views import kpis as kpi_views
from scoring.views import leads as lead_views

urlpatterns: list = [
    path("leads/", lead_views.lead_queue, name="lead-queue"),
    path("leads/export.csv", lead_views.lead_export, name="lead-export"),
    path("leads/<int:lead_id>/", lead_views.lead_detail, name="lead-detail"),
    path(
        "leads/<int:lead_id>/feedback/",
        feedback_views.lead_feedback_submit,
        name="lead-feedback",
    ),
    path("feedback/", feedback_views.feedback_review_page, name="feedback-review"),
    path("kpis/", kpi_views.kpi_dashboard, name="kpis"),
    path("kpis/export/<slug:table>.csv", kpi_views.kpi_export, name="kpi-export"),
    path("imports/", import_views.import_page, name="import-page"),
    path("imports/<int:job_id>/", import_views.import_detail, name="import-detail"),
    path("imports/<int:job_id>/progress/", import_views.import_progress, name="import-progress"),
]
