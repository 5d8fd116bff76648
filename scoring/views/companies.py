"""Account pages: /companies/ (accounts by score) and /companies/<id>/ (contacts, buying-group
coverage, recent events). Named "companies" in the URL because /accounts/ is the login's."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from scoring.selectors.accounts import ENGAGED_DAYS, account_list, account_view, visible_accounts
from scoring.views.access import require


@require("view_leads")
@require_GET
def company_list(request: HttpRequest) -> HttpResponse:
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    band = (request.GET.get("band") or "").strip()[:60]
    rows, has_more = account_list(request.user, band=band or None, page=page)
    context = {
        "accounts": rows,
        "band": band,
        "page": page,
        "next_page": page + 1 if has_more else None,
        "previous_page": page - 1 if page > 1 else None,
    }
    return render(request, "companies/list.html", context)


@require("view_leads")
@require_GET
def company_detail(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(visible_accounts(request.user), pk=account_id)
    view = account_view(account, request.user)
    return render(
        request,
        "companies/detail.html",
        {"view": view, "account": account, "engaged_days": ENGAGED_DAYS},
    )
