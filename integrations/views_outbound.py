"""The outgoing-webhook pages (marketing ops, admin): subscriptions (create, pause, delete),
each one's delivery log with "redeliver", and the dead letters of every subscriber."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from integrations.config import SecretsUnavailable
from integrations.models import AlertPreference, OutboxDelivery, WebhookSubscription
from integrations.outbound.webhooks import (
    EVENT_TYPES,
    SECRET_MIN_CHARS,
    WebhookInvalid,
    delivery_redeliver,
    webhook_create,
    webhook_delete,
    webhook_pause,
)
from scoring.views.access import require


class WebhookForm(forms.Form):
    url = forms.CharField(max_length=500, label="Receiver URL")
    secret = forms.CharField(
        min_length=SECRET_MIN_CHARS,
        max_length=200,
        widget=forms.PasswordInput,
        help_text=f"At least {SECRET_MIN_CHARS} characters; signs every delivery.",
    )
    events = forms.MultipleChoiceField(
        choices=[(e, e) for e in EVENT_TYPES], widget=forms.CheckboxSelectMultiple
    )


@require_http_methods(["GET", "POST"])
@require("manage_webhooks")
def webhooks_page(request: HttpRequest) -> HttpResponse:
    form = WebhookForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            webhook_create(data["url"], data["secret"], data["events"], user=request.user)
        except WebhookInvalid as exc:
            for field, message in exc.errors.items():
                form.add_error(field if field in form.fields else None, message)
        except SecretsUnavailable as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Webhook added.")
            return redirect("webhooks")
    dead = (
        OutboxDelivery.objects.filter(status=OutboxDelivery.Status.DEAD)
        .select_related("transition")
        .order_by("-pk")[:50]
    )
    return render(
        request,
        "integrations/webhooks.html",
        {"form": form, "subscriptions": WebhookSubscription.objects.all(), "dead": dead},
    )


@require_POST
@require("manage_webhooks")
def webhook_toggle(request: HttpRequest, webhook_id: int) -> HttpResponse:
    subscription = get_object_or_404(WebhookSubscription, pk=webhook_id)
    webhook_pause(subscription, not subscription.paused)
    return redirect("webhooks")


@require_POST
@require("manage_webhooks")
def webhook_remove(request: HttpRequest, webhook_id: int) -> HttpResponse:
    webhook_delete(get_object_or_404(WebhookSubscription, pk=webhook_id))
    messages.success(request, "Webhook deleted.")
    return redirect("webhooks")


@require_GET
@require("manage_webhooks")
def webhook_log(request: HttpRequest, webhook_id: int) -> HttpResponse:
    subscription = get_object_or_404(WebhookSubscription, pk=webhook_id)
    deliveries = subscription.deliveries.select_related("transition").order_by("-pk")[:200]
    return render(
        request,
        "integrations/webhook_log.html",
        {"subscription": subscription, "deliveries": deliveries},
    )


@require_POST
@require("manage_webhooks")
def delivery_retry(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = get_object_or_404(OutboxDelivery, pk=delivery_id)
    if delivery_redeliver(delivery):
        messages.success(request, f"Delivery {delivery.key} queued again (same id).")
    else:
        messages.error(request, "That delivery is still pending; it will be tried as planned.")
    if delivery.webhook_id:
        return redirect("webhook-log", delivery.webhook_id)
    return redirect("webhooks")


class AlertPreferenceForm(forms.Form):
    email = forms.ChoiceField(choices=AlertPreference.Email.choices, widget=forms.RadioSelect)


@require_http_methods(["GET", "POST"])
@require("view_leads")
def alert_preferences(request: HttpRequest) -> HttpResponse:
    """Each user's own choice: an email per assigned lead, a daily digest, or none."""
    current = (
        AlertPreference.objects.filter(user=request.user).values_list("email", flat=True).first()
        or AlertPreference.Email.INSTANT
    )
    form = AlertPreferenceForm(request.POST or None, initial={"email": current})
    if request.method == "POST":
        if not form.is_valid():
            return render(request, "integrations/alerts.html", {"form": form}, status=400)
        AlertPreference.objects.update_or_create(
            user=request.user, defaults={"email": form.cleaned_data["email"]}
        )
        messages.success(request, "Alert preference saved.")
        return redirect("alert-preferences")
    return render(request, "integrations/alerts.html", {"form": form})
