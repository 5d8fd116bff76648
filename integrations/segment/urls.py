"""/segment/v1/...: the Segment tracking API. The views authenticate by write key, not by a
session, so the login middleware lets them through."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path

from integrations.segment import views

urlpatterns: list = [
    path(f"v1/{name}", login_not_required(view.as_view()), name=f"segment-{name}")
    for name, view in (
        ("track", views.TrackView),
        ("identify", views.IdentifyView),
        ("group", views.GroupView),
        ("page", views.PageView),
        ("screen", views.ScreenView),
        ("alias", views.AliasView),
        ("batch", views.BatchView),
    )
]
