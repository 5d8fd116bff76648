from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from leadscoring import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The set-password link of an invitation (scoring.services.users.set_password_path); Django
    # marks these views login_not_required, so the login middleware lets them through.
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/webhooks/", include("integrations.api_urls")),
    path("api/v1/", include("scoring.api.urls")),
    path("segment/", include("integrations.segment.urls")),
    path("", include("scoring.urls")),
    path("", include("integrations.urls")),
]

# 500 with the app's navigation (403 and 404 get it from Django's handlers, which render with
# the request).
handler500 = "scoring.views.errors.server_error"
