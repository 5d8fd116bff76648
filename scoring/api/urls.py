from django.urls import path

from scoring.api import accounts, experiments, ingest, kpis, views
from scoring.api.feedback import LeadFeedbackView

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("events/", ingest.EventIngestView.as_view(), name="api-events"),
    path("leads/", ingest.LeadListView.as_view(), name="api-leads"),
    path("leads/<int:lead_id>/", ingest.LeadDetailView.as_view(), name="api-lead"),
    path("leads/<int:lead_id>/feedback/", LeadFeedbackView.as_view(), name="api-lead-feedback"),
    path("accounts/", accounts.AccountListView.as_view(), name="api-accounts"),
    path("accounts/<int:account_id>/", accounts.AccountDetailView.as_view(), name="api-account"),
    path("kpis/bands/", kpis.BandsView.as_view(), name="api-kpis-bands"),
    path("kpis/funnel/", kpis.FunnelView.as_view(), name="api-kpis-funnel"),
    path("kpis/cycle/", kpis.CycleView.as_view(), name="api-kpis-cycle"),
    path("kpis/qualification/", kpis.QualificationView.as_view(), name="api-kpis-qualification"),
    path("kpis/lift/", kpis.LiftView.as_view(), name="api-kpis-lift"),
    path("kpis/calibration/", kpis.CalibrationView.as_view(), name="api-kpis-calibration"),
    path("kpis/revenue/", kpis.RevenueView.as_view(), name="api-kpis-revenue"),
    path("kpis/band-entries/", kpis.BandEntriesView.as_view(), name="api-kpis-band-entries"),
    path("kpis/feedback/", kpis.FeedbackView.as_view(), name="api-kpis-feedback"),
    path("experiments/", experiments.ExperimentListView.as_view(), name="api-experiments"),
    path(
        "experiments/<str:name>/",
        experiments.ExperimentDetailView.as_view(),
        name="api-experiment",
    ),
    path(
        "experiments/<str:name>/stop/",
        experiments.ExperimentStopView.as_view(),
        name="api-experiment-stop",
    ),
    path(
        "experiments/<str:name>/promote/",
        experiments.ExperimentPromoteView.as_view(),
        name="api-experiment-promote",
    ),
    path("kpis/account-bands/", kpis.AccountBandsView.as_view(), name="api-kpis-account-bands"),
]
