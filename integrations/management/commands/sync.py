"""manage.py sync salesforce|hubspot|mixpanel [--full]: run one sync to completion in-process
and print its one-line JSON summary. Exit status 1 when the run did not succeed."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from integrations import services


class Command(BaseCommand):
    help = "Sync leads and events from a vendor; prints a one-line JSON summary."

    def add_arguments(self, parser):
        parser.add_argument("vendor", choices=services.VENDORS)
        parser.add_argument(
            "--full", action="store_true", help="ignore the stored cursor and read everything"
        )

    def handle(self, *args, vendor: str, full: bool, **options) -> None:
        try:
            run = services.sync_run(vendor, full=full, trigger="command")
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        except services.SyncNotStarted as exc:
            status = "paused" if isinstance(exc, services.SyncPaused) else "busy"
            self.stdout.write(
                services.summary_json({"vendor": vendor, "status": status, "error": str(exc)})
            )
            raise CommandError(str(exc)) from None
        self.stdout.write(services.summary_json(services.run_summary(run)))
        if run.status != run.Status.DONE:
            raise CommandError(f"{vendor} sync {run.status}: {run.error}")
