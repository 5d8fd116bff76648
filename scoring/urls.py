"""Staff pages. Each area's views live in their own module under scoring/views/."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
