"""The 500 page with the app's navigation. Django's own handler renders 500.html without the
request (so without the navigation), because whatever failed may fail again while rendering;
this one tries with the request first and falls back to exactly that."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.template import loader
from django.views.decorators.csrf import requires_csrf_token
from django.views.defaults import server_error as django_server_error

log = logging.getLogger(__name__)


@requires_csrf_token
def server_error(request: HttpRequest) -> HttpResponse:
    try:
        body = loader.render_to_string("500.html", request=request)
    except Exception:  # the page must render even when the app is broken
        log.exception("errors.500.navigation_failed")
        return django_server_error(request)
    return HttpResponseServerError(body)
