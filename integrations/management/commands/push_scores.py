"""manage.py push_scores salesforce|hubspot: push every changed score and band to the CRM and
print a one-line JSON summary. Exit status 1 when the vendor refused the push."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from integrations import services
from integrations.connectors.base import ConnectorError
from integrations.models import CRM_VENDORS


class Command(BaseCommand):
    help = "Write changed lead scores and bands back to a CRM; prints a one-line JSON summary."

    def add_arguments(self, parser):
        parser.add_argument("vendor", choices=[str(v) for v in CRM_VENDORS])

    def handle(self, *args, vendor: str, **options) -> None:
        try:
            summary = services.push_scores(vendor)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        except ConnectorError as exc:
            last = services.connection_get(vendor).last_push
            self.stdout.write(services.summary_json({**last, "status": "failed"}))
            raise CommandError(f"{vendor} push failed: {exc}") from None
        self.stdout.write(services.summary_json({**summary, "status": "succeeded"}))
