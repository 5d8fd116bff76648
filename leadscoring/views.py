from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from leadscoring.health import health_problems
from scoring.roles import primary_role
from scoring.selectors.home import home_summary


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    problems = health_problems()
    if problems:
        return JsonResponse({"status": "unavailable", "down": problems}, status=503)
    return JsonResponse({"status": "ok"})


def home(request: HttpRequest) -> HttpResponse:
    role = primary_role(request.user)
    context = {"role": role, "summary": home_summary(request.user, role)}
    return render(request, "home.html", context)
